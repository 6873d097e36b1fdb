import {
  DomainError,
  ErrorCode,
  groupClaim,
  invalidSpec,
  machinesConsumption,
  type NodeGroupInput,
  notFound,
  type Provenance,
  type ResolvedClusterSpec,
  resolveNodeGroup,
  subtractConsumption,
  type Violation,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import { findTemplate, isUuid, loadMachineClasses, loadResolutionContext } from './catalogue.ts'
import type { Tx } from './client.ts'
import { etagOf } from './cluster-transitions.ts'
import { assertIdle, type ClusterRow, lockLiveCluster, startClusterOperation } from './clusters.ts'
import type { NodeGroup, Operation, Prisma } from './generated/prisma/client.ts'
import { heldMachines, reserveQuota } from './quotas.ts'

const json = (value: unknown) => value as Prisma.InputJsonValue

export function findNodeGroup(cluster: ClusterRow, ref: string): NodeGroup {
  const ng = cluster.nodeGroups.find((n) => (isUuid(ref) ? n.id === ref : n.name === ref))
  if (!ng) throw notFound('node group', ref)
  return ng
}

/** Resolves one node group against the cluster's template backend and effective features. */
async function resolveForCluster(tx: Tx, cluster: ClusterRow, input: NodeGroupInput) {
  const template = await findTemplate(tx, cluster.projectId, cluster.templateId)
  const ctx = await loadResolutionContext(tx, template, () => '')
  const spec = cluster.spec as unknown as ResolvedClusterSpec
  const violations: Violation[] = []
  const resolved = resolveNodeGroup(ctx, {
    features: spec.features,
    featureProvenance: spec.provenance,
    templateGroup: undefined,
    request: input,
    pointer: (field) => field || '/',
    violations,
  })
  if (violations.length > 0) throw invalidSpec(violations)
  return resolved
}

export async function createNodeGroup(
  tx: Tx,
  actor: Actor,
  projectId: string,
  clusterRef: string,
  input: NodeGroupInput,
): Promise<{ nodeGroup: NodeGroup; operation: Operation }> {
  const cluster = await lockLiveCluster(tx, projectId, clusterRef)
  if (cluster.nodeGroups.some((n) => n.name === input.name)) {
    throw new DomainError(ErrorCode.conflict, `Node group '${input.name}' already exists in this cluster.`, {
      violations: [{ pointer: '/name', message: 'Choose another name.' }],
    })
  }
  const resolved = await resolveForCluster(tx, cluster, input)
  // Busy (409) before over quota (422): the quota is checked on an idle cluster only.
  assertIdle(cluster)
  await reserveQuota(
    tx,
    projectId,
    machinesConsumption(resolved.machineClass, resolved.count, await loadMachineClasses(tx)),
    () => ['/count'],
  )
  const nodeGroup = await tx.nodeGroup.create({
    data: {
      clusterId: cluster.id,
      name: resolved.name,
      role: resolved.role,
      machineClass: resolved.machineClass,
      count: resolved.count,
      minCount: resolved.minCount,
      maxCount: resolved.maxCount,
      zones: resolved.zones,
      labels: resolved.labels,
      taints: json(resolved.taints),
      maxSurge: resolved.maxSurge,
      maxUnavailable: resolved.maxUnavailable,
      features: json(resolved.features),
      provenance: resolved.provenance,
    },
  })
  const operation = await startClusterOperation(
    tx,
    actor,
    cluster,
    'nodegroup.create',
    {},
    nodeGroupResource(nodeGroup),
  )
  await recordAudit(tx, actor, {
    projectId,
    action: 'nodegroup.create',
    targetKind: 'nodegroup',
    targetId: nodeGroup.id,
    data: json({ cluster: cluster.id, operationId: operation.id }),
  })
  return { nodeGroup, operation }
}

const nodeGroupResource = (ng: NodeGroup) => ({ kind: 'nodegroup', id: ng.id, name: ng.name })

export type NodeGroupPatch = Partial<Omit<NodeGroupInput, 'name' | 'machineClass' | 'count'>>

/** Changes a node group's bounds, labels, taints, zones or rollout settings (not its size: see resize). */
/** If-Match: a node group changed since the caller read it is not changed (412). */
function assertNodeGroupRevision(current: NodeGroup, expectedRevision: number | undefined) {
  if (expectedRevision !== undefined && expectedRevision !== current.revision) {
    throw new DomainError(
      ErrorCode.preconditionFailed,
      `Node group '${current.name}' changed since you read it (revision ${current.revision}).`,
      { extensions: { currentETag: etagOf(current.revision) } },
    )
  }
}

export async function patchNodeGroup(
  tx: Tx,
  actor: Actor,
  projectId: string,
  clusterRef: string,
  ref: string,
  patch: NodeGroupPatch,
  expectedRevision?: number,
): Promise<NodeGroup> {
  const cluster = await lockLiveCluster(tx, projectId, clusterRef)
  const current = findNodeGroup(cluster, ref)
  assertNodeGroupRevision(current, expectedRevision)
  if (patch.features !== undefined) {
    throw invalidSpec([
      {
        pointer: '/features',
        message: 'Change node-group features through the cluster (PATCH …/clusters/{cluster}).',
      },
    ])
  }
  const merged: NodeGroupInput = {
    name: current.name,
    role: patch.role ?? current.role,
    machineClass: current.machineClass,
    count: current.count,
    minCount: patch.minCount ?? current.minCount,
    maxCount: patch.maxCount ?? current.maxCount,
    zones: patch.zones ?? current.zones,
    labels: patch.labels ?? (current.labels as Record<string, string>),
    taints: patch.taints ?? (current.taints as NodeGroupInput['taints']),
    maxSurge: patch.maxSurge ?? current.maxSurge,
    maxUnavailable: patch.maxUnavailable ?? current.maxUnavailable,
  }
  const resolved = await resolveForCluster(tx, cluster, merged)
  const provenance = { ...(current.provenance as Provenance) }
  for (const key of Object.keys(patch)) provenance[`/${key}`] = 'nodeGroup'
  const updated = await tx.nodeGroup.update({
    where: { id: current.id },
    data: {
      role: resolved.role,
      minCount: resolved.minCount,
      maxCount: resolved.maxCount,
      zones: resolved.zones,
      labels: resolved.labels,
      taints: json(resolved.taints),
      maxSurge: resolved.maxSurge,
      maxUnavailable: resolved.maxUnavailable,
      provenance,
      revision: { increment: 1 },
    },
  })
  await recordAudit(tx, actor, {
    projectId,
    action: 'nodegroup.update',
    targetKind: 'nodegroup',
    targetId: current.id,
    data: json({ patch }),
  })
  return updated
}

export interface ResizeRequest {
  count: number
  /** Machines to remove first when scaling down (by name). */
  machinesToRemove?: string[]
}

export async function resizeNodeGroup(
  tx: Tx,
  actor: Actor,
  projectId: string,
  clusterRef: string,
  ref: string,
  request: ResizeRequest,
): Promise<{ nodeGroup: NodeGroup; operation: Operation }> {
  const cluster = await lockLiveCluster(tx, projectId, clusterRef)
  const current = findNodeGroup(cluster, ref)
  const violations: Violation[] = []
  if (request.count < current.minCount || request.count > current.maxCount) {
    violations.push({
      pointer: '/count',
      message: `count ${request.count} is outside [${current.minCount}, ${current.maxCount}] for node group '${current.name}'.`,
    })
  }
  const toRemove = request.machinesToRemove ?? []
  if (toRemove.length > 0) {
    if (request.count >= current.count) {
      violations.push({
        pointer: '/machinesToRemove',
        message: 'machinesToRemove applies only when count goes down.',
      })
    } else if (toRemove.length > current.count - request.count) {
      violations.push({
        pointer: '/machinesToRemove',
        message: `Scaling from ${current.count} to ${request.count} removes ${current.count - request.count} machines; ${toRemove.length} were named.`,
      })
    }
    const known = new Set(
      (await tx.machine.findMany({ where: { nodeGroupId: current.id }, select: { name: true } })).map(
        (m) => m.name,
      ),
    )
    toRemove.forEach((name, i) => {
      if (!known.has(name)) {
        violations.push({
          pointer: `/machinesToRemove/${i}`,
          message: `Machine '${name}' is not in node group '${current.name}'.`,
        })
      }
    })
  }
  if (violations.length > 0) throw invalidSpec(violations)
  assertIdle(cluster)
  if (request.count > current.count) {
    // The group claims max(desired, held) (see quotas.ts): what the new count adds to that claim.
    const machineClasses = await loadMachineClasses(tx)
    const held = await heldMachines(tx, current.id)
    const claim = (count: number) =>
      groupClaim({ desired: { machineClass: current.machineClass, count }, held }, machineClasses)
    await reserveQuota(tx, projectId, subtractConsumption(claim(request.count), claim(current.count)), () => [
      '/count',
    ])
  }
  const operation = await startClusterOperation(
    tx,
    actor,
    cluster,
    'nodegroup.resize',
    { from: current.count, to: request.count, machinesToRemove: toRemove },
    nodeGroupResource(current),
  )
  const nodeGroup = await tx.nodeGroup.update({
    where: { id: current.id },
    data: {
      count: request.count,
      provenance: { ...(current.provenance as Provenance), '/count': 'nodeGroup' },
      generation: { increment: 1 },
      revision: { increment: 1 },
    },
  })
  await recordAudit(tx, actor, {
    projectId,
    action: 'nodegroup.resize',
    targetKind: 'nodegroup',
    targetId: current.id,
    data: json({ from: current.count, to: request.count, operationId: operation.id }),
  })
  return { nodeGroup, operation }
}

export async function deleteNodeGroup(
  tx: Tx,
  actor: Actor,
  projectId: string,
  clusterRef: string,
  ref: string,
  expectedRevision?: number,
): Promise<Operation> {
  const cluster = await lockLiveCluster(tx, projectId, clusterRef)
  const current = findNodeGroup(cluster, ref)
  assertNodeGroupRevision(current, expectedRevision)
  const operation = await startClusterOperation(
    tx,
    actor,
    cluster,
    'nodegroup.delete',
    {},
    nodeGroupResource(current),
  )
  await recordAudit(tx, actor, {
    projectId,
    action: 'nodegroup.delete',
    targetKind: 'nodegroup',
    targetId: current.id,
    data: json({ operationId: operation.id }),
  })
  return operation
}
