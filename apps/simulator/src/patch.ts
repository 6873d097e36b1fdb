import { isDeepStrictEqual } from 'node:util'

// The three PATCH content types a Kubernetes API server accepts, applied to plain JSON values.
// Pure: every function deep-copies what it returns and never mutates its arguments.

export type KubeValue = unknown
export type Obj = Record<string, unknown>

/** A patch that cannot be applied; its message is shown to the user in the Status. */
export class PatchError extends Error {
  override name = 'PatchError'
}

export function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Sets an own property even for `__proto__`, which plain assignment would treat as the prototype. */
export function setField(target: Obj, key: string, value: unknown): void {
  if (key === '__proto__') {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
  } else {
    target[key] = value
  }
}

// ---------------------------------------------------------------------------------------------
// List merge strategies, shared by strategic merge patch and server-side apply.
//
// Kubernetes takes these from Go struct tags (patchMergeKey / listType / listMapKey); without
// schemas we key them by field name. Lists not listed here are keyed by `name` when every item is
// an object with a string `name` (CRD-style lists), and are atomic otherwise.
//
//   containers, initContainers, ephemeralContainers, volumes, env, imagePullSecrets  → name
//   ports            → containerPort + protocol (container ports) or port + protocol (Service);
//                      protocol defaults to "TCP" in the key, as the API server's defaulting does
//   volumeMounts     → mountPath        volumeDevices → devicePath      hostAliases → ip
//   conditions       → type             ownerReferences → uid
//   finalizers       → set of scalars (FieldsV1 `v:` items; merged as a union)
//   tolerations, args, command, envFrom → atomic (replaced as a whole), as in Kubernetes
// ---------------------------------------------------------------------------------------------

interface KeyField {
  name: string
  default?: string
}

type DeclaredStrategy = 'atomic' | 'set' | 'ports' | readonly KeyField[]

const byName: readonly KeyField[] = [{ name: 'name' }]

const declaredStrategies = new Map<string, DeclaredStrategy>([
  ['containers', byName],
  ['initContainers', byName],
  ['ephemeralContainers', byName],
  ['volumes', byName],
  ['env', byName],
  ['imagePullSecrets', byName],
  ['ports', 'ports'],
  ['volumeMounts', [{ name: 'mountPath' }]],
  ['volumeDevices', [{ name: 'devicePath' }]],
  ['hostAliases', [{ name: 'ip' }]],
  ['conditions', [{ name: 'type' }]],
  ['ownerReferences', [{ name: 'uid' }]],
  ['finalizers', 'set'],
  ['tolerations', 'atomic'],
  ['args', 'atomic'],
  ['command', 'atomic'],
  ['envFrom', 'atomic'],
])

export type ListStrategy =
  | { type: 'atomic' }
  | { type: 'set' }
  | {
      type: 'map'
      /** The item's key as canonical JSON (sorted fields, defaults filled in), or undefined if it has none. */
      keyOf: (item: unknown) => string | undefined
    }

/** The declared way the list in field `field` merges; `items` decides between the ports keys and the `name` fallback. */
export function listStrategy(field: string, items: readonly unknown[]): ListStrategy {
  const declared = declaredStrategies.get(field)
  if (declared === 'atomic') return { type: 'atomic' }
  if (declared === 'set') return { type: 'set' }
  if (declared === 'ports') {
    const usesContainerPort = items.every((item) => isObject(item) && 'containerPort' in item)
    const portField = usesContainerPort ? 'containerPort' : 'port'
    return keyedBy([{ name: portField }, { name: 'protocol', default: 'TCP' }])
  }
  if (declared) return keyedBy(declared)
  const named = items.length > 0 && items.every((item) => isObject(item) && typeof item['name'] === 'string')
  return named ? keyedBy(byName) : { type: 'atomic' }
}

function keyedBy(fields: readonly KeyField[]): ListStrategy {
  const sorted = [...fields].sort((a, b) => compareStrings(a.name, b.name))
  const keyOf = (item: unknown): string | undefined => {
    if (!isObject(item)) return undefined
    const key: Obj = {}
    for (const field of sorted) {
      const value = item[field.name] ?? field.default
      if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
        return undefined
      key[field.name] = value
    }
    return JSON.stringify(key)
  }
  return { type: 'map', keyOf }
}

export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Merges two keyed lists: `primary` items in their order, each merged with the `secondary` item of
 * the same key; secondary-only items stay right after the primary item they followed in
 * `secondary` (or first, if none preceded them), so items another party added keep their place.
 */
export function mergeListByKey(
  secondary: readonly unknown[],
  primary: readonly unknown[],
  keyOf: (item: unknown) => string | undefined,
  mergeItem: (secondaryItem: unknown, primaryItem: unknown) => unknown,
): unknown[] {
  const primaryKeys = new Set(primary.map(keyOf))
  const secondaryByKey = new Map<string, unknown>()
  const result: unknown[] = []
  const following = new Map<string, unknown[]>()
  let previous: string | undefined
  for (const item of secondary) {
    const key = keyOf(item)
    if (key !== undefined && primaryKeys.has(key)) {
      secondaryByKey.set(key, item)
      previous = key
    } else if (previous === undefined) {
      result.push(item)
    } else {
      following.set(previous, [...(following.get(previous) ?? []), item])
    }
  }
  for (const item of primary) {
    const key = keyOf(item)
    const match = key === undefined ? undefined : secondaryByKey.get(key)
    result.push(match === undefined ? item : mergeItem(match, item))
    if (key === undefined) continue
    result.push(...(following.get(key) ?? []))
    following.delete(key)
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// JSON merge patch (RFC 7386)
// ---------------------------------------------------------------------------------------------

/** RFC 7386: objects merge recursively, `null` deletes, everything else (arrays too) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  return mergeInto(structuredClone(target), patch)
}

function mergeInto(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return structuredClone(patch)
  const result: Obj = isObject(target) ? target : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key]
    else setField(result, key, mergeInto(result[key], value))
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

const setElementOrderPrefix = '$setElementOrder/'
const deleteFromPrimitiveListPrefix = '$deleteFromPrimitiveList/'

/**
 * Kubernetes' strategic merge patch: a merge patch in which keyed lists merge item by item, with
 * the directives `$patch` (merge | replace | delete), `$retainKeys`, `$setElementOrder/<field>`
 * and `$deleteFromPrimitiveList/<field>`. Directives never reach the result.
 */
export function strategicMergePatch(target: Obj, patch: Obj): Obj {
  if (!isObject(patch)) throw new PatchError('a strategic merge patch must be a JSON object')
  return strategicMergeMap(structuredClone(target), patch) ?? {}
}

/** Merges `patch` into `original` (owned, mutated); undefined means the map is deleted. */
function strategicMergeMap(original: Obj, patch: Obj): Obj | undefined {
  const directive = patch['$patch']
  if (directive === 'delete') return undefined
  if (directive === 'replace') {
    const { $patch: _, ...rest } = patch
    return strategicMergeMap({}, rest)
  }
  if (directive !== undefined && directive !== 'merge') {
    throw new PatchError(`unknown patch type: ${JSON.stringify(directive)}`)
  }

  const retainKeys = patch['$retainKeys']
  if (retainKeys !== undefined) {
    if (!Array.isArray(retainKeys) || !retainKeys.every((key) => typeof key === 'string')) {
      throw new PatchError('$retainKeys must be a list of field names')
    }
    for (const key of Object.keys(original)) {
      if (!retainKeys.includes(key)) delete original[key]
    }
  }

  const orders = new Map<string, unknown[]>()
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith(deleteFromPrimitiveListPrefix)) {
      const field = key.slice(deleteFromPrimitiveListPrefix.length)
      const current = original[field]
      if (!Array.isArray(value)) throw new PatchError(`${key} must be a list`)
      if (Array.isArray(current)) {
        setField(
          original,
          field,
          current.filter((item) => !value.some((gone) => isDeepStrictEqual(gone, item))),
        )
      }
    } else if (key.startsWith(setElementOrderPrefix)) {
      if (!Array.isArray(value)) throw new PatchError(`${key} must be a list`)
      orders.set(key.slice(setElementOrderPrefix.length), value)
    }
  }

  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch' || key === '$retainKeys') continue
    if (key.startsWith(deleteFromPrimitiveListPrefix) || key.startsWith(setElementOrderPrefix)) continue
    if (value === null) {
      delete original[key]
      continue
    }
    const current = original[key]
    if (isObject(value)) {
      const merged = strategicMergeMap(isObject(current) ? current : {}, value)
      if (merged === undefined) delete original[key]
      else setField(original, key, merged)
    } else if (Array.isArray(value)) {
      setField(original, key, strategicMergeList(Array.isArray(current) ? current : [], value, key))
    } else {
      setField(original, key, structuredClone(value))
    }
  }

  for (const [field, order] of orders) {
    const list = original[field]
    if (Array.isArray(list)) setField(original, field, reorder(list, order, field))
  }
  return original
}

function strategicMergeList(original: unknown[], patch: unknown[], field: string): unknown[] {
  const replace = patch.find((item) => isObject(item) && item['$patch'] === 'replace')
  if (replace !== undefined) {
    const items = patch.filter((item) => !(isObject(item) && '$patch' in item))
    return strategicMergeList([], items, field)
  }
  const strategy = listStrategy(field, [...original, ...patch])
  if (strategy.type === 'atomic') return structuredClone(patch)
  if (strategy.type === 'set') {
    const result = [...original]
    for (const value of patch) {
      if (!result.some((item) => isDeepStrictEqual(item, value))) result.push(structuredClone(value))
    }
    return result
  }

  let result = [...original]
  for (const item of patch) {
    if (!isObject(item)) throw new PatchError(`${field}: list items must be objects`)
    const key = strategy.keyOf(item)
    if (key === undefined) {
      throw new PatchError(`${field}: item ${JSON.stringify(item)} does not contain its merge key`)
    }
    const index = result.findIndex((existing) => strategy.keyOf(existing) === key)
    if (item['$patch'] === 'delete') {
      result = result.filter((existing) => strategy.keyOf(existing) !== key)
    } else if (index === -1) {
      const added = strategicMergeMap({}, item)
      if (added !== undefined) result.push(added)
    } else {
      const current = result[index]
      const merged = strategicMergeMap(isObject(current) ? current : {}, item)
      if (merged === undefined) result.splice(index, 1)
      else result[index] = merged
    }
  }
  return result
}

/** `$setElementOrder`: listed items in the given order; unlisted (server-only) items keep their place after their predecessor. */
function reorder(list: unknown[], order: unknown[], field: string): unknown[] {
  const strategy = listStrategy(field, list)
  const keyOf =
    strategy.type === 'map'
      ? strategy.keyOf
      : (item: unknown) => (isObject(item) ? undefined : JSON.stringify(item))
  const byKey = new Map<string, unknown>()
  for (const item of list) {
    const key = keyOf(item)
    if (key !== undefined && !byKey.has(key)) byKey.set(key, item)
  }
  const ordered: unknown[] = []
  for (const entry of order) {
    const key = keyOf(entry)
    const item = key === undefined ? undefined : byKey.get(key)
    if (key === undefined || item === undefined) continue
    ordered.push(item)
    byKey.delete(key)
  }
  return mergeListByKey(list, ordered, keyOf, (item) => item)
}

// ---------------------------------------------------------------------------------------------
// JSON patch (RFC 6902)
// ---------------------------------------------------------------------------------------------

type Container = Obj | unknown[]

/** RFC 6902. All operations apply or none do; a failed `test` or a missing path throws PatchError. */
export function jsonPatch(target: Obj, operations: unknown): Obj {
  if (!Array.isArray(operations)) throw new PatchError('a JSON patch must be a list of operations')
  let document: unknown = structuredClone(target)
  for (const [index, operation] of operations.entries()) {
    document = applyOperation(document, operation, index)
  }
  if (!isObject(document)) throw new PatchError('the patched document must be a JSON object')
  return document
}

function applyOperation(document: unknown, operation: unknown, index: number): unknown {
  if (!isObject(operation)) throw new PatchError(`operation ${index} is not an object`)
  const { op, path } = operation
  if (typeof op !== 'string') throw new PatchError(`operation ${index} has no "op"`)
  if (typeof path !== 'string') throw new PatchError(`operation ${index} (${op}) has no "path"`)
  const fail = (reason: string) => new PatchError(`${op} operation at "${path}" does not apply: ${reason}`)
  const tokens = parsePointer(path, fail)
  const value = () => {
    if (!Object.hasOwn(operation, 'value')) throw fail('missing "value"')
    return structuredClone(operation['value'])
  }
  const from = () => {
    if (typeof operation['from'] !== 'string') throw fail('missing "from"')
    return parsePointer(operation['from'], fail)
  }

  switch (op) {
    case 'add':
      return add(document, tokens, value(), fail)
    case 'remove':
      return remove(document, tokens, fail)
    case 'replace':
      return replace(document, tokens, value(), fail)
    case 'move': {
      const source = from()
      const moved = get(document, source, fail)
      if (source.length < tokens.length && source.every((token, i) => token === tokens[i])) {
        throw fail('cannot move a value into one of its children')
      }
      return add(remove(document, source, fail), tokens, moved, fail)
    }
    case 'copy':
      return add(document, tokens, structuredClone(get(document, from(), fail)), fail)
    case 'test': {
      const expected = value()
      if (!isDeepStrictEqual(get(document, tokens, fail), expected)) {
        throw new PatchError(
          `test operation at "${path}" failed: the value differs from ${JSON.stringify(expected)}`,
        )
      }
      return document
    }
    default:
      throw new PatchError(`operation ${index} has an unknown op ${JSON.stringify(op)}`)
  }
}

function parsePointer(pointer: string, fail: (reason: string) => PatchError): string[] {
  if (pointer === '') return []
  if (!pointer.startsWith('/')) throw fail(`"${pointer}" is not a JSON pointer`)
  return pointer
    .slice(1)
    .split('/')
    .map((token) => {
      if (/~(?![01])/.test(token)) throw fail(`"${pointer}" has an invalid ~ escape`)
      return token.replace(/~[01]/g, (sequence) => (sequence === '~1' ? '/' : '~'))
    })
}

function arrayIndex(list: unknown[], token: string, allowEnd: boolean, fail: (reason: string) => PatchError) {
  if (allowEnd && token === '-') return list.length
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw fail(`"${token}" is not a list index`)
  const index = Number(token)
  if (index > list.length || (!allowEnd && index === list.length))
    throw fail(`index ${token} is out of range`)
  return index
}

function get(document: unknown, tokens: readonly string[], fail: (reason: string) => PatchError): unknown {
  let current = document
  for (const token of tokens) {
    if (Array.isArray(current)) current = current[arrayIndex(current, token, false, fail)]
    else if (isObject(current) && Object.hasOwn(current, token)) current = current[token]
    else throw fail(`no value at "${token}"`)
  }
  return current
}

function parentOf(document: unknown, tokens: readonly string[], fail: (reason: string) => PatchError) {
  const parent = get(document, tokens.slice(0, -1), fail)
  if (!Array.isArray(parent) && !isObject(parent)) throw fail('the parent is not an object or a list')
  return parent as Container
}

function add(
  document: unknown,
  tokens: readonly string[],
  value: unknown,
  fail: (reason: string) => PatchError,
) {
  const last = tokens.at(-1)
  if (last === undefined) return value
  const parent = parentOf(document, tokens, fail)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true, fail), 0, value)
  else setField(parent, last, value)
  return document
}

function remove(document: unknown, tokens: readonly string[], fail: (reason: string) => PatchError) {
  const last = tokens.at(-1)
  if (last === undefined) throw fail('cannot remove the whole document')
  const parent = parentOf(document, tokens, fail)
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, false, fail), 1)
  else if (Object.hasOwn(parent, last)) delete parent[last]
  else throw fail(`no value at "${last}"`)
  return document
}

function replace(
  document: unknown,
  tokens: readonly string[],
  value: unknown,
  fail: (reason: string) => PatchError,
) {
  const last = tokens.at(-1)
  if (last === undefined) return value
  const parent = parentOf(document, tokens, fail)
  if (Array.isArray(parent)) parent[arrayIndex(parent, last, false, fail)] = value
  else if (Object.hasOwn(parent, last)) setField(parent, last, value)
  else throw fail(`no value at "${last}"`)
  return document
}
