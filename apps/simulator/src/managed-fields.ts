import { isDeepStrictEqual } from 'node:util'
import { compareStrings, isObject, listStrategy, mergeListByKey, type Obj, setField } from './patch.ts'

// Field ownership as the API server tracks it in metadata.managedFields, after
// structured-merge-diff: server-side apply (with conflicts, force and pruning) and the ownership
// an ordinary create/update/patch takes. Pure: inputs are never mutated.
//
// Choices where there is no schema to consult:
// - lists merge by the table in patch.ts (`listStrategy`); a list whose items lack their key or
//   repeat one is treated as atomic. `finalizers` is a set of `v:<json>` items, as in Kubernetes.
// - `null` values in an applied configuration are dropped: the field is simply not applied.
// - an object without managedFields gets no implicit "before-first-apply" owner.

export interface ManagedFieldsEntry {
  manager: string
  operation: 'Apply' | 'Update'
  apiVersion: string
  time: string
  fieldsType: 'FieldsV1'
  fieldsV1: Record<string, unknown>
  subresource?: string
}

/** One conflicting field; `operation`, `apiVersion` and `subresource` describe the owning entry for the message. */
export interface Conflict {
  manager: string
  field: string
  operation?: 'Apply' | 'Update'
  apiVersion?: string
  subresource?: string
}

/** A server-side apply that would change fields other managers own (HTTP 409). */
export class ApplyConflictError extends Error {
  override name = 'ApplyConflictError'

  constructor(readonly conflicts: Conflict[]) {
    super(conflictMessage(conflicts))
  }
}

export interface ApplyOptions {
  manager: string
  force: boolean
  now: string
  apiVersion: string
  subresource?: string
}

export interface UpdateOptions {
  manager: string
  now: string
  apiVersion: string
  subresource?: string
}

/**
 * Server-side apply of `applied` by `options.manager` onto `live` (undefined: create). Returns the
 * new object with metadata.managedFields; throws ApplyConflictError unless `force`.
 */
export function serverSideApply(live: Obj | undefined, applied: Obj, options: ApplyOptions): Obj {
  const { manager, force, now, apiVersion, subresource } = options
  const appliedPart = withoutNulls(managedPart(applied, subresource)) as Obj
  const livePart = live === undefined ? {} : managedPart(live, subresource)
  const managers = live === undefined ? [] : readManagers(live)
  const identity: ManagerIdentity = { manager, operation: 'Apply', apiVersion, subresource }
  const previous = managers.find((entry) => sameManager(entry, identity))
  const others = managers.filter((entry) => entry !== previous)
  const appliedSet = setOfMap(appliedPart)

  const merged = structuredClone(mergeApplied(livePart, appliedPart, '')) as Obj
  // Fields this manager applied last time and no longer does go, unless someone else still owns them.
  const stillOwned = others.reduce((owned, entry) => union(owned, entry.fields), appliedSet)
  if (previous) removeFromMap(merged, difference(previous.fields, stillOwned), stillOwned)

  const { added, modified, removed } = compare(setOfMap(livePart), setOfMap(merged))
  const changed = union(added, modified)
  const conflicts = others.flatMap((entry) =>
    memberPaths(intersection(entry.fields, changed)).map(
      (path): Conflict => ({
        manager: entry.manager,
        field: readablePath(path),
        operation: entry.operation,
        apiVersion: entry.apiVersion,
        ...(entry.subresource ? { subresource: entry.subresource } : {}),
      }),
    ),
  )
  if (conflicts.length > 0 && !force) throw new ApplyConflictError(conflicts)

  const unchanged =
    previous !== undefined &&
    previous.apiVersion === apiVersion &&
    equalSets(previous.fields, appliedSet) &&
    isDeepStrictEqual(livePart, merged)
  const applyEntry: Manager = { ...identity, time: unchanged ? previous.time : now, fields: appliedSet }
  const next = managers.map((entry) =>
    entry === previous
      ? applyEntry
      : { ...entry, fields: difference(difference(entry.fields, changed), removed) },
  )
  if (!previous) next.push(applyEntry)

  const base = live ?? withoutStatus(applied)
  return withManagers(withManagedPart(base, merged, subresource), next)
}

/**
 * `after` with metadata.managedFields updated for an ordinary create (`before` undefined), update
 * or patch by `options.manager`: it takes the fields it added or changed from everyone else, and
 * removed fields leave every entry. Uses `after`'s managedFields when the request carried them.
 */
export function recordUpdate(before: Obj | undefined, after: Obj, options: UpdateOptions): Obj {
  const { manager, now, apiVersion, subresource } = options
  const carried = isObject(after['metadata']) && isPresent(after['metadata']['managedFields'])
  const managers = readManagers(carried || before === undefined ? after : before)
  const beforeSet = before === undefined ? new FieldSet() : setOfMap(managedPart(before, subresource))
  const { added, modified, removed } = compare(beforeSet, setOfMap(managedPart(after, subresource)))
  const changed = union(added, modified)
  if (isEmpty(changed) && isEmpty(removed)) return withManagers(after, managers)

  const identity: ManagerIdentity = { manager, operation: 'Update', apiVersion, subresource }
  const own = managers.find((entry) => sameManager(entry, identity))
  const next = managers.map((entry) =>
    entry === own
      ? { ...entry, time: now, fields: union(difference(entry.fields, removed), changed) }
      : { ...entry, fields: difference(difference(entry.fields, changed), removed) },
  )
  if (!own) next.push({ ...identity, time: now, fields: changed })
  return withManagers(after, next)
}

/** The FieldsV1 of all the fields of `object` that managers can own (system fields and status excluded). */
export function fieldSetOf(object: Obj): Record<string, unknown> {
  return toFieldsV1(setOfMap(managedPart(object, undefined)))
}

// ---------------------------------------------------------------------------------------------
// Which part of an object is managed
// ---------------------------------------------------------------------------------------------

/** Metadata the server owns; never a field manager's. */
export const unmanagedMetadata: ReadonlySet<string> = new Set([
  'name',
  'namespace',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'managedFields',
  'selfLink',
])

/** The fields managers can own: only `status` for the status subresource; otherwise all but system fields and status. */
function managedPart(object: Obj, subresource: string | undefined): Obj {
  if (subresource === 'status') return Object.hasOwn(object, 'status') ? { status: object['status'] } : {}
  const part: Obj = {}
  for (const [key, value] of Object.entries(object)) {
    if (key === 'apiVersion' || key === 'kind' || key === 'status') continue
    if (key === 'metadata') {
      if (!isObject(value)) continue
      const metadata = Object.fromEntries(
        Object.entries(value).filter(([name]) => !unmanagedMetadata.has(name)),
      )
      if (Object.keys(metadata).length > 0) part[key] = metadata
      continue
    }
    setField(part, key, value)
  }
  return part
}

/** `base`'s system fields (and status, for the main resource) with `part` as the managed fields. */
function withManagedPart(base: Obj, part: Obj, subresource: string | undefined): Obj {
  if (subresource === 'status') {
    const { status: _, ...rest } = base
    return Object.hasOwn(part, 'status') ? { ...rest, status: part['status'] } : rest
  }
  const result: Obj = {}
  if (Object.hasOwn(base, 'apiVersion')) result['apiVersion'] = base['apiVersion']
  if (Object.hasOwn(base, 'kind')) result['kind'] = base['kind']
  const baseMetadata = isObject(base['metadata']) ? base['metadata'] : {}
  const metadata = Object.fromEntries(
    Object.entries(baseMetadata).filter(([name]) => unmanagedMetadata.has(name)),
  )
  for (const [key, value] of Object.entries(isObject(part['metadata']) ? part['metadata'] : {})) {
    setField(metadata, key, value)
  }
  result['metadata'] = metadata
  for (const [key, value] of Object.entries(part)) {
    if (key !== 'metadata') setField(result, key, value)
  }
  if (Object.hasOwn(base, 'status')) result['status'] = base['status']
  return result
}

function withoutStatus(object: Obj): Obj {
  const { status: _, ...rest } = object
  return rest
}

function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls)
  if (!isObject(value)) return value
  const result: Obj = {}
  for (const [key, child] of Object.entries(value)) {
    if (child !== null) setField(result, key, withoutNulls(child))
  }
  return result
}

function isPresent(value: unknown): boolean {
  return value !== undefined && value !== null
}

// ---------------------------------------------------------------------------------------------
// Field sets
// ---------------------------------------------------------------------------------------------

/**
 * A set of field paths as a tree keyed by FieldsV1 path elements (`f:<field>`, `k:<key json>`,
 * `v:<value json>`, `i:<index>`). `member` marks the path itself as in the set: a leaf, a list
 * item or a set value; map fields are in the set only through their children, as in Kubernetes.
 */
class FieldSet {
  member = false
  /** Set when built from an object: the leaf's value, so that two objects' sets can be compared. */
  leaf?: { value: unknown }
  readonly children = new Map<string, FieldSet>()
}

type Path = readonly string[]

function setOfMap(map: Obj): FieldSet {
  const set = new FieldSet()
  for (const [key, value] of Object.entries(map)) {
    const child = setOfValue(value, key)
    if (!isEmpty(child)) set.children.set(`f:${key}`, child)
  }
  return set
}

function setOfValue(value: unknown, field: string): FieldSet {
  if (isObject(value) && Object.keys(value).length > 0) return setOfMap(value)
  if (Array.isArray(value)) {
    const elements = keyedElements(value, elementFunction(field, value))
    if (elements) {
      const set = new FieldSet()
      value.forEach((item, index) => {
        const child = isObject(item) ? setOfMap(item) : new FieldSet()
        child.member = true
        set.children.set(elements[index] ?? '', child)
      })
      return set
    }
  }
  const leaf = new FieldSet()
  leaf.member = true
  leaf.leaf = { value }
  return leaf
}

/** How a list's items are named in a field set, or undefined when the list is atomic. */
function elementFunction(field: string, items: readonly unknown[]) {
  const strategy = listStrategy(field, items)
  if (strategy.type === 'atomic') return undefined
  if (strategy.type === 'set') {
    return (item: unknown) =>
      isObject(item) || Array.isArray(item) ? undefined : `v:${JSON.stringify(item)}`
  }
  return (item: unknown) => {
    const key = strategy.keyOf(item)
    return key === undefined ? undefined : `k:${key}`
  }
}

/** The items' path elements, or undefined (atomic) when an item has none or two share one. */
function keyedElements(
  items: readonly unknown[],
  elementOf: ((item: unknown) => string | undefined) | undefined,
): string[] | undefined {
  if (!elementOf) return undefined
  const elements: string[] = []
  for (const item of items) {
    const element = elementOf(item)
    if (element === undefined || elements.includes(element)) return undefined
    elements.push(element)
  }
  return elements
}

function isEmpty(set: FieldSet): boolean {
  if (set.member) return false
  for (const child of set.children.values()) if (!isEmpty(child)) return false
  return true
}

function union(a: FieldSet, b: FieldSet): FieldSet {
  const result = new FieldSet()
  result.member = a.member || b.member
  for (const element of new Set([...a.children.keys(), ...b.children.keys()])) {
    const left = a.children.get(element)
    const right = b.children.get(element)
    const child = left && right ? union(left, right) : (left ?? right)
    if (child) result.children.set(element, child)
  }
  return result
}

/** Members of `a` that are not members of `b`. */
function difference(a: FieldSet, b: FieldSet): FieldSet {
  const result = new FieldSet()
  result.member = a.member && !b.member
  for (const [element, left] of a.children) {
    const right = b.children.get(element)
    const child = right ? difference(left, right) : left
    if (!isEmpty(child)) result.children.set(element, child)
  }
  return result
}

function intersection(a: FieldSet, b: FieldSet): FieldSet {
  const result = new FieldSet()
  result.member = a.member && b.member
  for (const [element, left] of a.children) {
    const right = b.children.get(element)
    if (!right) continue
    const child = intersection(left, right)
    if (!isEmpty(child)) result.children.set(element, child)
  }
  return result
}

function equalSets(a: FieldSet, b: FieldSet): boolean {
  return isEmpty(difference(a, b)) && isEmpty(difference(b, a))
}

/** Leaves present in both sets (built from objects) whose values differ. */
function modifiedLeaves(before: FieldSet, after: FieldSet): FieldSet {
  const result = new FieldSet()
  result.member =
    before.leaf !== undefined &&
    after.leaf !== undefined &&
    !isDeepStrictEqual(before.leaf.value, after.leaf.value)
  for (const [element, right] of after.children) {
    const left = before.children.get(element)
    if (!left) continue
    const child = modifiedLeaves(left, right)
    if (!isEmpty(child)) result.children.set(element, child)
  }
  return result
}

function compare(before: FieldSet, after: FieldSet) {
  return {
    added: difference(after, before),
    removed: difference(before, after),
    modified: modifiedLeaves(before, after),
  }
}

const elementRank: Record<string, number> = { 'f:': 0, 'k:': 1, 'v:': 2, 'i:': 3 }

function sortedElements(set: FieldSet): string[] {
  const rank = (element: string) => elementRank[element.slice(0, 2)] ?? 4
  return [...set.children.keys()].sort((a, b) => rank(a) - rank(b) || compareStrings(a, b))
}

function memberPaths(set: FieldSet, prefix: Path = []): Path[] {
  const paths: Path[] = set.member ? [prefix] : []
  for (const element of sortedElements(set)) {
    const child = set.children.get(element)
    if (child) paths.push(...memberPaths(child, [...prefix, element]))
  }
  return paths
}

/** A path as Kubernetes prints it: `.spec.containers[name="app"].image`, `.metadata.finalizers[="x"]`. */
function readablePath(path: Path): string {
  return path
    .map((element) => {
      const body = element.slice(2)
      switch (element.slice(0, 2)) {
        case 'f:':
          return `.${body}`
        case 'k:': {
          const key = parseJson(body)
          if (!isObject(key)) return `[${body}]`
          return `[${Object.entries(key)
            .map(([name, value]) => `${name}=${JSON.stringify(value)}`)
            .join(',')}]`
        }
        case 'v:':
          return `[=${body}]`
        case 'i:':
          return `[${body}]`
        default:
          return element
      }
    })
    .join('')
}

function toFieldsV1(set: FieldSet): Record<string, unknown> {
  const json: Record<string, unknown> = {}
  if (set.member && set.children.size > 0) json['.'] = {}
  for (const element of sortedElements(set)) {
    const child = set.children.get(element)
    if (child && !isEmpty(child)) json[element] = toFieldsV1(child)
  }
  return json
}

function fromFieldsV1(json: unknown): FieldSet {
  const set = new FieldSet()
  if (!isObject(json)) return set
  for (const [element, value] of Object.entries(json)) {
    if (element === '.') {
      set.member = true
      continue
    }
    const child = fromFieldsV1(value)
    if (child.children.size === 0) child.member = true
    const normalized = normalizeElement(element)
    const existing = set.children.get(normalized)
    set.children.set(normalized, existing ? union(existing, child) : child)
  }
  return set
}

/** Keys written by other clients may order their fields differently; ours are sorted. */
function normalizeElement(element: string): string {
  if (!element.startsWith('k:')) return element
  const key = parseJson(element.slice(2))
  if (!isObject(key)) return element
  const sorted = Object.keys(key).sort(compareStrings)
  return `k:${JSON.stringify(Object.fromEntries(sorted.map((name) => [name, key[name]])))}`
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Merging an applied configuration and pruning what its manager dropped
// ---------------------------------------------------------------------------------------------

/** Maps merge recursively, keyed lists and sets merge by key (applied order first), everything else is replaced. */
function mergeApplied(live: unknown, applied: unknown, field: string): unknown {
  if (isObject(live) && isObject(applied)) {
    const result: Obj = { ...live }
    for (const [key, value] of Object.entries(applied)) {
      setField(result, key, Object.hasOwn(live, key) ? mergeApplied(live[key], value, key) : value)
    }
    return result
  }
  if (Array.isArray(live) && Array.isArray(applied)) {
    const elementOf = elementFunction(field, [...live, ...applied])
    if (elementOf && keyedElements(live, elementOf) && keyedElements(applied, elementOf)) {
      return mergeListByKey(live, applied, elementOf, (liveItem, appliedItem) =>
        mergeApplied(liveItem, appliedItem, ''),
      )
    }
  }
  return applied
}

/**
 * Removes the members of `remove` from `map` (owned, mutated). A map or list emptied by the
 * removal goes too, unless a manager in `keep` owns it as a value of its own.
 */
function removeFromMap(map: Obj, remove: FieldSet, keep: FieldSet | undefined): void {
  for (const [element, child] of remove.children) {
    if (!element.startsWith('f:')) continue
    const key = element.slice(2)
    if (!Object.hasOwn(map, key)) continue
    const pruned = child.member
      ? undefined
      : removeFromValue(map[key], child, keep?.children.get(element), key)
    if (pruned === undefined) delete map[key]
    else setField(map, key, pruned)
  }
}

function removeFromValue(
  value: unknown,
  remove: FieldSet,
  keep: FieldSet | undefined,
  field: string,
): unknown {
  if (isObject(value)) {
    const before = Object.keys(value).length
    removeFromMap(value, remove, keep)
    return before > 0 && Object.keys(value).length === 0 && !keep?.member ? undefined : value
  }
  if (!Array.isArray(value)) return value
  const elementOf = elementFunction(field, value)
  if (!elementOf) return value
  const kept: unknown[] = []
  for (const item of value) {
    const element = elementOf(item)
    const child = element === undefined ? undefined : remove.children.get(element)
    if (child?.member) continue
    if (child && element !== undefined && isObject(item))
      removeFromMap(item, child, keep?.children.get(element))
    kept.push(item)
  }
  return value.length > 0 && kept.length === 0 && !keep?.member ? undefined : kept
}

// ---------------------------------------------------------------------------------------------
// managedFields entries
// ---------------------------------------------------------------------------------------------

interface ManagerIdentity {
  manager: string
  operation: 'Apply' | 'Update'
  apiVersion: string
  subresource?: string | undefined
}

interface Manager extends ManagerIdentity {
  time: string
  fields: FieldSet
}

/** As in Kubernetes: an Apply entry is one per manager and subresource; Update entries are per API version too. */
function sameManager(a: ManagerIdentity, b: ManagerIdentity): boolean {
  return (
    a.manager === b.manager &&
    a.operation === b.operation &&
    (a.subresource ?? '') === (b.subresource ?? '') &&
    (a.operation === 'Apply' || a.apiVersion === b.apiVersion)
  )
}

/** The object's entries; malformed ones are skipped rather than failing the request. */
function readManagers(object: Obj): Manager[] {
  const metadata = object['metadata']
  const entries = isObject(metadata) ? metadata['managedFields'] : undefined
  if (!Array.isArray(entries)) return []
  const managers: Manager[] = []
  for (const entry of entries) {
    if (!isObject(entry) || typeof entry['manager'] !== 'string') continue
    const operation = entry['operation']
    if (operation !== 'Apply' && operation !== 'Update') continue
    const subresource = entry['subresource']
    managers.push({
      manager: entry['manager'],
      operation,
      apiVersion: typeof entry['apiVersion'] === 'string' ? entry['apiVersion'] : '',
      time: typeof entry['time'] === 'string' ? entry['time'] : '',
      ...(typeof subresource === 'string' && subresource !== '' ? { subresource } : {}),
      fields: fromFieldsV1(entry['fieldsV1']),
    })
  }
  return managers
}

/** A deep copy of `object` with `managers` (empty ones dropped) as its metadata.managedFields. */
function withManagers(object: Obj, managers: readonly Manager[]): Obj {
  const result = structuredClone(object)
  const entries = managers
    .filter((entry) => !isEmpty(entry.fields))
    .map(
      (entry): ManagedFieldsEntry => ({
        manager: entry.manager,
        operation: entry.operation,
        apiVersion: entry.apiVersion,
        time: entry.time,
        fieldsType: 'FieldsV1',
        fieldsV1: toFieldsV1(entry.fields),
        ...(entry.subresource ? { subresource: entry.subresource } : {}),
      }),
    )
  const { managedFields: _, ...metadata } = isObject(result['metadata']) ? result['metadata'] : {}
  if (entries.length > 0 || isObject(result['metadata'])) {
    result['metadata'] = entries.length > 0 ? { ...metadata, managedFields: entries } : metadata
  }
  return result
}

function describeManager(conflict: Conflict): string {
  let description = JSON.stringify(conflict.manager)
  if (conflict.subresource) description += ` with subresource ${JSON.stringify(conflict.subresource)}`
  if (conflict.operation !== 'Apply' && conflict.apiVersion) description += ` using ${conflict.apiVersion}`
  return description
}

/** Kubernetes' wording, so that kubectl users see the message they know. */
function conflictMessage(conflicts: readonly Conflict[]): string {
  const [only] = conflicts
  if (conflicts.length === 1 && only) {
    return `Apply failed with 1 conflict: conflict with ${describeManager(only)}: ${only.field}`
  }
  const byManager = new Map<string, string[]>()
  for (const conflict of conflicts) {
    const manager = describeManager(conflict)
    byManager.set(manager, [...(byManager.get(manager) ?? []), conflict.field])
  }
  const lines = [...byManager.keys()]
    .sort(compareStrings)
    .flatMap((manager) => [
      `conflicts with ${manager}:`,
      ...(byManager.get(manager) ?? []).map((f) => `- ${f}`),
    ])
  return `Apply failed with ${conflicts.length} conflicts: ${lines.join('\n')}`
}
