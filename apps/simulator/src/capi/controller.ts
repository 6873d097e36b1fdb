import { createHash, randomUUID } from 'node:crypto'
import type { KubeConfig } from '@kubernetes/client-node'
import {
  apiVersionOf,
  type Json,
  type Kind,
  type KubeObject,
  kindOf,
  loadKubeConfig,
  ManagementClient,
} from './client.ts'
import {
  type Condition,
  condition,
  conditionOf,
  isTrue,
  rfc3339,
  summary,
  type WantedCondition,
  withConditions,
  withLegacyConditions,
} from './conditions.ts'
import {
  alreadyHas,
  annotation,
  type Cluster,
  type ClusterClass,
  compact,
  controllerOf,
  finalizer,
  isDeleting,
  isPaused,
  type KubeadmControlPlane,
  label,
  labelValue,
  type Machine,
  type MachineDeployment,
  type MachineDeploymentSpec,
  type MachineHealthCheck,
  type MachineTemplateSpec,
  type Metadata,
  matchesSelector,
  type OpenStackMachine,
  ownerReference,
  type Ref,
  randomSuffix,
  stableSuffix,
  type TemplateRef,
} from './model.ts'

export interface StandInDelays {
  /** From a Machine's creation to its bootstrap data (workers also wait for the control plane). */
  bootstrap: number
  /** From bootstrap data to the server being up (InfrastructureReady). */
  infrastructure: number
  /** From the server being up to its Node (nodeRef, Running). */
  node: number
  /** From a Machine's deletionTimestamp to its finalizer being removed. */
  deletion: number
}

export interface StandInOptions {
  kubeconfig: KubeConfig | string
  /** Namespaces watched; all when absent. */
  namespaces?: string[]
  /** How often the objects are read (default 200 ms). */
  intervalMs?: number
  delays?: Partial<StandInDelays>
  /** What every Cluster's spec.controlPlaneEndpoint is set to (default 127.0.0.1:6443). */
  endpoint?: { host: string; port: number }
  /** The simulated cloud's availability zones (default az-1, az-2). */
  failureDomains?: string[]
  log?: (entry: Record<string, unknown>) => void
}

export interface ClusterApiStandIn {
  stop(): Promise<void>
  /** Controllers stop: nothing moves until resume(). */
  pause(): void
  resume(): void
  /** At most `max` servers of a flavor (in a failure domain, or in all when undefined); a negative max lifts it. */
  setQuota(flavor: string, failureDomain: string | undefined, max: number): void
  /** The provider reports the Machine's server failed (InfrastructureReady=False, phase Failed). */
  failMachine(name: string, reason: string, message: string): void
  /** The Machine's Node reports Ready=False, as if for `forMs` already (default: longer than any timeout). */
  markNodeUnhealthy(name: string, forMs?: number): void
  /** One pass of every controller over what the management cluster holds now. */
  reconcileOnce(): Promise<void>
}

const defaultDelays: StandInDelays = { bootstrap: 100, infrastructure: 200, node: 200, deletion: 100 }
const fieldManager = 'capi-controller-stand-in'
const infrastructureGroup = 'infrastructure.cluster.x-k8s.io'
const bootstrapGroup = 'bootstrap.cluster.x-k8s.io'
const controlPlaneGroup = 'controlplane.cluster.x-k8s.io'

/** What one pass reads: every object of the kinds the stand-in plays the controllers of. */
interface Snapshot {
  clusters: Cluster[]
  classes: ClusterClass[]
  controlPlanes: KubeadmControlPlane[]
  deployments: MachineDeployment[]
  machines: Machine[]
  configs: KubeObject[]
  infraMachines: OpenStackMachine[]
  infraClusters: KubeObject[]
  healthChecks: MachineHealthCheck[]
  infraTemplates: KubeObject[]
  configTemplates: KubeObject[]
  uids: Set<string>
}

/** What one pass decided about a Cluster, for its status. */
interface ClusterVerdict {
  topology?: WantedCondition
  deleting?: WantedCondition
}

/**
 * A stand-in for Cluster API's controllers (core + topology, kubeadm bootstrap, kubeadm control plane,
 * and CAPO) for a simulated management cluster: it reads and writes Cluster API objects through the
 * Kubernetes API only, and moves them forward as Cluster API's in-memory provider does, with short
 * configurable delays and injectable failures. See CONTRACT.md.
 */
export function startClusterApiStandIn(options: StandInOptions): ClusterApiStandIn {
  const client = new ManagementClient(loadKubeConfig(options.kubeconfig), fieldManager)
  const delays = { ...defaultDelays, ...options.delays }
  const endpoint = options.endpoint ?? { host: '127.0.0.1', port: 6443 }
  const zones = options.failureDomains ?? ['az-1', 'az-2']
  const intervalMs = options.intervalMs ?? 200
  const log = options.log ?? (() => {})

  let paused = false
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  // A pass is skipped while nothing changed (same list resourceVersion) and no delay is due.
  let lastVersion = ''
  let nextDue = 0
  const quotas = new Map<string, number>()
  const failures = new Map<string, { reason: string; message: string }>()
  const unhealthy = new Map<string, number>()
  // When each Machine (by uid) entered its current stage: its delays count from there.
  const stages = new Map<string, { stage: string; at: number }>()

  let now = Date.now()
  const due = (uid: string, stage: string, delay: number) => {
    const seen = stages.get(uid)
    if (!seen || seen.stage !== stage) stages.set(uid, { stage, at: now })
    const at = (seen && seen.stage === stage ? seen.at : now) + delay
    if (now >= at) return true
    nextDue = Math.min(nextDue, at)
    return false
  }

  async function read(): Promise<Snapshot> {
    const ns = options.namespaces
    const [
      clusters,
      classes,
      controlPlanes,
      deployments,
      machines,
      configs,
      infraMachines,
      infraClusters,
      healthChecks,
      infraTemplates,
      configTemplates,
    ] = await Promise.all([
      client.list<Cluster>('Cluster', ns),
      client.list<ClusterClass>('ClusterClass', ns),
      client.list<KubeadmControlPlane>('KubeadmControlPlane', ns),
      client.list<MachineDeployment>('MachineDeployment', ns),
      client.list<Machine>('Machine', ns),
      client.list('KubeadmConfig', ns),
      client.list<OpenStackMachine>('OpenStackMachine', ns),
      client.list('OpenStackCluster', ns),
      client.list<MachineHealthCheck>('MachineHealthCheck', ns),
      client.list('OpenStackMachineTemplate', ns),
      client.list('KubeadmConfigTemplate', ns),
    ])
    const snapshot: Snapshot = {
      clusters: clusters.items,
      classes: classes.items,
      controlPlanes: controlPlanes.items,
      deployments: deployments.items,
      machines: machines.items,
      configs: configs.items,
      infraMachines: infraMachines.items,
      infraClusters: infraClusters.items,
      healthChecks: healthChecks.items,
      infraTemplates: infraTemplates.items,
      configTemplates: configTemplates.items,
      uids: new Set(),
    }
    for (const list of Object.values(snapshot))
      if (Array.isArray(list)) for (const o of list) snapshot.uids.add(o.metadata.uid)
    return snapshot
  }

  const named = <T extends KubeObject<unknown, unknown>>(list: T[], namespace: string, name: string) =>
    list.find((o) => o.metadata.namespace === namespace && o.metadata.name === name)
  const ownedBy = <T extends KubeObject<unknown, unknown>>(list: T[], owner: KubeObject<unknown, unknown>) =>
    list.filter((o) => controllerOf(o)?.uid === owner.metadata.uid)

  /** The labels Cluster API puts on everything of a Cluster's topology. */
  const topologyLabels = (cluster: Cluster) => ({
    [label.clusterName]: labelValue(cluster.metadata.name),
    [label.topologyOwned]: '',
  })

  async function create<T extends KubeObject<unknown, unknown>>(kind: Kind, object: T): Promise<T> {
    const created = (await client.create(kind, compact(object))) as T
    log({ msg: 'created', kind, namespace: object.metadata.namespace, name: object.metadata.name })
    return created
  }

  async function remove(kind: Kind, object: KubeObject<unknown, unknown>, why: string) {
    await client.delete(kind, object)
    log({ msg: 'deleted', kind, namespace: object.metadata.namespace, name: object.metadata.name, why })
  }

  /** Writes the status fields in `wanted` when any differs from what is stored. */
  async function writeStatus<S, T>(kind: Kind, object: KubeObject<S, T>, wanted: Json) {
    if (alreadyHas(object.status, wanted)) return object
    return (
      (await client.update(
        kind,
        object,
        (live) => {
          live.status = { ...(live.status ?? {}), ...wanted } as T
          return true
        },
        'status',
      )) ?? object
    )
  }

  /** A clone of a template for one Cluster, as the topology controller makes (kept if it exists). */
  async function cloneTemplate(
    cluster: Cluster,
    classNamespace: string,
    source: TemplateRef,
    name: string,
    existing: KubeObject[],
  ): Promise<{ kind: Kind; name: string } | string> {
    const kind = kindOf(source.apiVersion, source.kind)
    if (!kind) return `${source.kind} ${source.name}: the stand-in does not play its provider`
    const namespace = cluster.metadata.namespace!
    if (named(existing, namespace, name)) return { kind, name }
    const template = await client.get(kind, classNamespace, source.name)
    if (!template) return `${source.kind} ${classNamespace}/${source.name} not found`
    await create(kind, {
      apiVersion: apiVersionOf(kind),
      kind,
      metadata: {
        name,
        namespace,
        labels: topologyLabels(cluster),
        annotations: {
          ...template.metadata.annotations,
          [annotation.clonedFromName]: source.name,
          [annotation.clonedFromGroupKind]: `${source.kind}.${source.apiVersion.split('/')[0]}`,
        },
        ownerReferences: [ownerReference(cluster)],
      },
      spec: template.spec,
    })
    return { kind, name }
  }

  // ---- topology: Cluster → infrastructure cluster, control plane, MachineDeployments ----

  async function reconcileTopology(cluster: Cluster, s: Snapshot, verdict: ClusterVerdict) {
    const topology = cluster.spec?.topology
    if (!topology) return
    const namespace = cluster.metadata.namespace!
    const name = cluster.metadata.name
    const uid = cluster.metadata.uid!
    if (!cluster.metadata.finalizers?.includes(finalizer.cluster))
      cluster =
        (await client.update('Cluster', cluster, (live) => {
          if (live.metadata.finalizers?.includes(finalizer.cluster)) return false
          live.metadata.finalizers = [...(live.metadata.finalizers ?? []), finalizer.cluster]
          return true
        })) ?? cluster
    const classNamespace = topology.classRef.namespace ?? namespace
    const clusterClass = named(s.classes, classNamespace, topology.classRef.name)
    if (!clusterClass?.spec) {
      verdict.topology = condition(
        'TopologyReconciled',
        false,
        'ClusterClassNotFound',
        `ClusterClass ${classNamespace}/${topology.classRef.name} not found`,
      )
      return
    }
    const failed = (message: string) => {
      verdict.topology = condition('TopologyReconciled', false, 'ReconcileFailed', message)
    }
    const classSpec = clusterClass.spec

    // The infrastructure cluster.
    let infraCluster = ownedBy(s.infraClusters, cluster)[0]
    if (!infraCluster) {
      const source = classSpec.infrastructure.templateRef
      const template = await client.get<{ template: { spec: Json } }>(
        'OpenStackClusterTemplate',
        classNamespace,
        source.name,
      )
      if (!template?.spec || source.kind !== 'OpenStackClusterTemplate')
        return failed(`${source.kind} ${classNamespace}/${source.name} not found`)
      infraCluster = await create('OpenStackCluster', {
        apiVersion: apiVersionOf('OpenStackCluster'),
        kind: 'OpenStackCluster',
        metadata: {
          name: `${name}-${stableSuffix(`${uid}/infrastructure`)}`,
          namespace,
          labels: topologyLabels(cluster),
          annotations: {
            [annotation.clonedFromName]: source.name,
            [annotation.clonedFromGroupKind]: `OpenStackClusterTemplate.${infrastructureGroup}`,
          },
          ownerReferences: [ownerReference(cluster)],
        },
        spec: { ...template.spec.template.spec, controlPlaneEndpoint: endpoint },
      })
    }

    // The control plane, with its own clone of the machine infrastructure template.
    const replicas = topology.controlPlane?.replicas ?? 1
    let controlPlane = ownedBy(s.controlPlanes, cluster)[0]
    if (!controlPlane) {
      const infraSource = classSpec.controlPlane.machineInfrastructure?.templateRef
      if (!infraSource) return failed('the ClusterClass has no control plane machineInfrastructure')
      const infra = await cloneTemplate(
        cluster,
        classNamespace,
        infraSource,
        `${name}-control-plane-${stableSuffix(`${uid}/control-plane`)}`,
        s.infraTemplates,
      )
      if (typeof infra === 'string') return failed(infra)
      const source = classSpec.controlPlane.templateRef
      const template = await client.get<{
        template: { spec: Json & { machineTemplate?: { metadata?: Metadata; spec?: Json } } }
      }>('KubeadmControlPlaneTemplate', classNamespace, source.name)
      if (!template?.spec || source.kind !== 'KubeadmControlPlaneTemplate')
        return failed(`${source.kind} ${classNamespace}/${source.name} not found`)
      const { machineTemplate, ...rest } = template.spec.template.spec
      controlPlane = await create('KubeadmControlPlane', {
        apiVersion: apiVersionOf('KubeadmControlPlane'),
        kind: 'KubeadmControlPlane',
        metadata: {
          name: `${name}-${stableSuffix(`${uid}/control-plane`)}`,
          namespace,
          labels: topologyLabels(cluster),
          annotations: {
            [annotation.clonedFromName]: source.name,
            [annotation.clonedFromGroupKind]: `KubeadmControlPlaneTemplate.${controlPlaneGroup}`,
          },
          ownerReferences: [ownerReference(cluster)],
        },
        spec: {
          ...rest,
          replicas,
          version: topology.version,
          machineTemplate: {
            metadata: mergeMetadata(
              machineTemplate?.metadata,
              classSpec.controlPlane.metadata,
              topology.controlPlane?.metadata,
            ),
            spec: {
              ...machineTemplate?.spec,
              infrastructureRef: { apiGroup: infrastructureGroup, kind: infra.kind, name: infra.name },
            },
          },
        },
      })
    } else if (controlPlane.spec!.replicas !== replicas || controlPlane.spec!.version !== topology.version) {
      controlPlane =
        (await client.update('KubeadmControlPlane', controlPlane, (live) => {
          if (live.spec!.replicas === replicas && live.spec!.version === topology.version) return false
          live.spec!.replicas = replicas
          // The control plane is upgraded first; MachineDeployments follow once it is done.
          live.spec!.version = topology.version
          return true
        })) ?? controlPlane
    }

    // The Cluster's references, as the topology and cluster controllers set them.
    const infrastructureRef = {
      apiGroup: infrastructureGroup,
      kind: 'OpenStackCluster',
      name: infraCluster.metadata.name,
    }
    const controlPlaneRef = {
      apiGroup: controlPlaneGroup,
      kind: 'KubeadmControlPlane',
      name: controlPlane.metadata.name,
    }
    if (!alreadyHas(cluster.spec, { infrastructureRef, controlPlaneRef, controlPlaneEndpoint: endpoint }))
      await client.update('Cluster', cluster, (live) => {
        if (alreadyHas(live.spec, { infrastructureRef, controlPlaneRef, controlPlaneEndpoint: endpoint }))
          return false
        live.spec = { ...live.spec, infrastructureRef, controlPlaneRef, controlPlaneEndpoint: endpoint }
        return true
      })

    // MachineDeployments: one per topology entry; workers follow the control plane's version.
    const controlPlaneDone =
      controlPlane.status?.version === topology.version &&
      controlPlane.spec!.version === topology.version &&
      (controlPlane.status?.upToDateReplicas ?? 0) >= replicas &&
      (controlPlane.status?.replicas ?? 0) === replicas
    const owned = ownedBy(s.deployments, cluster)
    const waiting: string[] = []
    const entries = topology.workers?.machineDeployments ?? []
    for (const entry of entries) {
      const workerClass = classSpec.workers?.machineDeployments?.find((c) => c.class === entry.class)
      if (!workerClass) {
        failed(`MachineDeployment class ${entry.class} not found in ClusterClass ${topology.classRef.name}`)
        continue
      }
      const existing = owned.find(
        (md) => md.metadata.labels?.[label.topologyDeploymentName] === labelValue(entry.name),
      )
      const current = existing?.spec?.template.spec.version
      const version = controlPlaneDone
        ? topology.version
        : (current ?? controlPlane.status?.version ?? controlPlane.spec!.version)
      if (version !== topology.version) waiting.push(entry.name)
      const selectorLabels = {
        [label.clusterName]: labelValue(name),
        [label.topologyDeploymentName]: labelValue(entry.name),
      }
      const templateMetadata = mergeMetadata(workerClass.metadata, entry.metadata, {
        labels: { ...topologyLabels(cluster), ...selectorLabels },
      })
      const desired = {
        replicas: entry.replicas ?? 1,
        version,
        failureDomain: entry.failureDomain ?? workerClass.failureDomain,
        metadata: templateMetadata,
        taints: entry.taints,
        annotations: entry.metadata?.annotations,
      }
      if (!existing) {
        const suffix = stableSuffix(`${uid}/${entry.name}`)
        const bootstrap = await cloneTemplate(
          cluster,
          classNamespace,
          workerClass.bootstrap.templateRef,
          `${name}-${entry.name}-bootstrap-${suffix}`,
          s.configTemplates,
        )
        if (typeof bootstrap === 'string') {
          failed(bootstrap)
          continue
        }
        const infra = await cloneTemplate(
          cluster,
          classNamespace,
          workerClass.infrastructure.templateRef,
          `${name}-${entry.name}-${suffix}`,
          s.infraTemplates,
        )
        if (typeof infra === 'string') {
          failed(infra)
          continue
        }
        const spec: MachineDeploymentSpec = {
          clusterName: name,
          replicas: desired.replicas,
          selector: { matchLabels: selectorLabels },
          rollout: { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } },
          template: {
            metadata: templateMetadata,
            spec: {
              clusterName: name,
              version,
              bootstrap: {
                configRef: { apiGroup: bootstrapGroup, kind: bootstrap.kind, name: bootstrap.name },
              },
              infrastructureRef: { apiGroup: infrastructureGroup, kind: infra.kind, name: infra.name },
              ...(desired.failureDomain ? { failureDomain: desired.failureDomain } : {}),
              ...(entry.taints?.length ? { taints: entry.taints } : {}),
            },
          },
        }
        await create('MachineDeployment', {
          apiVersion: apiVersionOf('MachineDeployment'),
          kind: 'MachineDeployment',
          metadata: {
            name: `${name}-${entry.name}-${suffix}`,
            namespace,
            labels: { ...topologyLabels(cluster), [label.topologyDeploymentName]: labelValue(entry.name) },
            ...(entry.metadata?.annotations ? { annotations: entry.metadata.annotations } : {}),
            ownerReferences: [ownerReference(cluster)],
          },
          spec,
        })
        continue
      }
      const apply = (md: MachineDeployment) => {
        const spec = md.spec!
        const before = JSON.stringify([spec, md.metadata.annotations])
        spec.replicas = desired.replicas
        spec.template.spec.version = desired.version
        if (desired.failureDomain) spec.template.spec.failureDomain = desired.failureDomain
        else delete spec.template.spec.failureDomain
        if (desired.taints?.length) spec.template.spec.taints = desired.taints
        else delete spec.template.spec.taints
        spec.template.metadata = desired.metadata
        md.metadata.annotations = { ...md.metadata.annotations, ...desired.annotations }
        return JSON.stringify([spec, md.metadata.annotations]) !== before
      }
      if (apply(structuredClone(existing))) await client.update('MachineDeployment', existing, apply)
    }
    for (const md of owned)
      if (!isDeleting(md))
        if (!entries.some((e) => md.metadata.labels?.[label.topologyDeploymentName] === labelValue(e.name)))
          await remove('MachineDeployment', md, 'no longer in the topology')
    if (waiting.length && !verdict.topology)
      verdict.topology = condition(
        'TopologyReconciled',
        false,
        'MachineDeploymentsUpgradePending',
        `MachineDeployment(s) ${waiting.join(', ')} upgrade to version ${topology.version} on hold. Control plane is upgrading to version ${topology.version}`,
      )
  }

  /** A Cluster being deleted: workers, then the control plane, then the infrastructure, then the finalizer. */
  async function reconcileClusterDeletion(cluster: Cluster, s: Snapshot, verdict: ClusterVerdict) {
    if (!cluster.metadata.finalizers?.includes(finalizer.cluster)) return
    const namespace = cluster.metadata.namespace!
    const ofCluster = s.machines.filter(
      (m) =>
        m.metadata.namespace === namespace && m.spec?.clusterName === cluster.metadata.name && isOurs(m, s),
    )
    const workers = ofCluster.filter((m) => m.metadata.labels?.[label.controlPlane] === undefined)
    const deployments = ownedBy(s.deployments, cluster)
    if (workers.length || deployments.length) {
      verdict.deleting = condition(
        'Deleting',
        true,
        'WaitingForWorkersDeletion',
        `* MachineDeployments: ${deployments.map((d) => d.metadata.name).join(', ') || '(none)'}\n* Machines: ${workers.map((m) => m.metadata.name).join(', ') || '(none)'}`,
      )
      for (const md of deployments)
        if (!isDeleting(md)) await remove('MachineDeployment', md, 'cluster deleted')
      for (const m of workers) if (!isDeleting(m)) await remove('Machine', m, 'cluster deleted')
      return
    }
    const controlPlanes = ownedBy(s.controlPlanes, cluster)
    const controlPlaneMachines = ofCluster.filter(
      (m) => m.metadata.labels?.[label.controlPlane] !== undefined,
    )
    if (controlPlanes.length || controlPlaneMachines.length) {
      verdict.deleting = condition(
        'Deleting',
        true,
        'WaitingForControlPlaneDeletion',
        `* KubeadmControlPlane ${controlPlanes.map((k) => k.metadata.name).join(', ')} is deleting`,
      )
      for (const m of controlPlaneMachines) if (!isDeleting(m)) await remove('Machine', m, 'cluster deleted')
      if (!controlPlaneMachines.length)
        for (const kcp of controlPlanes)
          if (!isDeleting(kcp)) await remove('KubeadmControlPlane', kcp, 'cluster deleted')
      return
    }
    const infra = ownedBy(s.infraClusters, cluster)
    if (infra.length) {
      verdict.deleting = condition(
        'Deleting',
        true,
        'WaitingForInfrastructureDeletion',
        `* OpenStackCluster ${infra[0]!.metadata.name} is deleting`,
      )
      for (const o of infra) if (!isDeleting(o)) await remove('OpenStackCluster', o, 'cluster deleted')
      return
    }
    for (const t of ownedBy(s.infraTemplates, cluster))
      await remove('OpenStackMachineTemplate', t, 'cluster deleted')
    for (const t of ownedBy(s.configTemplates, cluster))
      await remove('KubeadmConfigTemplate', t, 'cluster deleted')
    await client.update('Cluster', cluster, (live) => {
      if (!live.metadata.finalizers?.includes(finalizer.cluster)) return false
      live.metadata.finalizers = live.metadata.finalizers.filter((f) => f !== finalizer.cluster)
      return true
    })
    log({ msg: 'cluster deleted', namespace, name: cluster.metadata.name })
  }

  /** Machines the stand-in's control plane or MachineDeployment controllers own. */
  function isOurs(machine: Machine, s: Snapshot) {
    const owner = controllerOf(machine)
    if (!owner) return false
    if (owner.kind === 'KubeadmControlPlane' || owner.kind === 'MachineDeployment') return true
    return !s.uids.has(owner.uid) && machine.metadata.finalizers?.includes(finalizer.machine) === true
  }

  // ---- KubeadmControlPlane and MachineDeployment: Machines for replicas and version ----

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
    if (machines.some(isDeleting) || upToDate.some((m) => !m.status?.nodeRef))
      return { create: 0, remove: [] }
    if (live.length <= desired) return { create: Math.max(1, desired - live.length), remove: [] }
    return { create: 0, remove: ordered.slice(0, 1) }
  }

  /** Machines an owner remediates: its MachineHealthCheck said so. */
  const toRemediate = (machines: Machine[]) =>
    machines.filter(
      (m) =>
        !isDeleting(m) &&
        conditionOf(m.status?.conditions, 'OwnerRemediated')?.reason === 'WaitingForRemediation',
    )

  async function reconcileControlPlane(kcp: KubeadmControlPlane, s: Snapshot) {
    const cluster = s.clusters.find((c) => c.metadata.uid === controllerOf(kcp)?.uid)
    if (!cluster || isDeleting(cluster) || isDeleting(kcp)) return
    const machines = ownedBy(s.machines, kcp)
    const desired = kcp.spec!.replicas ?? 1
    const remediate = toRemediate(machines)
    if (remediate.length) {
      // KCP remediates one Machine at a time, and never its only one (etcd would be lost).
      const live = machines.filter((m) => !isDeleting(m))
      if (live.length > 1 && !machines.some(isDeleting))
        await remove('Machine', remediate[0]!, 'remediation (MachineHealthCheck)')
      return
    }
    const initialized =
      kcp.status?.initialization?.controlPlaneInitialized || machines.some((m) => m.status?.nodeRef)
    const { create: count, remove: victims } = plan(
      machines,
      desired,
      (m) => m.spec?.version === kcp.spec!.version,
    )
    for (const m of victims) await remove('Machine', m, 'control plane scale down or rollout')
    // The first Machine initializes the control plane alone; the others join one at a time.
    const settled = machines.every((m) => m.status?.nodeRef && !isDeleting(m))
    if (count > 0 && (machines.length === 0 || (initialized && settled)))
      await createControlPlaneMachine(cluster, kcp, machines, s)
  }

  async function createControlPlaneMachine(
    cluster: Cluster,
    kcp: KubeadmControlPlane,
    machines: Machine[],
    s: Snapshot,
  ) {
    const infraCluster = ownedBy(s.infraClusters, cluster)[0]
    const allowed = (infraCluster?.spec?.controlPlaneAvailabilityZones as string[] | undefined) ?? zones
    const domains = zones.filter((z) => allowed.includes(z))
    const used = (z: string) => machines.filter((m) => !isDeleting(m) && m.spec?.failureDomain === z).length
    const failureDomain = [...domains].sort((a, b) => used(a) - used(b))[0]
    const spec = kcp.spec!
    await createMachine({
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

  async function reconcileMachineDeployment(md: MachineDeployment, s: Snapshot) {
    const cluster = s.clusters.find(
      (c) => c.metadata.namespace === md.metadata.namespace && c.metadata.name === md.spec?.clusterName,
    )
    if (!cluster || isDeleting(cluster) || isDeleting(md)) return
    const machines = ownedBy(s.machines, md)
    for (const m of toRemediate(machines)) await remove('Machine', m, 'remediation (MachineHealthCheck)')
    const template = md.spec!.template
    const { create: count, remove: victims } = plan(
      machines.filter((m) => !toRemediate([m]).length),
      md.spec!.replicas ?? 1,
      (m) => m.spec?.version === template.spec.version,
    )
    for (const m of victims) await remove('Machine', m, 'scale down or rollout')
    // Labels and annotations reach existing Machines in place, without a rollout (Cluster API ≥ 1.4).
    const wanted = { labels: template.metadata?.labels, annotations: template.metadata?.annotations }
    for (const m of machines)
      if (!isDeleting(m) && !alreadyHas(m.metadata, wanted))
        await client.update('Machine', m, (live) => {
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
      await createMachine({
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
  async function createMachine(m: {
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
  }) {
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
    const machine = await create<Machine>('Machine', {
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
    await create('KubeadmConfig', {
      apiVersion: apiVersionOf('KubeadmConfig'),
      kind: 'KubeadmConfig',
      metadata: { name: m.name, ...owned },
      spec: m.bootstrap.spec,
    })
    const template = (infraTemplate.spec as { template?: { spec?: Json } } | undefined)?.template?.spec ?? {}
    await create('OpenStackMachine', {
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

  // ---- Machines: bootstrap, infrastructure, node; graceful deletion ----

  function quotaBlock(machine: Machine, infra: OpenStackMachine, s: Snapshot, granted: Map<string, number>) {
    const flavor = infra.spec?.flavor
    if (!flavor) return undefined
    for (const scope of [machine.spec?.failureDomain, undefined]) {
      const max = quotas.get(`${flavor}/${scope ?? '*'}`)
      if (max === undefined || (scope === undefined && !quotas.has(`${flavor}/*`))) continue
      const key = `${flavor}/${scope ?? '*'}`
      const used =
        s.infraMachines.filter((o) => {
          if (o.spec?.flavor !== flavor || !o.status?.ready || isDeleting(o)) return false
          if (scope === undefined) return true
          const owner = s.machines.find((m) => m.metadata.uid === controllerOf(o)?.uid)
          return owner?.spec?.failureDomain === scope
        }).length + (granted.get(key) ?? 0)
      if (used >= max)
        return `Create new server: Expected HTTP response code [202] when accessing [POST https://compute.simulated/v2.1/servers], but got 403 instead: {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used ${used} of ${max} instances"}}`
    }
    return undefined
  }

  function grant(machine: Machine, infra: OpenStackMachine, granted: Map<string, number>) {
    const flavor = infra.spec?.flavor
    for (const scope of [machine.spec?.failureDomain ?? '*', '*']) {
      const key = `${flavor}/${scope}`
      granted.set(key, (granted.get(key) ?? 0) + 1)
    }
  }

  async function reconcileMachine(
    machine: Machine,
    s: Snapshot,
    health: Map<string, WantedCondition[]>,
    granted: Map<string, number>,
  ) {
    if (!isOurs(machine, s)) return
    const namespace = machine.metadata.namespace!
    const uid = machine.metadata.uid!
    const spec = machine.spec!
    const config = named(s.configs, namespace, spec.bootstrap.configRef?.name ?? '')
    let infra = named(s.infraMachines, namespace, spec.infrastructureRef.name)
    const cluster = named(s.clusters, namespace, spec.clusterName)
    const isControlPlane = machine.metadata.labels?.[label.controlPlane] !== undefined
    const owner = controllerOf(machine)
    const ownerObject =
      s.controlPlanes.find((k) => k.metadata.uid === owner?.uid) ??
      s.deployments.find((d) => d.metadata.uid === owner?.uid)
    const wantedVersion =
      ownerObject?.kind === 'KubeadmControlPlane'
        ? (ownerObject as KubeadmControlPlane).spec?.version
        : (ownerObject as MachineDeployment | undefined)?.spec?.template.spec.version
    const date = new Date(now)

    if (isDeleting(machine)) {
      if (!due(uid, 'deleting', delays.deletion)) {
        await writeStatus('Machine', machine, {
          phase: 'Deleting',
          conditions: withConditions(
            machine.status?.conditions,
            [
              condition(
                'Deleting',
                true,
                'WaitingForInfrastructureDeletion',
                '* OpenStackMachine is deleting',
              ),
              condition('Ready', false, 'NotReady', '* Deleting: Machine deletion in progress'),
              condition('Available', false, 'NotReady', '* Deleting: Machine deletion in progress'),
            ],
            machine.metadata.generation,
            date,
          ),
        })
        return
      }
      if (config) await remove('KubeadmConfig', config, 'machine deleted')
      if (infra) await remove('OpenStackMachine', infra, 'machine deleted')
      await client.update('Machine', machine, (live) => {
        if (!live.metadata.finalizers?.includes(finalizer.machine)) return false
        live.metadata.finalizers = live.metadata.finalizers.filter((f) => f !== finalizer.machine)
        return true
      })
      stages.delete(uid)
      return
    }

    let live = machine
    const failure =
      failures.get(machine.metadata.name) ??
      (infra?.status?.failureReason
        ? { reason: infra.status.failureReason, message: infra.status.failureMessage ?? '' }
        : undefined)

    // Bootstrap: CABPK renders data at once for the first control plane Machine; every other waits
    // for the control plane to be initialized (kubeadm join needs it).
    const controlPlaneInitialized =
      cluster?.status?.initialization?.controlPlaneInitialized === true ||
      s.controlPlanes.some(
        (k) =>
          controllerOf(k)?.uid === cluster?.metadata.uid && k.status?.initialization?.controlPlaneInitialized,
      )
    let bootstrapped = Boolean(spec.bootstrap.dataSecretName)
    const mayBootstrap = isControlPlane || controlPlaneInitialized
    if (!bootstrapped && config && mayBootstrap && due(uid, 'bootstrap', delays.bootstrap)) {
      await writeStatus('KubeadmConfig', config, {
        initialization: { dataSecretCreated: true },
        dataSecretName: machine.metadata.name,
        observedGeneration: config.metadata.generation ?? 1,
        conditions: withConditions(
          (config.status as { conditions?: Condition[] } | undefined)?.conditions,
          [
            condition('Ready', true, 'Ready'),
            condition('DataSecretAvailable', true, 'Available'),
            condition('CertificatesAvailable', true, 'Available'),
          ],
          config.metadata.generation,
          date,
        ),
      })
      live =
        (await client.update('Machine', live, (m) => {
          if (m.spec!.bootstrap.dataSecretName) return false
          m.spec!.bootstrap.dataSecretName = m.metadata.name
          return true
        })) ?? live
      bootstrapped = true
    }

    // Infrastructure: CAPO creates the server once there is bootstrap data, within quota.
    let provisioned = infra?.status?.initialization?.provisioned === true
    let blocked: string | undefined
    if (failure && infra && !infra.status?.failureReason) {
      infra = await writeStatus('OpenStackMachine', infra, {
        ready: false,
        failureReason: failure.reason,
        failureMessage: failure.message,
        conditions: withLegacyConditions(
          infra.status?.conditions,
          [
            {
              type: 'Ready',
              status: 'False',
              severity: 'Error',
              reason: failure.reason,
              message: failure.message,
            },
            {
              type: 'InstanceReady',
              status: 'False',
              severity: 'Error',
              reason: failure.reason,
              message: failure.message,
            },
          ],
          date,
        ),
      })
    }
    if (bootstrapped && infra && !provisioned && !failure) {
      blocked = quotaBlock(live, infra, s, granted)
      if (blocked) {
        stages.set(uid, { stage: 'infrastructure', at: now })
        const reason = 'InstanceCreateFailed'
        await writeStatus('OpenStackMachine', infra, {
          ready: false,
          conditions: withLegacyConditions(
            infra.status?.conditions,
            [
              { type: 'Ready', status: 'False', severity: 'Error', reason, message: blocked },
              { type: 'InstanceReady', status: 'False', severity: 'Error', reason, message: blocked },
            ],
            date,
          ),
        })
      } else if (due(uid, 'infrastructure', delays.infrastructure)) {
        grant(live, infra, granted)
        const instanceID = randomUUID()
        const providerID = `openstack:///${instanceID}`
        const address = addressOf(machine.metadata.name)
        infra =
          (await client.update('OpenStackMachine', infra, (o) => {
            if (o.spec?.providerID) return false
            o.spec = { ...o.spec, providerID }
            return true
          })) ?? infra
        infra = await writeStatus('OpenStackMachine', infra, {
          ready: true,
          instanceID: infra.spec?.providerID?.replace('openstack:///', '') ?? instanceID,
          instanceState: 'ACTIVE',
          addresses: [
            { type: 'InternalIP', address },
            { type: 'Hostname', address: machine.metadata.name },
          ],
          initialization: { provisioned: true },
          conditions: withLegacyConditions(
            infra.status?.conditions,
            [
              { type: 'Ready', status: 'True' },
              { type: 'InstanceReady', status: 'True' },
            ],
            date,
          ),
        })
        live =
          (await client.update('Machine', live, (m) => {
            if (m.spec!.providerID) return false
            m.spec!.providerID = infra!.spec?.providerID ?? providerID
            return true
          })) ?? live
        provisioned = true
      }
    }

    // The Node: it registers a little after the server is up.
    const nodeUp = !failure && provisioned && (Boolean(live.status?.nodeRef) || due(uid, 'node', delays.node))
    const sick = unhealthy.has(machine.metadata.name) && nodeUp

    const bootstrapCondition = bootstrapped
      ? condition('BootstrapConfigReady', true, 'Ready')
      : !config
        ? condition('BootstrapConfigReady', false, 'ObjectDoesNotExist', 'KubeadmConfig does not exist')
        : condition(
            'BootstrapConfigReady',
            false,
            'NotReady',
            mayBootstrap
              ? 'KubeadmConfig status.initialization.dataSecretCreated is false'
              : '* DataSecretAvailable: Waiting for Cluster control plane to be initialized',
          )
    const infraCondition = failure
      ? condition('InfrastructureReady', false, failure.reason, failure.message)
      : provisioned
        ? condition('InfrastructureReady', true, 'Ready')
        : blocked
          ? condition('InfrastructureReady', false, 'InstanceCreateFailed', blocked)
          : !infra
            ? condition('InfrastructureReady', false, 'ObjectDoesNotExist', 'OpenStackMachine does not exist')
            : condition(
                'InfrastructureReady',
                false,
                'NotReady',
                'OpenStackMachine status.initialization.provisioned is false',
              )
    const nodeReady = sick
      ? condition('NodeReady', false, 'NodeNotReady', '* Node.Ready: kubelet stopped posting node status')
      : nodeUp
        ? condition('NodeReady', true, 'NodeReady')
        : condition(
            'NodeReady',
            'Unknown',
            'NodeDoesNotExist',
            'Waiting for a Node with spec.providerID to exist',
          )
    const nodeHealthy = sick
      ? condition('NodeHealthy', false, 'NodeNotHealthy', '* Node.Ready: kubelet stopped posting node status')
      : nodeUp
        ? condition('NodeHealthy', true, 'NodeHealthy')
        : condition(
            'NodeHealthy',
            'Unknown',
            'NodeDoesNotExist',
            'Waiting for a Node with spec.providerID to exist',
          )
    const checks = health.get(uid) ?? []
    const readiness = [
      bootstrapCondition,
      infraCondition,
      nodeHealthy,
      ...checks.filter((c) => c.type === 'HealthCheckSucceeded'),
    ]
    const notReady = readiness.filter((c) => c.status !== 'True')
    const ready = notReady.length
      ? condition('Ready', false, 'NotReady', summary(notReady))
      : condition('Ready', true, 'Ready')
    const upToDate =
      wantedVersion === undefined || wantedVersion === spec.version
        ? condition('UpToDate', true, 'UpToDate')
        : condition('UpToDate', false, 'NotUpToDate', `* Version ${spec.version}, ${wantedVersion} required`)
    const phase = failure
      ? 'Failed'
      : nodeUp
        ? 'Running'
        : provisioned
          ? 'Provisioned'
          : bootstrapped
            ? 'Provisioning'
            : 'Pending'
    const conditions = withConditions(
      live.status?.conditions,
      [
        ready,
        ready.status === 'True'
          ? condition('Available', true, 'Available')
          : condition('Available', false, 'NotReady', '* Ready: not ready'),
        upToDate,
        bootstrapCondition,
        infraCondition,
        nodeReady,
        nodeHealthy,
        ...checks,
        condition('Deleting', false, 'NotDeleting'),
      ],
      live.metadata.generation,
      date,
    )
    const wanted: Json = {
      phase,
      observedGeneration: live.metadata.generation ?? 1,
      initialization: { bootstrapDataSecretCreated: bootstrapped, infrastructureProvisioned: provisioned },
      ...(spec.failureDomain ? { failureDomain: spec.failureDomain } : {}),
      ...(provisioned && infra?.status?.addresses ? { addresses: infra.status.addresses } : {}),
      ...(nodeUp ? { nodeRef: { name: live.metadata.name } } : {}),
      ...(failure
        ? { deprecated: { v1beta1: { failureReason: failure.reason, failureMessage: failure.message } } }
        : {}),
      conditions,
    }
    if (live.status?.phase !== phase) wanted.lastUpdated = rfc3339(date)
    if (!alreadyHas(live.status, wanted) && live.status?.phase !== phase)
      log({ msg: 'machine phase', namespace, name: live.metadata.name, phase })
    await writeStatus('Machine', live, wanted)
  }

  // ---- MachineHealthChecks ----

  function unhealthyReason(machine: Machine, mhc: MachineHealthCheck): WantedCondition | undefined {
    const checks = mhc.spec?.checks
    const since = unhealthy.get(machine.metadata.name)
    if (since !== undefined && machine.status?.nodeRef) {
      const rule = checks?.unhealthyNodeConditions?.find((c) => c.type === 'Ready' && c.status === 'False')
      if (rule) {
        if (now - since >= rule.timeoutSeconds * 1000)
          return condition(
            'HealthCheckSucceeded',
            false,
            'UnhealthyNode',
            `Health check failed: Condition Ready on Node is reported as False for more than ${rule.timeoutSeconds}s`,
          )
        nextDue = Math.min(nextDue, since + rule.timeoutSeconds * 1000)
      }
    }
    const startup = checks?.nodeStartupTimeoutSeconds
    if (startup && !machine.status?.nodeRef && machine.metadata.creationTimestamp) {
      const deadline = Date.parse(machine.metadata.creationTimestamp) + startup * 1000
      if (now >= deadline)
        return condition(
          'HealthCheckSucceeded',
          false,
          'NodeStartupTimeout',
          `Health check failed: Node failed to report startup in ${startup}s`,
        )
    }
    return undefined
  }

  async function reconcileHealthCheck(
    mhc: MachineHealthCheck,
    s: Snapshot,
    health: Map<string, WantedCondition[]>,
  ) {
    const spec = mhc.spec!
    const namespace = mhc.metadata.namespace!
    const cluster = named(s.clusters, namespace, spec.clusterName)
    if (!cluster || isDeleting(cluster)) return
    const targets = s.machines.filter(
      (m) =>
        m.metadata.namespace === namespace &&
        m.spec?.clusterName === spec.clusterName &&
        !isDeleting(m) &&
        matchesSelector(m.metadata.labels, spec.selector),
    )
    const verdicts = targets.map((m) => ({ machine: m, problem: unhealthyReason(m, mhc) }))
    const sick = verdicts.filter((v) => v.problem)
    const limit = spec.remediation?.triggerIf?.unhealthyLessThanOrEqualTo ?? '100%'
    const max =
      typeof limit === 'number'
        ? limit
        : limit.endsWith('%')
          ? Math.floor((Number(limit.slice(0, -1)) * targets.length) / 100)
          : Number(limit)
    const allowed = sick.length <= max
    for (const { machine, problem } of verdicts) {
      const wanted = [problem ?? condition('HealthCheckSucceeded', true, 'HealthCheckSucceeded')]
      if (problem && allowed) wanted.push(condition('OwnerRemediated', false, 'WaitingForRemediation'))
      health.set(machine.metadata.uid!, [...(health.get(machine.metadata.uid!) ?? []), ...wanted])
    }
    await writeStatus('MachineHealthCheck', mhc, {
      expectedMachines: targets.length,
      currentHealthy: targets.length - sick.length,
      remediationsAllowed: Math.max(0, max - sick.length),
      observedGeneration: mhc.metadata.generation ?? 1,
      ...(targets.length ? { targets: targets.map((m) => m.metadata.name).sort() } : {}),
      conditions: withConditions(
        (mhc.status as { conditions?: Condition[] } | undefined)?.conditions,
        [
          allowed
            ? condition('RemediationAllowed', true, 'RemediationAllowed')
            : condition(
                'RemediationAllowed',
                false,
                'TooManyUnhealthy',
                `Remediation is not allowed, the number of not started or unhealthy machines exceeds maxUnhealthy (total: ${targets.length}, unhealthy: ${sick.length}, maxUnhealthy: ${String(limit)})`,
              ),
        ],
        mhc.metadata.generation,
        new Date(now),
      ),
    })
  }

  // ---- status of the infrastructure cluster, control planes, MachineDeployments, Clusters ----

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
        ? condition(
            'Remediating',
            true,
            'Remediating',
            `Remediating ${toRemediate(machines).length} Machines`,
          )
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

  async function statusOfControlPlane(kcp: KubeadmControlPlane, s: Snapshot) {
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
    await writeStatus('KubeadmControlPlane', kcp, {
      ...counts,
      selector: `${label.clusterName}=${labelValue(String(controllerOf(kcp)?.name))},${label.controlPlane}`,
      observedGeneration: kcp.metadata.generation ?? 1,
      initialization: { controlPlaneInitialized: initialized },
      ...(version ? { version } : {}),
      conditions: withConditions(kcp.status?.conditions, conditions, kcp.metadata.generation, new Date(now)),
    })
  }

  async function statusOfDeployment(md: MachineDeployment, s: Snapshot) {
    if (isDeleting(md)) return
    const machines = ownedBy(s.machines, md)
    const spec = md.spec!
    const desired = spec.replicas ?? 1
    const isUpToDate = (m: Machine) => m.spec?.version === spec.template.spec.version
    const counts = replicaCounts(machines, isUpToDate)
    const live = machines.filter((m) => !isDeleting(m)).length
    await writeStatus('MachineDeployment', md, {
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
        new Date(now),
      ),
    })
  }

  async function statusOfInfraCluster(infra: KubeObject, s: Snapshot) {
    if (isDeleting(infra) || !s.clusters.some((c) => c.metadata.uid === controllerOf(infra)?.uid)) return
    await writeStatus('OpenStackCluster', infra, {
      ready: true,
      initialization: { provisioned: true },
      conditions: withLegacyConditions(
        (infra.status as { conditions?: [] } | undefined)?.conditions,
        [{ type: 'Ready', status: 'True' }],
        new Date(now),
      ),
    })
  }

  async function statusOfCluster(cluster: Cluster, s: Snapshot, verdict: ClusterVerdict) {
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
        : condition(
            'ControlPlaneAvailable',
            false,
            'ObjectDoesNotExist',
            'KubeadmControlPlane does not exist',
          ),
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
    await writeStatus('Cluster', cluster, {
      phase,
      observedGeneration: cluster.metadata.generation ?? 1,
      initialization: { infrastructureProvisioned: infraProvisioned, controlPlaneInitialized: initialized },
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
        new Date(now),
      ),
    })
  }

  /** A paused Cluster says so, and nothing else of it changes. */
  async function statusOfPausedCluster(cluster: Cluster) {
    await writeStatus('Cluster', cluster, {
      conditions: withConditions(
        cluster.status?.conditions,
        [condition('Paused', true, 'Paused')],
        cluster.metadata.generation,
        new Date(now),
      ),
    })
  }

  // ---- garbage collection, as Kubernetes' does by owner references ----

  async function collectOrphans(s: Snapshot) {
    const lists: [Kind, KubeObject<unknown, unknown>[]][] = [
      ['MachineDeployment', s.deployments],
      ['KubeadmControlPlane', s.controlPlanes],
      ['OpenStackCluster', s.infraClusters],
      ['Machine', s.machines],
      ['KubeadmConfig', s.configs],
      ['OpenStackMachine', s.infraMachines],
      ['OpenStackMachineTemplate', s.infraTemplates],
      ['KubeadmConfigTemplate', s.configTemplates],
    ]
    for (const [kind, list] of lists)
      for (const object of list) {
        const owner = controllerOf(object)
        if (!owner || !kindOf(owner.apiVersion, owner.kind) || s.uids.has(owner.uid)) continue
        if (isDeleting(object) || object.metadata.labels?.[label.clusterName] === undefined) continue
        await remove(kind, object, `its owner ${owner.kind} ${owner.name} is gone`)
      }
  }

  // ---- the loop ----

  async function pass(force: boolean) {
    if (paused) return
    now = Date.now()
    const probe = await client.list('Cluster', options.namespaces)
    if (!force && probe.resourceVersion === lastVersion && now < nextDue) return
    lastVersion = probe.resourceVersion
    nextDue = now + 5_000
    try {
      const s = await read()
      const verdicts = new Map<string, ClusterVerdict>()
      const verdictOf = (c: Cluster) => {
        const v = verdicts.get(c.metadata.uid!) ?? {}
        verdicts.set(c.metadata.uid!, v)
        return v
      }
      // A paused Cluster (spec.paused or the paused annotation) and everything of it stand still.
      const pausedClusters = new Set(
        s.clusters.filter(isPaused).map((c) => `${c.metadata.namespace}/${c.metadata.name}`),
      )
      const active = <T extends KubeObject<unknown, unknown>>(list: T[], clusterName: (o: T) => unknown) =>
        list.filter(
          (o) => !isPaused(o) && !pausedClusters.has(`${o.metadata.namespace}/${String(clusterName(o))}`),
        )
      const clusters = active(s.clusters, (c) => c.metadata.name)
      const controlPlanes = active(s.controlPlanes, (k) => controllerOf(k)?.name)
      const deployments = active(s.deployments, (d) => d.spec?.clusterName)
      const machines = active(s.machines, (m) => m.spec?.clusterName)
      const healthChecks = active(s.healthChecks, (h) => h.spec?.clusterName)
      for (const cluster of clusters)
        if (isDeleting(cluster)) await reconcileClusterDeletion(cluster, s, verdictOf(cluster))
        else await reconcileTopology(cluster, s, verdictOf(cluster))
      for (const kcp of controlPlanes) await reconcileControlPlane(kcp, s)
      for (const md of deployments) await reconcileMachineDeployment(md, s)
      const health = new Map<string, WantedCondition[]>()
      for (const mhc of healthChecks) await reconcileHealthCheck(mhc, s, health)
      const granted = new Map<string, number>()
      for (const machine of machines) await reconcileMachine(machine, s, health, granted)
      for (const infra of s.infraClusters) await statusOfInfraCluster(infra, s)
      for (const kcp of controlPlanes) await statusOfControlPlane(kcp, s)
      for (const md of deployments) await statusOfDeployment(md, s)
      for (const cluster of s.clusters)
        if (clusters.includes(cluster)) await statusOfCluster(cluster, s, verdictOf(cluster))
        else await statusOfPausedCluster(cluster)
      await collectOrphans(s)
      for (const [name] of failures)
        if (!s.machines.some((m) => m.metadata.name === name)) failures.delete(name)
    } catch (error) {
      nextDue = 0
      throw error
    }
  }

  const serialized = (force: boolean) => {
    const next = running.then(() => pass(force))
    running = next.catch(() => {})
    return next
  }

  const loop = () => {
    if (stopped) return
    serialized(false)
      .catch((error: unknown) =>
        log({ msg: 'reconcile failed', error: error instanceof Error ? error.message : String(error) }),
      )
      .finally(() => {
        if (!stopped) timer = setTimeout(loop, intervalMs)
      })
  }
  timer = setTimeout(loop, 0)
  const poke = () => {
    nextDue = 0
  }

  return {
    async stop() {
      stopped = true
      clearTimeout(timer)
      await running
    },
    pause() {
      paused = true
    },
    resume() {
      paused = false
      poke()
    },
    setQuota(flavor, failureDomain, max) {
      const key = `${flavor}/${failureDomain ?? '*'}`
      if (max < 0) quotas.delete(key)
      else quotas.set(key, max)
      poke()
    },
    failMachine(name, reason, message) {
      failures.set(name, { reason, message })
      poke()
    },
    markNodeUnhealthy(name, forMs) {
      unhealthy.set(name, forMs === undefined ? 0 : Date.now() - forMs)
      poke()
    },
    reconcileOnce: () => serialized(true),
  }
}

/** Merges template metadata, later sources winning, as the topology controller layers class and topology. */
function mergeMetadata(...sources: (Metadata | undefined)[]): Metadata | undefined {
  const labels = Object.assign({}, ...sources.map((s) => s?.labels))
  const annotations = Object.assign({}, ...sources.map((s) => s?.annotations))
  const result: Metadata = {}
  if (Object.keys(labels).length) result.labels = labels
  if (Object.keys(annotations).length) result.annotations = annotations
  return Object.keys(result).length ? result : undefined
}

/** A stable private address per Machine name (10.6.0.0/16). */
function addressOf(name: string) {
  const digest = createHash('sha256').update(name).digest()
  return `10.6.${digest[0]}.${(digest[1]! % 253) + 1}`
}
