import type { KubeConfig } from '@kubernetes/client-node'
import { type Kind, type KubeObject, kindOf, loadKubeConfig, ManagementClient } from './client.ts'
import type { WantedCondition } from './conditions.ts'
import {
  type ClusterVerdict,
  remove,
  type Snapshot,
  type StandInContext,
  type StandInDelays,
} from './context.ts'
import { reconcileHealthCheck } from './health.ts'
import { reconcileMachine } from './machines.ts'
import {
  type Cluster,
  type ClusterClass,
  controllerOf,
  isDeleting,
  isPaused,
  type KubeadmControlPlane,
  label,
  type Machine,
  type MachineDeployment,
  type MachineHealthCheck,
  type OpenStackMachine,
} from './model.ts'
import { reconcileControlPlane, reconcileMachineDeployment } from './replicas.ts'
import {
  statusOfCluster,
  statusOfControlPlane,
  statusOfDeployment,
  statusOfInfraCluster,
  statusOfPausedCluster,
} from './status.ts'
import { reconcileClusterDeletion, reconcileTopology } from './topology.ts'

export type { StandInDelays } from './context.ts'

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

/**
 * A stand-in for Cluster API's controllers (core + topology, kubeadm bootstrap, kubeadm control plane,
 * and CAPO) for a simulated management cluster: it reads and writes Cluster API objects through the
 * Kubernetes API only, and moves them forward as Cluster API's in-memory provider does, with short
 * configurable delays and injectable failures. See CONTRACT.md.
 */
export function startClusterApiStandIn(options: StandInOptions): ClusterApiStandIn {
  const intervalMs = options.intervalMs ?? 200
  let paused = false
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  // A pass is skipped while nothing changed (same list resourceVersion) and no delay is due.
  let lastVersion = ''
  let nextDue = 0
  const ctx: StandInContext = {
    client: new ManagementClient(loadKubeConfig(options.kubeconfig), fieldManager),
    delays: { ...defaultDelays, ...options.delays },
    endpoint: options.endpoint ?? { host: '127.0.0.1', port: 6443 },
    zones: options.failureDomains ?? ['az-1', 'az-2'],
    log: options.log ?? (() => {}),
    now: Date.now(),
    due(uid, stage, delay) {
      const seen = ctx.stages.get(uid)
      if (!seen || seen.stage !== stage) ctx.stages.set(uid, { stage, at: ctx.now })
      const at = (seen && seen.stage === stage ? seen.at : ctx.now) + delay
      if (ctx.now >= at) return true
      ctx.wake(at)
      return false
    },
    wake(at) {
      nextDue = Math.min(nextDue, at)
    },
    quotas: new Map(),
    failures: new Map(),
    unhealthy: new Map(),
    stages: new Map(),
  }
  const { client, log, quotas, failures, unhealthy } = ctx

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
        await remove(ctx, kind, object, `its owner ${owner.kind} ${owner.name} is gone`)
      }
  }

  // ---- the loop ----

  async function pass(force: boolean) {
    if (paused) return
    ctx.now = Date.now()
    const probe = await client.list('Cluster', options.namespaces)
    if (!force && probe.resourceVersion === lastVersion && ctx.now < nextDue) return
    lastVersion = probe.resourceVersion
    nextDue = ctx.now + 5_000
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
      // Objects of one kind are independent of each other: each phase writes them side by side, so a
      // pass over a thousand Clusters is not a thousand round trips in a row.
      await each(clusters, (cluster) =>
        isDeleting(cluster)
          ? reconcileClusterDeletion(ctx, cluster, s, verdictOf(cluster))
          : reconcileTopology(ctx, cluster, s, verdictOf(cluster)),
      )
      await each(controlPlanes, (kcp) => reconcileControlPlane(ctx, kcp, s))
      await each(deployments, (md) => reconcileMachineDeployment(ctx, md, s))
      const health = new Map<string, WantedCondition[]>()
      await each(healthChecks, (mhc) => reconcileHealthCheck(ctx, mhc, s, health))
      const granted = new Map<string, number>()
      // Quotas count the servers granted so far in this pass: with one set, Machines go one by one.
      await each(
        machines,
        (machine) => reconcileMachine(ctx, machine, s, health, granted),
        quotas.size > 0 ? 1 : undefined,
      )
      await each(s.infraClusters, (infra) => statusOfInfraCluster(ctx, infra, s))
      await each(controlPlanes, (kcp) => statusOfControlPlane(ctx, kcp, s))
      await each(deployments, (md) => statusOfDeployment(ctx, md, s))
      const reconciled = new Set(clusters)
      await each(s.clusters, (cluster) =>
        reconciled.has(cluster)
          ? statusOfCluster(ctx, cluster, s, verdictOf(cluster))
          : statusOfPausedCluster(ctx, cluster),
      )
      await collectOrphans(s)
      // Injected failures and stage clocks of Machines that are gone are forgotten.
      const names = new Set(s.machines.map((m) => m.metadata.name))
      for (const name of [...failures.keys(), ...unhealthy.keys()])
        if (!names.has(name)) {
          failures.delete(name)
          unhealthy.delete(name)
        }
      for (const uid of ctx.stages.keys()) if (!s.uids.has(uid)) ctx.stages.delete(uid)
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

/** Runs `work` over `items`, `width` at a time (16 by default), and waits for all of them. */
async function each<T>(items: readonly T[], work: (item: T) => Promise<unknown>, width = 16) {
  let next = 0
  const lane = async () => {
    while (next < items.length) await work(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane))
}
