// A custom resource's structural schema (a CRD version's `schema.openAPIV3Schema`) applied the way
// kube-apiserver does on every write: unknown fields pruned, defaults filled in, then the value
// validated, with kube-openapi's messages and apimachinery's field-error shapes so kubectl prints
// what it would print against a real cluster. A schema is compiled once (regexes, key sets) and
// cached per CRD version. CEL rules (`x-kubernetes-validations`) are not evaluated.

export interface FieldCause {
  field: string
  message: string
  reason:
    | 'FieldValueInvalid'
    | 'FieldValueRequired'
    | 'FieldValueNotSupported'
    | 'FieldValueTypeInvalid'
    | 'FieldValueTooLong'
    | 'FieldValueTooMany'
    | 'FieldValueDuplicate'
}

type Json = unknown
type Raw = Record<string, unknown>

interface Node {
  types: string[]
  nullable: boolean
  intOrString: boolean
  preserveUnknown: boolean
  embedded: boolean
  properties?: Map<string, Node>
  required: string[]
  /** A schema for every other key, or false (none allowed). */
  additional?: Node | false
  items?: Node
  enum?: Json[]
  minimum?: number
  maximum?: number
  exclusiveMinimum: boolean
  exclusiveMaximum: boolean
  minLength?: number
  maxLength?: number
  minItems?: number
  maxItems?: number
  minProperties?: number
  maxProperties?: number
  multipleOf?: number
  pattern?: { source: string; regex: RegExp }
  format?: string
  uniqueItems: boolean
  listType?: string
  listMapKeys: string[]
  default?: Json
  hasDefault: boolean
  anyOf?: Node[]
  oneOf?: Node[]
  allOf?: Node[]
  not?: Node
}

const isRecord = (v: unknown): v is Raw => v !== null && typeof v === 'object' && !Array.isArray(v)
const num = (v: unknown) => (typeof v === 'number' ? v : undefined)

/** Go's RE2 patterns are mostly JS ones; one that JS cannot compile is ignored rather than refusing every write. */
function compilePattern(source: unknown): Node['pattern'] {
  if (typeof source !== 'string') return undefined
  for (const flags of ['u', '']) {
    try {
      return { source, regex: new RegExp(source, flags) }
    } catch {}
  }
  return undefined
}

function compile(raw: unknown): Node {
  const s = isRecord(raw) ? raw : {}
  const sub = (v: unknown) => (isRecord(v) ? compile(v) : undefined)
  const subs = (v: unknown) => (Array.isArray(v) ? v.filter(isRecord).map(compile) : undefined)
  const props = isRecord(s.properties)
    ? new Map(Object.entries(s.properties).map(([k, v]) => [k, compile(v)]))
    : undefined
  return {
    types: typeof s.type === 'string' ? [s.type] : [],
    nullable: s.nullable === true,
    intOrString: s['x-kubernetes-int-or-string'] === true,
    preserveUnknown: s['x-kubernetes-preserve-unknown-fields'] === true,
    embedded: s['x-kubernetes-embedded-resource'] === true,
    properties: props,
    required: Array.isArray(s.required) ? s.required.filter((r): r is string => typeof r === 'string') : [],
    additional: s.additionalProperties === false ? false : sub(s.additionalProperties),
    items: sub(s.items),
    enum: Array.isArray(s.enum) ? s.enum : undefined,
    minimum: num(s.minimum),
    maximum: num(s.maximum),
    exclusiveMinimum: s.exclusiveMinimum === true,
    exclusiveMaximum: s.exclusiveMaximum === true,
    minLength: num(s.minLength),
    maxLength: num(s.maxLength),
    minItems: num(s.minItems),
    maxItems: num(s.maxItems),
    minProperties: num(s.minProperties),
    maxProperties: num(s.maxProperties),
    multipleOf: num(s.multipleOf),
    pattern: compilePattern(s.pattern),
    format: typeof s.format === 'string' ? s.format : undefined,
    uniqueItems: s.uniqueItems === true,
    listType: typeof s['x-kubernetes-list-type'] === 'string' ? s['x-kubernetes-list-type'] : undefined,
    listMapKeys: Array.isArray(s['x-kubernetes-list-map-keys'])
      ? s['x-kubernetes-list-map-keys'].filter((k): k is string => typeof k === 'string')
      : [],
    default: s.default,
    hasDefault: 'default' in s,
    anyOf: subs(s.anyOf),
    oneOf: subs(s.oneOf),
    allOf: subs(s.allOf),
    not: sub(s.not),
  }
}

const clone = <T>(v: T): T => (v === undefined ? v : structuredClone(v))

// ---- pruning and defaulting ----------------------------------------------------------------

/** Keys an embedded resource (and the root) keeps whatever its schema says. */
const typeMetaKeys = new Set(['apiVersion', 'kind', 'metadata'])

/**
 * Drops what the schema does not declare (unless preserved), drops nulls the schema does not
 * allow, and fills in defaults, depth first, as kube-apiserver's structural pruning and
 * defaulting do. Works on a copy.
 */
function pruneAndDefault(node: Node, value: Json, defaults: boolean, root = false): Json {
  if (Array.isArray(value))
    return node.items ? value.map((v) => pruneAndDefault(node.items!, v, defaults)) : value
  if (!isRecord(value)) return value
  const out: Raw = {}
  for (const [key, v] of Object.entries(value)) {
    // Absent in JSON: a key holding undefined is not there at all.
    if (v === undefined) continue
    if ((root || node.embedded) && typeMetaKeys.has(key)) {
      // metadata is the server's own (ObjectMeta), kept as is; apiVersion/kind are type meta.
      out[key] =
        key === 'metadata' || !node.properties?.has(key)
          ? v
          : pruneAndDefault(node.properties.get(key)!, v, defaults)
      continue
    }
    const child = node.properties?.get(key) ?? (node.additional === false ? undefined : node.additional)
    if (!child) {
      if (node.preserveUnknown) out[key] = v
      continue
    }
    // A null the schema does not allow is dropped (and then defaulted), as kube-apiserver does.
    if (v === null && !child.nullable) continue
    out[key] = pruneAndDefault(child, v, defaults)
  }
  if (defaults && node.properties)
    for (const [key, child] of node.properties)
      if (!(key in out) && child.hasDefault && child.default !== undefined && !(root && key === 'metadata'))
        out[key] = pruneAndDefault(child, clone(child.default), defaults)
  return out
}

// ---- validation ----------------------------------------------------------------------------

/** A value as apimachinery's field errors print it. */
function shown(value: Json): string {
  if (value === null || value === undefined) return '"null"'
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean') return String(value)
  return JSON.stringify(value)
}

const typeName = (value: Json): string => {
  if (value === null || value === undefined) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value === 'object' ? 'object' : typeof value
}

const invalid = (field: string, value: Json, detail: string): FieldCause => ({
  field,
  message: `Invalid value: ${shown(value)}: ${detail}`,
  reason: 'FieldValueInvalid',
})

const typeInvalid = (field: string, value: Json, detail: string): FieldCause => ({
  field,
  message: `Invalid value: ${shown(value)}: ${detail}`,
  reason: 'FieldValueTypeInvalid',
})

// The layouts strfmt's ParseDateTime takes: RFC 3339 and its ISO 8601 relatives (reduced precision,
// local time, a space for the T).
const dateTime = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$/
/** Formats kube-apiserver checks; others (and ones too loose to check faithfully, like duration) pass. */
const formats: Record<string, (v: string) => boolean> = {
  'date-time': (v) => dateTime.test(v),
  datetime: (v) => dateTime.test(v),
  date: (v) => /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v)),
  uuid: (v) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(v),
  uuid3: (v) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i.test(v),
  uuid4: (v) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$/i.test(v),
  uuid5: (v) => /^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$/i.test(v),
  ipv4: (v) => /^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(v),
  ipv6: (v) => /^[0-9a-fA-F:.]+$/.test(v) && v.includes(':'),
  cidr: (v) => {
    const [ip, bits, ...rest] = v.split('/')
    if (rest.length || bits === undefined || !/^\d{1,3}$/.test(bits)) return false
    return formats.ipv4!(ip!) ? Number(bits) <= 32 : formats.ipv6!(ip!) && Number(bits) <= 128
  },
  mac: (v) => /^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(v),
  hostname: (v) =>
    v.length <= 255 &&
    /^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/.test(v),
  email: (v) => /^[^\s@]+@[^\s@]+$/.test(v),
  byte: (v) => /^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(v),
}

const integerRanges: Record<string, [number, number]> = {
  int32: [-(2 ** 31), 2 ** 31 - 1],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
}

const deepEqual = (a: Json, b: Json) => canonical(a) === canonical(b)
function canonical(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  if (isRecord(v))
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`
  return JSON.stringify(v) ?? 'null'
}

function typeMatches(node: Node, value: Json): boolean {
  const actual = typeName(value)
  if (node.intOrString) return actual === 'integer' || actual === 'string'
  if (node.types.length === 0) return true
  return node.types.some((t) => t === actual || (t === 'number' && actual === 'integer'))
}

/** Validates a value (already pruned and defaulted) against a node; causes in kube-apiserver's shape. */
function check(node: Node, value: Json, path: string, out: FieldCause[], root = false): void {
  if (value === null || value === undefined) {
    if (node.nullable || (node.types.length === 0 && !node.intOrString)) return
    const expected = node.intOrString ? 'integer,string' : node.types.join(',')
    out.push(typeInvalid(path, 'null', `${path} in body must be of type ${expected}: "null"`))
    return
  }
  if (!typeMatches(node, value)) {
    const expected = node.intOrString ? 'integer,string' : node.types.join(',')
    const actual = typeName(value)
    out.push(typeInvalid(path, actual, `${path} in body must be of type ${expected}: "${actual}"`))
    return
  }
  if (node.enum && !node.enum.some((e) => deepEqual(e, value)))
    out.push({
      field: path,
      message: `Unsupported value: ${shown(value)}: supported values: ${node.enum
        .map((e) => JSON.stringify(typeof e === 'string' ? e : JSON.stringify(e)))
        .join(', ')}`,
      reason: 'FieldValueNotSupported',
    })
  if (typeof value === 'number') checkNumber(node, value, path, out)
  else if (typeof value === 'string') checkString(node, value, path, out)
  else if (Array.isArray(value)) checkArray(node, value, path, out)
  else if (isRecord(value)) checkObject(node, value, path, out, root)
  checkJunctors(node, value, path, out)
}

function checkNumber(node: Node, value: number, path: string, out: FieldCause[]) {
  if (node.minimum !== undefined) {
    if (node.exclusiveMinimum ? value <= node.minimum : value < node.minimum)
      out.push(
        invalid(
          path,
          value,
          `${path} in body should be greater than ${node.exclusiveMinimum ? '' : 'or equal to '}${node.minimum}`,
        ),
      )
  }
  if (node.maximum !== undefined) {
    if (node.exclusiveMaximum ? value >= node.maximum : value > node.maximum)
      out.push(
        invalid(
          path,
          value,
          `${path} in body should be less than ${node.exclusiveMaximum ? '' : 'or equal to '}${node.maximum}`,
        ),
      )
  }
  if (node.multipleOf && Math.abs(value / node.multipleOf - Math.round(value / node.multipleOf)) > 1e-9)
    out.push(invalid(path, value, `${path} in body should be a multiple of ${node.multipleOf}`))
  const range = node.format ? integerRanges[node.format] : undefined
  if (range && (value < range[0] || value > range[1]))
    out.push(typeInvalid(path, value, `${path} in body must be of type ${node.format}: "${value}"`))
}

function checkString(node: Node, value: string, path: string, out: FieldCause[]) {
  // Lengths count characters (runes), as Go's utf8.RuneCountInString does.
  const length = [...value].length
  if (node.maxLength !== undefined && length > node.maxLength)
    out.push({
      field: path,
      message: `Too long: may not be more than ${node.maxLength} bytes`,
      reason: 'FieldValueTooLong',
    })
  if (node.minLength !== undefined && length < node.minLength)
    out.push(invalid(path, value, `${path} in body should be at least ${node.minLength} chars long`))
  if (node.pattern && !node.pattern.regex.test(value))
    out.push(invalid(path, value, `${path} in body should match '${node.pattern.source}'`))
  // Unknown formats are ignored, as kube-apiserver does.
  const valid = node.format ? formats[node.format] : undefined
  if (valid && !valid(value))
    out.push(
      typeInvalid(path, value, `${path} in body must be of type ${node.format}: ${JSON.stringify(value)}`),
    )
}

function checkArray(node: Node, value: Json[], path: string, out: FieldCause[]) {
  if (node.maxItems !== undefined && value.length > node.maxItems)
    out.push({
      field: path,
      message: `Too many: ${value.length}: must have at most ${node.maxItems} items`,
      reason: 'FieldValueTooMany',
    })
  if (node.minItems !== undefined && value.length < node.minItems)
    out.push(invalid(path, value, `${path} in body should have at least ${node.minItems} items`))
  if (node.items) for (const [i, v] of value.entries()) check(node.items, v, `${path}[${i}]`, out)
  // set: whole items unique; map: items unique by their keys (x-kubernetes-list-type).
  const keyOf =
    node.listType === 'set' || node.uniqueItems
      ? (v: Json) => v
      : node.listType === 'map' && node.listMapKeys.length
        ? (v: Json) =>
            Object.fromEntries(
              node.listMapKeys.filter((k) => isRecord(v) && k in v).map((k) => [k, (v as Raw)[k]]),
            )
        : undefined
  if (!keyOf) return
  const seen = new Set<string>()
  value.forEach((v, i) => {
    const key = keyOf(v)
    const id = canonical(key)
    if (seen.has(id))
      out.push({
        field: `${path}[${i}]`,
        message: `Duplicate value: ${shown(key)}`,
        reason: 'FieldValueDuplicate',
      })
    seen.add(id)
  })
}

function checkObject(node: Node, value: Raw, path: string, out: FieldCause[], root: boolean) {
  const at = (key: string) => (path ? `${path}.${key}` : key)
  for (const key of node.required)
    if (!(key in value) || value[key] === undefined)
      out.push({ field: at(key), message: 'Required value', reason: 'FieldValueRequired' })
  const count = Object.keys(value).length
  if (node.maxProperties !== undefined && count > node.maxProperties)
    out.push(invalid(path, value, `${path} in body should have at most ${node.maxProperties} properties`))
  if (node.minProperties !== undefined && count < node.minProperties)
    out.push(invalid(path, value, `${path} in body should have at least ${node.minProperties} properties`))
  for (const [key, v] of Object.entries(value)) {
    // The root's metadata is ObjectMeta, checked by the registry, not by the CRD's schema.
    if ((root || node.embedded) && key === 'metadata') continue
    const child = node.properties?.get(key) ?? (node.additional === false ? undefined : node.additional)
    if (child) check(child, v, at(key), out)
  }
  if (node.embedded) {
    for (const key of ['apiVersion', 'kind'])
      if (typeof value[key] !== 'string' || value[key] === '')
        out.push({
          field: at(key),
          message: 'Required value: must not be empty',
          reason: 'FieldValueRequired',
        })
  }
}

/** anyOf/oneOf/allOf/not only constrain values in a structural schema. */
function checkJunctors(node: Node, value: Json, path: string, out: FieldCause[]) {
  const causesOf = (n: Node) => {
    const causes: FieldCause[] = []
    check(n, value, path, causes)
    return causes
  }
  const fewest = (results: FieldCause[][]) =>
    results.reduce((best, r) => (r.length < best.length ? r : best), results[0] ?? [])
  if (node.allOf) {
    const failed = node.allOf.map(causesOf).filter((c) => c.length > 0)
    if (failed.length) {
      out.push(invalid(path, '', `${path} must validate all the schemas (allOf)`))
      for (const c of failed) out.push(...c)
    }
  }
  if (node.anyOf) {
    const results = node.anyOf.map(causesOf)
    if (!results.some((r) => r.length === 0)) {
      out.push(invalid(path, '', `${path} must validate at least one schema (anyOf)`))
      out.push(...fewest(results))
    }
  }
  if (node.oneOf) {
    const results = node.oneOf.map(causesOf)
    const passed = results.filter((r) => r.length === 0).length
    if (passed !== 1) {
      out.push(invalid(path, '', `${path} must validate one and only one schema (oneOf)`))
      if (passed === 0) out.push(...fewest(results))
    }
  }
  if (node.not && causesOf(node.not).length === 0)
    out.push(invalid(path, '', `${path} must not validate the schema (not)`))
}

// ---- the API -------------------------------------------------------------------------------

export interface CrdSchema {
  /** The object with unknown fields pruned and defaults applied (a copy). */
  normalize<T extends Record<string, unknown>>(object: T): T
  /** The object with unknown fields pruned only (what an apply configuration may own). */
  prune<T extends Record<string, unknown>>(object: T): T
  /** What is wrong with an object (already normalized); empty when valid. */
  validate(object: Record<string, unknown>): FieldCause[]
}

function crdSchema(raw: unknown): CrdSchema {
  const root = compile(raw)
  return {
    normalize: (object) => pruneAndDefault(root, object, true, true) as typeof object,
    prune: (object) => pruneAndDefault(root, object, false, true) as typeof object,
    validate: (object) => {
      const causes: FieldCause[] = []
      check(root, object, '', causes, true)
      return causes
    },
  }
}

const compiled = new Map<string, CrdSchema>()
const maxCompiled = 1000

/**
 * The compiled schema of one CRD version, cached by the CRD's uid, resourceVersion and version
 * name, so the vendored Cluster API CRDs (large) are compiled once per change, not per write.
 */
export function schemaOf(key: string, raw: unknown): CrdSchema {
  let schema = compiled.get(key)
  if (!schema) {
    schema = crdSchema(raw)
    if (compiled.size >= maxCompiled) compiled.delete(compiled.keys().next().value!)
    compiled.set(key, schema)
  }
  return schema
}
