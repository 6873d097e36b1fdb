import { existsSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FieldCause } from './crd-schema.ts'

// A built-in kind decoded the way kube-apiserver decodes it, from the OpenAPI v3 documents
// Kubernetes v1.31 publishes (vendored unchanged under vendor/kubernetes-openapi, see its README):
// a value of the wrong JSON type is a decoding error (400), a field no schema declares is an
// unknown field (an error under fieldValidation=Strict, a warning under Warn, dropped either way),
// and a required field missing is a validation error (422). A group version without a vendored
// document is not checked (only the ones a Kiln deployment writes are vendored).

type Raw = Record<string, unknown>

const root = fileURLToPath(new URL('../../../vendor/kubernetes-openapi/v1.31/', import.meta.url))

const isRecord = (v: unknown): v is Raw => v !== null && typeof v === 'object' && !Array.isArray(v)

interface Document {
  schemas: Record<string, Raw>
  /** Schema name of each kind at the document's group version. */
  kinds: Map<string, string>
}

const documents = new Map<string, Document | undefined>()

function documentOf(group: string, version: string): Document | undefined {
  const key = `${group}/${version}`
  if (documents.has(key)) return documents.get(key)
  const path = `${root}${group === '' ? `api/${version}` : `apis/${group}/${version}`}.json`
  let document: Document | undefined
  if (existsSync(path)) {
    const schemas = (
      JSON.parse(readFileSync(path, 'utf8')) as { components: { schemas: Record<string, Raw> } }
    ).components.schemas
    const kinds = new Map<string, string>()
    for (const [name, schema] of Object.entries(schemas)) {
      const gvks = schema['x-kubernetes-group-version-kind']
      if (Array.isArray(gvks))
        for (const gvk of gvks as { group: string; version: string; kind: string }[])
          if (gvk.group === group && gvk.version === version) kinds.set(gvk.kind, name)
    }
    document = { schemas, kinds }
  }
  documents.set(key, document)
  return document
}

export interface Decoded {
  /** The object with unknown fields dropped (as Go's decoder drops them). */
  object: Raw
  /** Paths of the fields no schema declares, as apimachinery's strict decoder names them. */
  unknown: string[]
  /** The first value of the wrong type, in encoding/json's words; undefined when none. */
  decodeError?: string
  /** Required fields missing. */
  causes: FieldCause[]
}

const goTypes: Record<string, string> = { boolean: 'bool', number: 'float64', integer: 'int64' }

const jsonTypeOf = (v: unknown) =>
  Array.isArray(v) ? 'array' : typeof v === 'boolean' ? 'bool' : typeof v === 'object' ? 'object' : typeof v

/** Decodes one built-in object; undefined when its group version or kind has no vendored schema. */
export function decodeBuiltin(
  group: string,
  version: string,
  kind: string,
  object: Raw,
): Decoded | undefined {
  const document = documentOf(group, version)
  const rootName = document?.kinds.get(kind)
  if (!document || !rootName) return undefined
  const unknown: string[] = []
  const causes: FieldCause[] = []
  let decodeError: string | undefined

  /** A schema with its $ref (or allOf: [$ref], the form a property with a description takes) followed. */
  const resolve = (schema: Raw, owner: string): { schema: Raw; name: string } => {
    let s = schema
    let name = owner
    for (;;) {
      const ref =
        typeof s.$ref === 'string'
          ? s.$ref
          : Array.isArray(s.allOf) && s.allOf.length === 1 && isRecord(s.allOf[0])
            ? (s.allOf[0] as Raw).$ref
            : undefined
      if (typeof ref !== 'string') return { schema: s, name }
      name = ref.replace('#/components/schemas/', '')
      s = document.schemas[name] ?? {}
    }
  }
  const goName = (schemaName: string) => schemaName.slice(schemaName.lastIndexOf('.') + 1)
  const goTypeOf = (s: Raw, name: string): string => {
    if (s.type === 'object' && isRecord(s.properties)) return goName(name)
    if (s.type === 'array')
      return `[]${isRecord(s.items) ? goTypeOf(resolve(s.items, name).schema, name) : 'interface {}'}`
    if (s.type === 'object') return 'map[string]interface {}'
    if (s.type === 'integer' && typeof s.format === 'string') return s.format
    return goTypes[String(s.type)] ?? 'string'
  }
  const typeError = (value: unknown, s: Raw, name: string, owner: string, fieldPath: string) => {
    decodeError ??= `json: cannot unmarshal ${jsonTypeOf(value)} into Go struct field ${goName(owner)}.${fieldPath} of type ${goTypeOf(s, name)}`
  }

  const walk = (raw: Raw, owner: string, value: unknown, path: string, fieldPath: string): unknown => {
    const { schema, name } = resolve(raw, owner)
    // JSON null decodes to Go's zero value: accepted for every field.
    if (value === null || value === undefined) return value
    if (Array.isArray(schema.oneOf)) {
      // IntOrString and Quantity: either of the listed JSON types.
      const types = (schema.oneOf as Raw[]).map((o) => o.type)
      const actual =
        typeof value === 'number' ? (Number.isInteger(value) ? 'integer' : 'number') : typeof value
      if (!types.includes(actual) && !(actual === 'integer' && types.includes('number')))
        typeError(value, { type: 'string' }, name, owner, fieldPath)
      return value
    }
    switch (schema.type) {
      case 'object': {
        if (!isRecord(value)) {
          typeError(value, schema, name, owner, fieldPath)
          return value
        }
        const properties = isRecord(schema.properties)
          ? (schema.properties as Record<string, Raw>)
          : undefined
        const additional = isRecord(schema.additionalProperties) ? schema.additionalProperties : undefined
        // An object schema declaring neither (RawExtension, FieldsV1) holds anything.
        if (!properties && !additional) return value
        const out: Raw = {}
        for (const [key, v] of Object.entries(value)) {
          const at = path ? `${path}.${key}` : key
          const field = fieldPath ? `${fieldPath}.${key}` : key
          const child = properties?.[key] ?? additional
          if (!child) {
            unknown.push(at)
            continue
          }
          out[key] = walk(child, properties?.[key] ? name : owner, v, at, field)
        }
        if (Array.isArray(schema.required))
          for (const key of schema.required as string[])
            if (value[key] === undefined || value[key] === null)
              causes.push({
                field: path ? `${path}.${key}` : key,
                message: 'Required value',
                reason: 'FieldValueRequired',
              })
        return out
      }
      case 'array':
        if (!Array.isArray(value)) {
          typeError(value, schema, name, owner, fieldPath)
          return value
        }
        return isRecord(schema.items)
          ? value.map((v, i) => walk(schema.items as Raw, owner, v, `${path}[${i}]`, fieldPath))
          : value
      case 'string':
        if (typeof value !== 'string') typeError(value, schema, name, owner, fieldPath)
        return value
      case 'integer':
        if (typeof value !== 'number' || !Number.isInteger(value))
          typeError(value, schema, name, owner, fieldPath)
        return value
      case 'number':
        if (typeof value !== 'number') typeError(value, schema, name, owner, fieldPath)
        return value
      case 'boolean':
        if (typeof value !== 'boolean') typeError(value, schema, name, owner, fieldPath)
        return value
      default:
        return value
    }
  }

  const decoded = walk({ $ref: `#/components/schemas/${rootName}` }, rootName, object, '', '') as Raw
  return { object: decoded, unknown, decodeError, causes }
}
