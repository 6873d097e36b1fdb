import { DomainError, ErrorCode } from '@kiln/domain'
import { isUuid } from './catalogue.ts'

export interface Cursor {
  createdAt: Date
  id: string
}

export interface Page<T> {
  items: T[]
  nextCursor: string | null
}

/** Opaque to clients: base64url of the last item's (createdAt, id). */
export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id])).toString('base64url')
}

/** `isId` checks the id's form: a uuid for most tables (the audit log's ids are integers). */
export function decodeCursor(
  value: string | undefined,
  isId: (id: string) => boolean = isUuid,
): Cursor | undefined {
  if (!value) return undefined
  try {
    const [createdAt, id] = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as [string, string]
    const date = new Date(createdAt)
    if (typeof id !== 'string' || !isId(id) || Number.isNaN(date.getTime())) throw new Error('bad cursor')
    return { createdAt: date, id }
  } catch {
    throw invalidCursor()
  }
}

function invalidCursor() {
  return new DomainError(ErrorCode.invalidSpec, 'The cursor is not one this API issued.', {
    violations: [
      { pointer: '/cursor', message: 'Not a valid cursor; pass nextCursor from a previous page.' },
    ],
    extensions: { in: 'query' },
  })
}

/**
 * The keyset condition for "after this cursor" in (createdAt, id) order. The redundant `gte` gives
 * the planner a range on the (…, createdAt, id) index, so page 2,000 costs what page 1 does.
 */
export function afterCursor(cursor: Cursor | undefined) {
  if (!cursor) return {}
  return {
    AND: [
      { createdAt: { gte: cursor.createdAt } },
      { OR: [{ createdAt: { gt: cursor.createdAt } }, { id: { gt: cursor.id } }] },
    ],
  }
}

/**
 * The same keyset condition for hand-written SQL: `param` binds a value and returns its placeholder;
 * `alias` is the table's alias in the statement.
 */
export function afterCursorSql(
  cursor: Cursor,
  alias: string,
  param: (value: unknown, cast: string) => string,
) {
  const at = param(cursor.createdAt, '::timestamptz')
  return `${alias}."createdAt" >= ${at} AND (${alias}."createdAt" > ${at} OR ${alias}.id > ${param(cursor.id, '::uuid')})`
}

/** Turns `limit + 1` rows into a page. */
export function toPage<T extends Cursor>(rows: T[], limit: number): Page<T> {
  const items = rows.slice(0, limit)
  const last = items[items.length - 1]
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last) : null }
}

/** One position in a list held in memory: compared part by part, numbers as numbers. */
export type ListKey = readonly (string | number)[]

function compareKeys(a: ListKey, b: ListKey): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!
    const y = b[i]!
    if (x !== y) return x < y ? -1 : 1
  }
  return a.length - b.length
}

/**
 * Pages a list read whole (a catalogue, a cluster's node groups or CAs) the way the stored lists
 * page: ordered by `keyOf` (unique per item), the opaque cursor holds the last item's key, and
 * the next page is what sorts after it, so an item added or removed meanwhile shifts nothing.
 */
export function pageInMemory<T>(
  items: T[],
  keyOf: (item: T) => ListKey,
  query: { limit?: number; cursor?: string },
): Page<T> {
  const limit = query.limit ?? 50
  const keyed = items.map((item) => ({ item, key: keyOf(item) })).sort((a, b) => compareKeys(a.key, b.key))
  const after = query.cursor ? decodeListKey(query.cursor, keyed[0]?.key) : undefined
  const rest = after ? keyed.filter((k) => compareKeys(k.key, after) > 0) : keyed
  const page = rest.slice(0, limit)
  const last = page[page.length - 1]
  return {
    items: page.map((k) => k.item),
    nextCursor:
      rest.length > limit && last ? Buffer.from(JSON.stringify(last.key)).toString('base64url') : null,
  }
}

/** A cursor of `pageInMemory`: a key of the same shape as the list's (`like`), or a 422. */
function decodeListKey(value: string, like: ListKey | undefined): ListKey {
  let key: unknown
  try {
    key = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'))
  } catch {
    throw invalidCursor()
  }
  const sameShape =
    Array.isArray(key) &&
    key.every((part) => typeof part === 'string' || typeof part === 'number') &&
    (like === undefined ||
      (key.length === like.length && key.every((part, i) => typeof part === typeof like[i])))
  if (!sameShape) throw invalidCursor()
  return key as ListKey
}
