import {
  appliedOperationKinds,
  DomainError,
  ErrorCode,
  isTerminal,
  notFound,
  type OperationKind,
  type OperationStatus,
  type OperationStep,
  plannedSteps,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import type { Queryable, Tx } from './client.ts'
import { releaseCancelledCluster } from './convergence.ts'
import { type Operation, Prisma } from './generated/prisma/client.ts'
import { afterCursor, decodeCursor, type Page, toPage } from './pagination.ts'

export interface OperationTarget {
  projectId: string
  clusterId: string | null
  resource: { kind: string; id: string; name: string }
}

/**
 * Writes a pending operation (or, for an applied kind, a succeeded one). Callers that start work on a
 * cluster hold its lock (see `startClusterOperation`).
 */
export async function createOperation(
  tx: Tx,
  actor: Actor,
  kind: OperationKind,
  target: OperationTarget,
  params: Prisma.InputJsonValue = {},
): Promise<Operation> {
  // An applied kind was done in the caller's transaction: it is recorded finished, so no worker takes it.
  const applied = (appliedOperationKinds as readonly OperationKind[]).includes(kind)
  const now = new Date()
  return tx.operation.create({
    data: {
      kind,
      projectId: target.projectId,
      clusterId: target.clusterId,
      resource: target.resource,
      params,
      steps: plannedSteps(kind) as unknown as Prisma.InputJsonValue,
      requestedBy: actor.subject,
      requestId: actor.requestId,
      traceparent: actor.traceparent ?? null,
      ...(applied ? { status: 'succeeded', progress: 100, startedAt: now, finishedAt: now } : {}),
    },
  })
}

/** Refuses changes and new credentials on a cluster that is being deleted, naming its delete operation. */
export async function assertNotDeleting(
  db: Queryable,
  cluster: { id: string; name: string; deletionRequested: boolean },
) {
  if (!cluster.deletionRequested) return
  const deletion = await db.operation.findFirst({
    where: { clusterId: cluster.id, kind: 'cluster.delete' },
    orderBy: { createdAt: 'desc' },
    select: { id: true, status: true },
  })
  throw new DomainError(
    ErrorCode.clusterDeleting,
    deletion
      ? `Cluster '${cluster.name}' is being deleted by operation ${deletion.id} (${deletion.status}); it takes no changes and issues no credentials.`
      : `Cluster '${cluster.name}' is being deleted; it takes no changes and issues no credentials.`,
    { extensions: deletion ? { operationId: deletion.id } : {} },
  )
}

export async function getOperation(db: Queryable, id: string, projectIds?: string[]): Promise<Operation> {
  const op = await db.operation.findFirst({
    where: { id, ...(projectIds ? { projectId: { in: projectIds } } : {}) },
  })
  if (!op) throw notFound('operation', id)
  return op
}

export interface OperationListQuery {
  projectId: string
  clusterId?: string
  status?: OperationStatus
  limit: number
  cursor?: string
}

export async function listOperations(db: Queryable, q: OperationListQuery): Promise<Page<Operation>> {
  const rows = await db.operation.findMany({
    where: {
      projectId: q.projectId,
      ...(q.clusterId ? { clusterId: q.clusterId } : {}),
      ...(q.status ? { status: q.status } : {}),
      ...afterCursor(decodeCursor(q.cursor)),
    },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    take: q.limit + 1,
  })
  return toPage(rows, q.limit)
}

/** Ends a pending operation as cancelled: its steps never ran, so all are skipped. */
export async function finishPendingAsCancelled(tx: Tx, op: Operation, error?: Record<string, unknown>) {
  return tx.operation.update({
    where: { id: op.id },
    data: {
      status: 'cancelled',
      cancelRequested: true,
      finishedAt: new Date(),
      steps: (op.steps as unknown as OperationStep[]).map((s) => ({
        ...s,
        status: 'skipped',
      })) as unknown as Prisma.InputJsonValue,
      ...(error ? { error: error as Prisma.InputJsonValue } : {}),
    },
  })
}

/**
 * Cancels an operation. A pending one is cancelled at once and releases its cluster; a running one
 * is asked to stop at its next step boundary (the worker then finishes it as cancelled).
 */
export async function cancelOperation(tx: Tx, actor: Actor, id: string): Promise<Operation> {
  // Lock the operation row so cancel races neither the worker starting it nor a second cancel.
  await tx.$queryRaw`SELECT id FROM "Operation" WHERE id = ${id}::uuid FOR UPDATE`
  const op = await tx.operation.findUnique({ where: { id } })
  if (!op) throw notFound('operation', id)
  if (isTerminal(op.status)) {
    throw new DomainError(
      ErrorCode.conflict,
      `Operation ${id} has already ${op.status}; there is nothing to cancel.`,
      {
        extensions: { operationStatus: op.status },
      },
    )
  }
  let updated: Operation
  if (op.status === 'pending') {
    updated = await finishPendingAsCancelled(tx, op)
    await releaseCancelledCluster(tx, actor, op)
  } else {
    // An operation waiting for its next attempt (no worker holds it) is due now: the cancel is
    // honoured at once, not when the backoff would have tried again.
    const waiting = op.leaseOwner === null && op.leaseUntil !== null && op.leaseUntil > new Date()
    updated = await tx.operation.update({
      where: { id },
      data: { cancelRequested: true, ...(waiting ? { leaseUntil: new Date() } : {}) },
    })
  }
  await recordAudit(tx, actor, {
    projectId: op.projectId,
    action: 'operation.cancel',
    targetKind: 'operation',
    targetId: id,
  })
  return updated
}

/**
 * Retries a failed (or cancelled) operation from the step that did not finish: steps that succeeded
 * stay done. The cluster must be free (or already held by this operation).
 */
export async function retryOperation(tx: Tx, actor: Actor, id: string): Promise<Operation> {
  await tx.$queryRaw`SELECT id FROM "Operation" WHERE id = ${id}::uuid FOR UPDATE`
  const op = await tx.operation.findUnique({ where: { id } })
  if (!op) throw notFound('operation', id)
  if (op.status !== 'failed' && op.status !== 'cancelled') {
    throw new DomainError(
      ErrorCode.conflict,
      `Operation ${id} is ${op.status}; only failed or cancelled operations can be retried.`,
      {
        extensions: { operationStatus: op.status },
      },
    )
  }
  // Every operation acts on a cluster; deleting the cluster row clears `clusterId` (ON DELETE SET NULL).
  const gone = () =>
    new DomainError(
      ErrorCode.clusterGone,
      `The cluster this operation acted on (${(op.resource as { name?: string }).name ?? 'unknown'}) has been deleted; there is nothing left to retry it on.`,
    )
  if (!op.clusterId) throw gone()
  const rows = await tx.$queryRaw<
    { id: string; name: string; activeOperationId: string | null; deletionRequested: boolean }[]
  >`
    SELECT id, name, "activeOperationId", "deletionRequested" FROM "Cluster" WHERE id = ${op.clusterId}::uuid FOR UPDATE`
  const cluster = rows[0]
  if (!cluster) throw gone()
  // Only the delete itself may run again on a cluster that is going.
  if (op.kind !== 'cluster.delete') await assertNotDeleting(tx, cluster)
  if (cluster.activeOperationId && cluster.activeOperationId !== id) {
    throw new DomainError(
      ErrorCode.operationInProgress,
      `The cluster is busy with operation ${cluster.activeOperationId}.`,
      {
        extensions: { operationId: cluster.activeOperationId },
      },
    )
  }
  await tx.cluster.update({
    where: { id: op.clusterId },
    data: { activeOperationId: id, revision: { increment: 1 } },
  })
  const steps = (op.steps as unknown as OperationStep[]).map((s) =>
    s.status === 'succeeded'
      ? s
      : { ...s, status: 'pending' as const, finishedAt: null, message: '', retry: null },
  )
  const updated = await tx.operation.update({
    where: { id },
    data: {
      status: 'pending',
      error: Prisma.DbNull,
      finishedAt: null,
      cancelRequested: false,
      attempts: 0,
      leaseOwner: null,
      leaseUntil: null,
      enqueuedAt: null,
      steps: steps as unknown as Prisma.InputJsonValue,
    },
  })
  await recordAudit(tx, actor, {
    projectId: op.projectId,
    action: 'operation.retry',
    targetKind: 'operation',
    targetId: id,
  })
  return updated
}
