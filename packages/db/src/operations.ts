import {
  DomainError,
  ErrorCode,
  isTerminal,
  notFound,
  type OperationKind,
  type OperationStatus,
  plannedSteps,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import type { Queryable, Tx } from './client.ts'
import type { Operation, Prisma } from './generated/prisma/client.ts'
import { afterCursor, decodeCursor, type Page, toPage } from './pagination.ts'

export interface OperationTarget {
  projectId: string
  clusterId: string | null
  resource: { kind: string; id: string; name: string }
}

/** Writes a pending operation. Callers hold the cluster lock (see `startClusterOperation`). */
export async function createOperation(
  tx: Tx,
  actor: Actor,
  kind: OperationKind,
  target: OperationTarget,
  params: Prisma.InputJsonValue = {},
): Promise<Operation> {
  return tx.operation.create({
    data: {
      kind,
      projectId: target.projectId,
      clusterId: target.clusterId,
      resource: target.resource,
      params,
      steps: plannedSteps(kind) as unknown as Prisma.InputJsonValue,
      requestedBy: actor.subject,
    },
  })
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
    const now = new Date()
    updated = await tx.operation.update({
      where: { id },
      data: {
        status: 'cancelled',
        cancelRequested: true,
        finishedAt: now,
        steps: (op.steps as { status: string }[]).map((s) => ({ ...s, status: 'skipped' })),
      },
    })
    if (op.clusterId) {
      await tx.cluster.updateMany({
        where: { id: op.clusterId, activeOperationId: id },
        data: { activeOperationId: null, revision: { increment: 1 } },
      })
    }
  } else {
    updated = await tx.operation.update({ where: { id }, data: { cancelRequested: true } })
  }
  await recordAudit(tx, actor, {
    projectId: op.projectId,
    action: 'operation.cancel',
    targetKind: 'operation',
    targetId: id,
  })
  return updated
}
