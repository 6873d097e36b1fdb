import {
  type BuiltState,
  type ClusterStatus,
  derivePhase,
  type OperationEnd,
  type ResolvedClusterSpec,
  settleOperation,
} from '@kiln/domain'
import type { Actor } from './audit.ts'
import type { Queryable, Tx } from './client.ts'
import { transitionCluster } from './cluster-transitions.ts'
import type { Operation, Prisma } from './generated/prisma/client.ts'

/**
 * Machines that are nodes of their cluster: joined, or draining out of it. One allocated by a change
 * that was cancelled or failed before it joined is not a node: the health checker leaves it alone
 * (repairing it would finish the change nobody retried) and SpecApplied counts it as not built.
 */
export const nodePhases = ['Running', 'Draining']

/**
 * What is built of a cluster against its spec: its control plane and each node group, by the
 * machines that are nodes now. Generations are the caller's: it holds the locked row.
 */
export async function loadBuiltParts(
  db: Queryable,
  clusterId: string,
): Promise<Omit<BuiltState, 'generation' | 'observedGeneration'> | null> {
  const cluster = await db.cluster.findUnique({
    where: { id: clusterId },
    select: {
      spec: true,
      nodeGroups: { select: { id: true, name: true, count: true }, orderBy: [{ createdAt: 'asc' }] },
    },
  })
  if (!cluster) return null
  const spec = cluster.spec as unknown as ResolvedClusterSpec
  const nodes = await db.machine.findMany({
    where: { clusterId, phase: { in: nodePhases } },
    select: { nodeGroupId: true, role: true, kubernetesVersion: true },
  })
  const versions = (match: (m: (typeof nodes)[number]) => boolean) =>
    nodes.filter(match).map((m) => m.kubernetesVersion)
  return {
    kubernetesVersion: spec.kubernetesVersion,
    parts: [
      {
        name: 'control plane',
        desired: spec.controlPlane.count,
        nodeVersions: versions((m) => m.role === 'control-plane'),
      },
      ...cluster.nodeGroups.map((ng) => ({
        name: `node group ${ng.name}`,
        desired: ng.count,
        nodeVersions: versions((m) => m.nodeGroupId === ng.id),
      })),
    ],
  }
}

/**
 * Whether a cluster holds machines (reserved, allocated or running). A create that ended holding
 * none and no endpoint shows `Failed` rather than `Degraded` (see `derivePhase`).
 */
export async function holdsMachines(db: Queryable, clusterId: string): Promise<boolean> {
  return (await db.machine.count({ where: { clusterId } })) > 0
}

/**
 * Ends a pending operation's hold on its cluster when it is cancelled before any step ran: the
 * cluster is freed and says, as after any cancel, whether its spec is built.
 */
export async function releaseCancelledCluster(tx: Tx, actor: Actor, op: Operation) {
  if (!op.clusterId) return
  const held = await tx.cluster.count({ where: { id: op.clusterId, activeOperationId: op.id } })
  const parts = await loadBuiltParts(tx, op.clusterId)
  if (held === 0 || !parts) return
  const holds = await holdsMachines(tx, op.clusterId)
  const end: OperationEnd = { operationId: op.id, status: 'cancelled', reason: 'Cancelled' }
  await transitionCluster(tx, actor, op.projectId, op.clusterId, {
    apply: (cluster) => {
      const status = cluster.status as unknown as ClusterStatus
      const conditions = settleOperation(
        status.conditions,
        end,
        { ...parts, generation: cluster.generation, observedGeneration: status.observedGeneration },
        new Date(),
      )
      const next: ClusterStatus = {
        ...status,
        conditions,
        phase: derivePhase(conditions, status.observedGeneration, holds || Boolean(status.endpoint)),
        message: `${op.kind} cancelled`,
      }
      // No audit row of its own: the cancel that caused it has one.
      return { data: { status: next as unknown as Prisma.InputJsonValue, activeOperationId: null } }
    },
  })
}
