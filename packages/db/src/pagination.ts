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
    throw new DomainError(ErrorCode.invalidSpec, 'The cursor is not one this API issued.', {
      violations: [
        { pointer: '/cursor', message: 'Not a valid cursor; pass nextCursor from a previous page.' },
      ],
      extensions: { in: 'query' },
    })
  }
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
