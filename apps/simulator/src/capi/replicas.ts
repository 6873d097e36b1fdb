import { apiVersionOf, type Json, type KubeObject } from './client.ts'
import { conditionOf } from './conditions.ts'
import {
  bootstrapGroup,
  create,
  infrastructureGroup,
  named,
  ownedBy,
  remove,
  type Snapshot,
  type StandInContext,
} from './context.ts'
import {
  alreadyHas,
  annotation,
  type Cluster,
  controllerOf,
  finalizer,
  isDeleting,
  type KubeadmControlPlane,
  label,
  labelValue,
  type Machine,
  type MachineDeployment,
  type MachineTemplateSpec,
  ownerReference,
  type Ref,
  randomSuffix,
} from './model.ts'

// KubeadmControlPlane and MachineDeployment controllers: Machines for the replicas and version asked.

/** Deletion order when scaling down: marked for deletion, then unhealthy, then the newest. */
const byDeletionPriority = (a: Machine, b: Machine) => {
  const rank = (m: Machine) =>
    m.metadata.annotations?.[annotation.deleteMachine] !== undefined
      ? 0
      : conditionOf(m.status?.conditions, 'HealthCheckSucceeded')?.status === 'False' ||
          m.status?.phase === 'Failed'
        ? 1
        : 2
  return (
    rank(a) - rank(b) ||
    String(b.metadata.creationTimestamp).localeCompare(String(a.metadata.creationTimestamp)) ||
    b.metadata.name.localeCompare(a.metadata.name)
  )
}

/** Rollout order: marked for deletion first, then the oldest. */
const byRolloutPriority = (a: Machine, b: Machine) =>
  Number(b.metadata.annotations?.[annotation.deleteMachine] !== undefined) -
    Number(a.metadata.annotations?.[annotation.deleteMachine] !== undefined) ||
  String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)) ||
  a.metadata.name.localeCompare(b.metadata.name)

/**
 * How many Machines to create and which to delete for `desired` replicas at `version`: scaling
 * creates or deletes at once; a version change surges one new Machine, and deletes an old one only
 * once every new one is Running (maxSurge 1, maxUnavailable 0).
 */
function plan(machines: Machine[], desired: number, isUpToDate: (m: Machine) => boolean) {
  const live = machines.filter((m) => !isDeleting(m))
  const upToDate = live.filter(isUpToDate)
  const outdated = live.filter((m) => !isUpToDate(m))
  if (!outdated.length) {
    if (live.length < desired) return { create: desired - live.length, remove: [] as Machine[] }
    return { create: 0, remove: [...live].sort(byDeletionPriority).slice(0, live.length - desired) }
  }
  const ordered = [...outdated].sort(byRolloutPriority)
  if (live.length > desired + 1) return { create: 0, remove: ordered.slice(0, live.length - desired - 1) }
  if (machines.some(isDeleting) || upToDate.some((m) => !m.status?.nodeRef)) return { create: 0, remove: [] }
  if (live.length <= desired) return { create: Math.max(1, desired - live.length), remove: [] }
  return { create: 0, remove: ordered.slice(0, 1) }
}

/** Machines an owner remediates: its MachineHealthCheck said so. */
export const toRemediate = (machines: Machine[]) =>
  machines.filter(
    (m) =>
      !isDeleting(m) &&
      conditionOf(m.status?.conditions, 'OwnerRemediated')?.reason === 'WaitingForRemediation',
  )

export async function reconcileControlPlane(ctx: StandInContext, kcp: KubeadmControlPlane, s: Snapshot) {
  const cluster = s.clusters.find((c) => c.metadata.uid === controllerOf(kcp)?.uid)
  if (!cluster || isDeleting(cluster) || isDeleting(kcp)) return
  const machines = ownedBy(s.machines, kcp)
  const desired = kcp.spec!.replicas ?? 1
  const remediate = toRemediate(machines)
  if (remediate.length) {
    // KCP remediates one Machine at a time, and never its only one (etcd would be lost).
    const live = machines.filter((m) => !isDeleting(m))
    if (live.length > 1 && !machines.some(isDeleting))
      await remove(ctx, 'Machine', remediate[0]!, 'remediation (MachineHealthCheck)')
    return
  }
  const initialized =
    kcp.status?.initialization?.controlPlaneInitialized || machines.some((m) => m.status?.nodeRef)
  const { create: count, remove: victims } = plan(
    machines,
    desired,
    (m) => m.spec?.version === kcp.spec!.version,
  )
  for (const m of victims) await remove(ctx, 'Machine', m, 'control plane scale down or rollout')
  // The first Machine initializes the control plane alone; the others join one at a time.
  const settled = machines.every((m) => m.status?.nodeRef && !isDeleting(m))
  if (count > 0 && (machines.length === 0 || (initialized && settled)))
    await createControlPlaneMachine(ctx, cluster, kcp, machines, s)
}

async function createControlPlaneMachine(
  ctx: StandInContext,
  cluster: Cluster,
  kcp: KubeadmControlPlane,
  machines: Machine[],
  s: Snapshot,
) {
  const infraCluster = ownedBy(s.infraClusters, cluster)[0]
  const allowed = (infraCluster?.spec?.controlPlaneAvailabilityZones as string[] | undefined) ?? ctx.zones
  const domains = ctx.zones.filter((z) => allowed.includes(z))
  const used = (z: string) => machines.filter((m) => !isDeleting(m) && m.spec?.failureDomain === z).length
  const failureDomain = [...domains].sort((a, b) => used(a) - used(b))[0]
  const spec = kcp.spec!
  await createMachine(ctx, {
    cluster,
    owner: kcp,
    name: `${kcp.metadata.name}-${randomSuffix()}`,
    labels: {
      ...spec.machineTemplate.metadata?.labels,
      [label.clusterName]: labelValue(cluster.metadata.name),
      [label.controlPlane]: '',
      [label.controlPlaneName]: labelValue(kcp.metadata.name),
    },
    annotations: spec.machineTemplate.metadata?.annotations,
    version: spec.version,
    failureDomain,
    infrastructureRef: spec.machineTemplate.spec.infrastructureRef,
    bootstrap: { kind: 'KubeadmConfig', spec: spec.kubeadmConfigSpec ?? {} },
    taints: spec.machineTemplate.spec.taints,
    s,
  })
}

export async function reconcileMachineDeployment(ctx: StandInContext, md: MachineDeployment, s: Snapshot) {
  const cluster = s.clusters.find(
    (c) => c.metadata.namespace === md.metadata.namespace && c.metadata.name === md.spec?.clusterName,
  )
  if (!cluster || isDeleting(cluster) || isDeleting(md)) return
  const machines = ownedBy(s.machines, md)
  for (const m of toRemediate(machines)) await remove(ctx, 'Machine', m, 'remediation (MachineHealthCheck)')
  const template = md.spec!.template
  const { create: count, remove: victims } = plan(
    machines.filter((m) => !toRemediate([m]).length),
    md.spec!.replicas ?? 1,
    (m) => m.spec?.version === template.spec.version,
  )
  for (const m of victims) await remove(ctx, 'Machine', m, 'scale down or rollout')
  // Labels and annotations reach existing Machines in place, without a rollout (Cluster API ≥ 1.4).
  const wanted = { labels: template.metadata?.labels, annotations: template.metadata?.annotations }
  for (const m of machines)
    if (!isDeleting(m) && !alreadyHas(m.metadata, wanted))
      await ctx.client.update('Machine', m, (live) => {
        if (alreadyHas(live.metadata, wanted)) return false
        live.metadata.labels = { ...live.metadata.labels, ...wanted.labels }
        live.metadata.annotations = { ...live.metadata.annotations, ...wanted.annotations }
        return true
      })
  const configTemplate = named(
    s.configTemplates,
    md.metadata.namespace!,
    template.spec.bootstrap.configRef?.name ?? '',
  )
  for (let i = 0; i < count; i++)
    await createMachine(ctx, {
      cluster,
      owner: md,
      name: `${md.metadata.name}-${randomSuffix()}`,
      labels: {
        ...template.metadata?.labels,
        [label.clusterName]: labelValue(cluster.metadata.name),
        [label.deploymentName]: labelValue(md.metadata.name),
      },
      annotations: template.metadata?.annotations,
      version: template.spec.version,
      failureDomain: template.spec.failureDomain,
      infrastructureRef: template.spec.infrastructureRef,
      bootstrap: {
        kind: 'KubeadmConfig',
        spec: ((configTemplate?.spec as { template?: { spec?: Json } } | undefined)?.template?.spec ??
          {}) as Json,
      },
      taints: template.spec.taints,
      s,
    })
}

/** A Machine with its KubeadmConfig and OpenStackMachine (owned by it), as KCP and MachineSets create them. */
async function createMachine(
  ctx: StandInContext,
  m: {
    cluster: Cluster
    owner: KubeObject<unknown, unknown>
    name: string
    labels: Record<string, string>
    annotations: Record<string, string> | undefined
    version: string | undefined
    failureDomain: string | undefined
    infrastructureRef: Ref
    bootstrap: { kind: 'KubeadmConfig'; spec: Json }
    taints: MachineTemplateSpec['taints']
    s: Snapshot
  },
) {
  const namespace = m.cluster.metadata.namespace!
  const infraTemplate = named(m.s.infraTemplates, namespace, m.infrastructureRef.name)
  if (!infraTemplate) return
  const spec: MachineTemplateSpec = {
    clusterName: m.cluster.metadata.name,
    bootstrap: { configRef: { apiGroup: bootstrapGroup, kind: 'KubeadmConfig', name: m.name } },
    infrastructureRef: { apiGroup: infrastructureGroup, kind: 'OpenStackMachine', name: m.name },
    ...(m.version ? { version: m.version } : {}),
    ...(m.failureDomain ? { failureDomain: m.failureDomain } : {}),
    ...(m.taints?.length ? { taints: m.taints } : {}),
  }
  const machine = await create<Machine>(ctx, 'Machine', {
    apiVersion: apiVersionOf('Machine'),
    kind: 'Machine',
    metadata: {
      name: m.name,
      namespace,
      labels: m.labels,
      ...(m.annotations ? { annotations: m.annotations } : {}),
      finalizers: [finalizer.machine],
      ownerReferences: [ownerReference(m.owner)],
    },
    spec,
  })
  const owned = {
    namespace,
    labels: { [label.clusterName]: m.labels[label.clusterName]! },
    ownerReferences: [ownerReference(machine)],
  }
  await create(ctx, 'KubeadmConfig', {
    apiVersion: apiVersionOf('KubeadmConfig'),
    kind: 'KubeadmConfig',
    metadata: { name: m.name, ...owned },
    spec: m.bootstrap.spec,
  })
  const template = (infraTemplate.spec as { template?: { spec?: Json } } | undefined)?.template?.spec ?? {}
  await create(ctx, 'OpenStackMachine', {
    apiVersion: apiVersionOf('OpenStackMachine'),
    kind: 'OpenStackMachine',
    metadata: {
      name: m.name,
      ...owned,
      annotations: { [annotation.clonedFromName]: m.infrastructureRef.name },
    },
    spec: template,
  })
}
