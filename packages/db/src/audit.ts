import type { Queryable } from './client.ts'
import type { AuditEvent, Prisma } from './generated/prisma/client.ts'
import { decodeCursor, encodeCursor, type Page } from './pagination.ts'

export interface Actor {
  /** `user:<sub>` or `token:<id>`. */
  subject: string
  requestId: string
  /** W3C traceparent of the request's span while tracing is on; operations it starts keep it. */
  traceparent?: string | undefined
}

export interface AuditEntry {
  projectId: string | null
  action: string
  targetKind: string
  targetId: string
  data?: Prisma.InputJsonValue
}

/** Appends an audit row; call it in the same transaction as the mutation it records. */
export async function recordAudit(db: Queryable, actor: Actor, entry: AuditEntry): Promise<void> {
  await db.auditEvent.create({
    data: {
      projectId: entry.projectId,
      actor: actor.subject,
      action: entry.action,
      targetKind: entry.targetKind,
      targetId: entry.targetId,
      requestId: actor.requestId,
      data: entry.data ?? {},
    },
  })
}

export interface AuditQuery {
  projectId: string
  /** Exact, or a prefix when it ends in `.*` (`credential.*`). */
  action?: string | undefined
  actor?: string | undefined
  targetKind?: string | undefined
  targetId?: string | undefined
  /** Inclusive lower bound on createdAt. */
  since?: Date | undefined
  /** Exclusive upper bound on createdAt. */
  until?: Date | undefined
  order: 'asc' | 'desc'
  limit: number
  cursor?: string | undefined
}

const isAuditId = (id: string) => /^[0-9]{1,19}$/.test(id)

/**
 * A page of a project's audit log in (createdAt, id) order, either way. Keyset-paginated on the
 * (projectId, createdAt) index: the redundant bound on createdAt keeps a deep page as cheap as the first.
 */
export async function listAuditEvents(db: Queryable, q: AuditQuery): Promise<Page<AuditEvent>> {
  const cursor = decodeCursor(q.cursor, isAuditId)
  const asc = q.order === 'asc'
  const rows = await db.auditEvent.findMany({
    where: {
      projectId: q.projectId,
      ...(q.action
        ? { action: q.action.endsWith('.*') ? { startsWith: q.action.slice(0, -1) } : q.action }
        : {}),
      ...(q.actor ? { actor: q.actor } : {}),
      ...(q.targetKind ? { targetKind: q.targetKind } : {}),
      ...(q.targetId ? { targetId: q.targetId } : {}),
      AND: [
        ...(q.since || q.until
          ? [{ createdAt: { ...(q.since ? { gte: q.since } : {}), ...(q.until ? { lt: q.until } : {}) } }]
          : []),
        ...(cursor
          ? [
              { createdAt: asc ? { gte: cursor.createdAt } : { lte: cursor.createdAt } },
              {
                OR: [
                  { createdAt: asc ? { gt: cursor.createdAt } : { lt: cursor.createdAt } },
                  {
                    createdAt: cursor.createdAt,
                    id: asc ? { gt: BigInt(cursor.id) } : { lt: BigInt(cursor.id) },
                  },
                ],
              },
            ]
          : []),
      ],
    },
    orderBy: [{ createdAt: q.order }, { id: q.order }],
    take: q.limit + 1,
  })
  const items = rows.slice(0, q.limit)
  const last = items[items.length - 1]
  return {
    items,
    nextCursor:
      rows.length > q.limit && last
        ? encodeCursor({ createdAt: last.createdAt, id: last.id.toString() })
        : null,
  }
}
