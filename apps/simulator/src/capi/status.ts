import type { Json, KubeObject } from './client.ts'
import {
  type Condition,
  condition,
  conditionOf,
  isTrue,
  summary,
  type WantedCondition,
  withConditions,
  withLegacyConditions,
} from './conditions.ts'
import { type ClusterVerdict, ownedBy, type Snapshot, type StandInContext, writeStatus } from './context.ts'
import {
  type Cluster,
  controllerOf,
  isDeleting,
  type KubeadmControlPlane,
  label,
  labelValue,
  type Machine,
  type MachineDeployment,
} from './model.ts'
import { toRemediate } from './replicas.ts'

// Status as Cluster API's controllers report it: the infrastructure cluster, control planes,
// MachineDeployments (replica counters, v1beta2 conditions) and Clusters (phase, summaries).

function replicaCounts(machines: Machine[], isUpToDate: (m: Machine) => boolean) {
  return {
    replicas: machines.length,
    readyReplicas: machines.filter((m) => isTrue(m.status?.conditions, 'Ready')).length,
    availableReplicas: machines.filter((m) => isTrue(m.status?.conditions, 'Available')).length,
    upToDateReplicas: machines.filter((m) => !isDeleting(m) && isUpToDate(m)).length,
  }
}

function rolloutConditions(
  kind: string,
  desired: number,
  machines: Machine[],
  isUpToDate: (m: Machine) => boolean,
  version: string | undefined,
): WantedCondition[] {
  const live = machines.filter((m) => !isDeleting(m))
  const outdated = live.filter((m) => !isUpToDate(m))
  const counts = replicaCounts(machines, isUpToDate)
  const notReady = machines.filter((m) => !isTrue(m.status?.conditions, 'Ready'))
  return [
    notReady.length
      ? condition(
          'MachinesReady',
          false,
          'NotReady',
          notReady.map((m) => `* Machine ${m.metadata.name}: ${m.status?.phase ?? 'Pending'}`).join('\n'),
        )
      : machines.length
        ? condition('MachinesReady', true, 'Ready')
        : condition('MachinesReady', true, 'NoReplicas'),
    outdated.length
      ? condition(
          'MachinesUpToDate',
          false,
          'NotUpToDate',
          outdated
            .map((m) => `* Machine ${m.metadata.name}: Version ${m.spec?.version}, ${version} required`)
            .join('\n'),
        )
      : machines.length
        ? condition('MachinesUpToDate', true, 'UpToDate')
        : condition('MachinesUpToDate', true, 'NoReplicas'),
    outdated.length
      ? condition(
          'RollingOut',
          true,
          'RollingOut',
          `Rolling out ${outdated.length} not up-to-date replicas\n* Version ${outdated[0]!.spec?.version}, ${version} required`,
        )
      : condition('RollingOut', false, 'NotRollingOut'),
    live.length < desired
      ? condition('ScalingUp', true, 'ScalingUp', `Scaling up from ${live.length} to ${desired} replicas`)
      : condition('ScalingUp', false, 'NotScalingUp'),
    live.length > desired && !outdated.length
      ? condition(
          'ScalingDown',
          true,
          'ScalingDown',
          `Scaling down from ${live.length} to ${desired} replicas`,
        )
      : condition('ScalingDown', false, 'NotScalingDown'),
    toRemediate(machines).length
      ? condition('Remediating', true, 'Remediating', `Remediating ${toRemediate(machines).length} Machines`)
      : condition('Remediating', false, 'NotRemediating'),
    condition('Deleting', false, 'NotDeleting'),
    counts.availableReplicas >= desired
      ? condition('Available', true, 'Available')
      : condition(
          'Available',
          false,
          'NotAvailable',
          `${counts.availableReplicas} available replicas, at least ${desired} required (spec.strategy.rollout.maxUnavailable is 0, spec.replicas is ${desired})`,
        ),
  ].filter((c) => c.type !== kind)
}

export async function statusOfControlPlane(ctx: StandInContext, kcp: KubeadmControlPlane, s: Snapshot) {
  if (isDeleting(kcp)) return
  const machines = ownedBy(s.machines, kcp)
  const spec = kcp.spec!
  const desired = spec.replicas ?? 1
  const isUpToDate = (m: Machine) => m.spec?.version === spec.version
  const counts = replicaCounts(machines, isUpToDate)
  const initialized =
    kcp.status?.initialization?.controlPlaneInitialized === true || machines.some((m) => m.status?.nodeRef)
  const done = counts.upToDateReplicas === desired && machines.length === desired
  const version = done ? spec.version : kcp.status?.version
  const quorum = Math.floor(desired / 2) + 1
  const conditions = rolloutConditions('Available', desired, machines, isUpToDate, spec.version)
  conditions.push(
    initialized
      ? condition('Initialized', true, 'Initialized')
      : condition('Initialized', false, 'NotInitialized', 'Control plane not yet initialized'),
    initialized && counts.readyReplicas >= Math.min(quorum, Math.max(1, machines.length))
      ? condition('Available', true, 'Available')
      : condition(
          'Available',
          false,
          'NotAvailable',
          initialized
            ? `* ${counts.readyReplicas} of ${desired} control plane Machines ready`
            : 'Control plane not yet initialized',
        ),
  )
  await writeStatus(ctx, 'KubeadmControlPlane', kcp, {
    ...counts,
    selector: `${label.clusterName}=${labelValue(String(controllerOf(kcp)?.name))},${label.controlPlane}`,
    observedGeneration: kcp.metadata.generation ?? 1,
    initialization: { controlPlaneInitialized: initialized },
    ...(version ? { version } : {}),
    conditions: withConditions(
      kcp.status?.conditions,
      conditions,
      kcp.metadata.generation,
      new Date(ctx.now),
    ),
  })
}

export async function statusOfDeployment(ctx: StandInContext, md: MachineDeployment, s: Snapshot) {
  if (isDeleting(md)) return
  const machines = ownedBy(s.machines, md)
  const spec = md.spec!
  const desired = spec.replicas ?? 1
  const isUpToDate = (m: Machine) => m.spec?.version === spec.template.spec.version
  const counts = replicaCounts(machines, isUpToDate)
  const live = machines.filter((m) => !isDeleting(m)).length
  await writeStatus(ctx, 'MachineDeployment', md, {
    ...counts,
    selector: Object.entries(spec.selector.matchLabels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    phase: live < desired ? 'ScalingUp' : live > desired ? 'ScalingDown' : 'Running',
    observedGeneration: md.metadata.generation ?? 1,
    conditions: withConditions(
      md.status?.conditions,
      rolloutConditions('', desired, machines, isUpToDate, spec.template.spec.version),
      md.metadata.generation,
      new Date(ctx.now),
    ),
  })
}

export async function statusOfInfraCluster(ctx: StandInContext, infra: KubeObject, s: Snapshot) {
  if (isDeleting(infra) || !s.clusters.some((c) => c.metadata.uid === controllerOf(infra)?.uid)) return
  await writeStatus(ctx, 'OpenStackCluster', infra, {
    ready: true,
    initialization: { provisioned: true },
    conditions: withLegacyConditions(
      (infra.status as { conditions?: [] } | undefined)?.conditions,
      [{ type: 'Ready', status: 'True' }],
      new Date(ctx.now),
    ),
  })
}

export async function statusOfCluster(
  ctx: StandInContext,
  cluster: Cluster,
  s: Snapshot,
  verdict: ClusterVerdict,
) {
  if (!cluster.spec?.topology) return
  const infra = ownedBy(s.infraClusters, cluster)[0] as KubeObject<Json, { ready?: boolean }> | undefined
  const kcp = ownedBy(s.controlPlanes, cluster)[0]
  const deployments = ownedBy(s.deployments, cluster)
  const deleting = isDeleting(cluster)
  const infraProvisioned =
    infra?.status?.ready === true || cluster.status?.initialization?.infrastructureProvisioned === true
  const initialized =
    kcp?.status?.initialization?.controlPlaneInitialized === true ||
    cluster.status?.initialization?.controlPlaneInitialized === true
  const mirror = (type: string, from: Condition[] | undefined, kind: string) => {
    const c = conditionOf(from, type)
    return c?.status === 'True'
      ? condition(`ControlPlane${type}`, true, 'Available')
      : condition(
          `ControlPlane${type}`,
          false,
          'NotAvailable',
          c?.message ? c.message : `${kind} is not available`,
        )
  }
  const unavailableWorkers = deployments.filter((d) => !isTrue(d.status?.conditions, 'Available'))
  const rolling = [kcp, ...deployments].filter((o) => o && isTrue(o.status?.conditions, 'RollingOut'))
  const scalingUp = [kcp, ...deployments].filter((o) => o && isTrue(o.status?.conditions, 'ScalingUp'))
  const scalingDown = [kcp, ...deployments].filter((o) => o && isTrue(o.status?.conditions, 'ScalingDown'))
  const names = (list: (KubeObject<unknown, unknown> | undefined)[]) =>
    list.map((o) => `* ${o!.kind} ${o!.metadata.name}`).join('\n')
  const sum = (field: 'replicas' | 'readyReplicas' | 'availableReplicas' | 'upToDateReplicas') =>
    deployments.reduce((n, d) => n + (d.status?.[field] ?? 0), 0)
  const conditions: WantedCondition[] = [
    infraProvisioned
      ? condition('InfrastructureReady', true, 'Ready')
      : infra
        ? condition(
            'InfrastructureReady',
            false,
            'NotReady',
            'OpenStackCluster status.initialization.provisioned is false',
          )
        : condition('InfrastructureReady', false, 'ObjectDoesNotExist', 'OpenStackCluster does not exist'),
    initialized
      ? condition('ControlPlaneInitialized', true, 'Initialized')
      : condition('ControlPlaneInitialized', false, 'NotInitialized', 'Control plane not yet initialized'),
    kcp
      ? mirror('Available', kcp.status?.conditions, 'KubeadmControlPlane')
      : condition('ControlPlaneAvailable', false, 'ObjectDoesNotExist', 'KubeadmControlPlane does not exist'),
    !deployments.length
      ? condition('WorkersAvailable', true, 'NoWorkers')
      : unavailableWorkers.length
        ? condition('WorkersAvailable', false, 'NotAvailable', names(unavailableWorkers))
        : condition('WorkersAvailable', true, 'Available'),
    rolling.length
      ? condition('RollingOut', true, 'RollingOut', names(rolling))
      : condition('RollingOut', false, 'NotRollingOut'),
    scalingUp.length
      ? condition('ScalingUp', true, 'ScalingUp', names(scalingUp))
      : condition('ScalingUp', false, 'NotScalingUp'),
    scalingDown.length
      ? condition('ScalingDown', true, 'ScalingDown', names(scalingDown))
      : condition('ScalingDown', false, 'NotScalingDown'),
    deleting
      ? condition('TopologyReconciled', false, 'Deleting', 'Cluster is deleting')
      : (verdict.topology ?? condition('TopologyReconciled', true, 'ReconcileSucceeded')),
    deleting
      ? (verdict.deleting ?? condition('Deleting', true, 'DeletionCompleted'))
      : condition('Deleting', false, 'NotDeleting'),
    condition('Paused', false, 'NotPaused'),
  ]
  // Available summarizes; a topology only waiting on an upgrade does not make a Cluster unavailable.
  const summarized = conditions.filter(
    (c) =>
      ['InfrastructureReady', 'ControlPlaneAvailable', 'WorkersAvailable'].includes(c.type) ||
      (c.type === 'TopologyReconciled' && !c.reason.endsWith('UpgradePending')),
  )
  const failing = summarized.filter((c) => c.status !== 'True')
  conditions.unshift(
    deleting
      ? condition('Available', false, 'NotAvailable', '* Deleting: Cluster is deleting')
      : failing.length
        ? condition('Available', false, 'NotAvailable', summary(failing))
        : condition('Available', true, 'Available'),
  )
  const phase = deleting
    ? 'Deleting'
    : infraProvisioned && cluster.spec.controlPlaneEndpoint?.host
      ? 'Provisioned'
      : cluster.spec.infrastructureRef
        ? 'Provisioning'
        : 'Pending'
  await writeStatus(ctx, 'Cluster', cluster, {
    phase,
    observedGeneration: cluster.metadata.generation ?? 1,
    initialization: { infrastructureProvisioned: infraProvisioned, controlPlaneInitialized: initialized },
    // The cloud's zones, as CAPO reports them on the infrastructure cluster and Cluster API copies them.
    ...(infraProvisioned
      ? {
          failureDomains: ctx.zones.map((name) => ({
            name,
            controlPlane: (
              (infra?.spec?.controlPlaneAvailabilityZones as string[] | undefined) ?? ctx.zones
            ).includes(name),
          })),
        }
      : {}),
    ...(kcp
      ? {
          controlPlane: {
            desiredReplicas: kcp.spec?.replicas ?? 1,
            replicas: kcp.status?.replicas ?? 0,
            readyReplicas: kcp.status?.readyReplicas ?? 0,
            availableReplicas: kcp.status?.availableReplicas ?? 0,
            upToDateReplicas: kcp.status?.upToDateReplicas ?? 0,
          },
        }
      : {}),
    workers: {
      desiredReplicas: deployments.reduce((n, d) => n + (d.spec?.replicas ?? 0), 0),
      replicas: sum('replicas'),
      readyReplicas: sum('readyReplicas'),
      availableReplicas: sum('availableReplicas'),
      upToDateReplicas: sum('upToDateReplicas'),
    },
    conditions: withConditions(
      cluster.status?.conditions,
      conditions,
      cluster.metadata.generation,
      new Date(ctx.now),
    ),
  })
}

/** A paused Cluster says so, and nothing else of it changes. */
export async function statusOfPausedCluster(ctx: StandInContext, cluster: Cluster) {
  await writeStatus(ctx, 'Cluster', cluster, {
    conditions: withConditions(
      cluster.status?.conditions,
      [condition('Paused', true, 'Paused')],
      cluster.metadata.generation,
      new Date(ctx.now),
    ),
  })
}
