import Type from 'typebox'
import Value from 'typebox/value'
import type { Violation } from './errors.ts'

// What is wrong with a document, one violation per field, for people who wrote it by hand (a
// backend's config, say). Value.Errors reports every branch of every union it tried and an object's
// unknown fields twice; this walks the schema beside the value instead, and picks a union's branch by
// its `kind` literal when it has one.

const isRecordValue = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

// Not Value.Check itself: it is a type guard, and would narrow `value` to nothing after a failure.
const isValid = (schema: Type.TSchema, value: unknown): boolean => Value.Check(schema, value)

/** A key as one JSON pointer segment (RFC 6901). */
export const pointerSegment = (key: string) => key.replaceAll('~', '~0').replaceAll('/', '~1')

export function schemaViolations(schema: Type.TSchema, value: unknown, at = ''): Violation[] {
  if (isValid(schema, value)) return []
  const out: Violation[] = []
  const s = schema as Record<string, unknown>

  if (Type.IsUnion(schema)) {
    const branches = schema.anyOf as Type.TSchema[]
    const kinds = branches.map(
      (b) => (b as { properties?: { kind?: { const?: unknown } } }).properties?.kind?.const,
    )
    if (kinds.every((k) => typeof k === 'string')) {
      const kind = isRecordValue(value) && typeof value.kind === 'string' ? value.kind : undefined
      const branch = kind === undefined ? undefined : branches[kinds.indexOf(kind)]
      if (branch) return schemaViolations(branch, value, at)
      return [{ pointer: `${at}/kind`, message: `must be one of ${kinds.join(', ')}` }]
    }
    return [
      {
        pointer: at,
        message: `must be ${typeof s.description === 'string' ? s.description : 'one of the allowed forms'}`,
      },
    ]
  }

  if (Type.IsObject(schema) && isRecordValue(value)) {
    const properties = schema.properties as Record<string, Type.TSchema>
    for (const key of (schema.required ?? []) as string[]) {
      if (!(key in value)) out.push({ pointer: `${at}/${pointerSegment(key)}`, message: 'is required' })
    }
    for (const [key, v] of Object.entries(value)) {
      const property = properties[key]
      if (property) out.push(...schemaViolations(property, v, `${at}/${pointerSegment(key)}`))
      else if (s.additionalProperties === false)
        out.push({ pointer: `${at}/${pointerSegment(key)}`, message: 'is not a known field' })
    }
    if (out.length > 0) return out
  }

  if (Type.IsRecord(schema) && isRecordValue(value)) {
    const [[pattern, valueSchema]] = Object.entries(s.patternProperties as Record<string, Type.TSchema>) as [
      [string, Type.TSchema],
    ]
    for (const [key, v] of Object.entries(value)) {
      if (!new RegExp(pattern).test(key))
        out.push({ pointer: `${at}/${pointerSegment(key)}`, message: `is not a valid key (${pattern})` })
      else out.push(...schemaViolations(valueSchema, v, `${at}/${pointerSegment(key)}`))
    }
    if (out.length > 0) return out
  }

  if (Type.IsArray(schema) && Array.isArray(value)) {
    const items = schema.items as Type.TSchema
    const itemViolations = value.flatMap((v, i) => schemaViolations(items, v, `${at}/${i}`))
    if (itemViolations.length > 0) return itemViolations
  }

  const [first] = Value.Errors(schema, value)
  return [{ pointer: at, message: first?.message ?? 'is invalid' }]
}
