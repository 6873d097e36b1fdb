import type { Queryable } from './client.ts'
import type { Prisma } from './generated/prisma/client.ts'

export interface Actor {
  /** `user:<sub>` or `token:<id>`. */
  subject: string
  requestId: string
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
