import { DomainError, ErrorCode } from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import type { Tx } from './client.ts'
import type { Prisma } from './generated/prisma/client.ts'

// The one way a cluster row changes state (STYLE.md 6), apart from the statements that create and
// lock it; its own module so that clusters and operations can both use it without importing each other.

const json = (value: unknown) => value as Prisma.InputJsonValue

/** The columns a state change reads, locked. */
export interface LockedClusterState {
  id: string
  projectId: string
  status: unknown
  activeOperationId: string | null
  generation: number
  revision: number
}

export interface ClusterChange {
  /** The revision the caller last saw (from If-Match); a mismatch is 412. */
  expectedRevision?: number
  /** Computes the new state from the locked, current row. */
  apply(cluster: LockedClusterState): {
    data: Prisma.ClusterUpdateInput
    audit?: { action: string; data?: unknown }
  }
}

/**
 * The one function that changes a cluster row: locks it (reading only what a change needs), checks
 * the expected revision, writes the change with a new revision, and appends the audit event, all in
 * the caller's transaction. Returns false when the cluster is gone.
 */
export async function transitionCluster(
  tx: Tx,
  actor: Actor,
  projectId: string,
  clusterId: string,
  change: ClusterChange,
): Promise<boolean> {
  const rows = await tx.$queryRaw<LockedClusterState[]>`
    SELECT id, "projectId", status, "activeOperationId", generation, revision FROM "Cluster"
    WHERE id = ${clusterId}::uuid AND "projectId" = ${projectId}::uuid FOR UPDATE`
  const current = rows[0]
  if (!current) return false
  assertRevision(current, change.expectedRevision)
  const { data, audit } = change.apply(current)
  await tx.cluster.update({ where: { id: current.id }, data: { ...data, revision: { increment: 1 } } })
  if (audit) {
    await recordAudit(tx, actor, {
      projectId,
      action: audit.action,
      targetKind: 'cluster',
      targetId: current.id,
      data: json(audit.data ?? {}),
    })
  }
  return true
}

export const etagOf = (revision: number) => `"${revision}"`

/** If-Match on a cluster: a revision other than the current one is 412 (undefined: any revision). */
export function assertRevision(current: { revision: number }, expectedRevision: number | undefined) {
  if (expectedRevision === undefined || expectedRevision === current.revision) return
  throw new DomainError(
    ErrorCode.preconditionFailed,
    `The cluster changed since you read it (revision ${current.revision}, If-Match had ${expectedRevision}).`,
    { extensions: { currentETag: etagOf(current.revision) } },
  )
}
