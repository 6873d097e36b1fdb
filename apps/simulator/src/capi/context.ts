import type { Json, Kind, KubeObject, ManagementClient } from './client.ts'
import type { WantedCondition } from './conditions.ts'
import {
  alreadyHas,
  type Cluster,
  type ClusterClass,
  compact,
  controllerOf,
  finalizer,
  type KubeadmControlPlane,
  label,
  labelValue,
  type Machine,
  type MachineDeployment,
  type MachineHealthCheck,
  type OpenStackMachine,
} from './model.ts'

// What the stand-in's controllers share during a pass: the client, its options, the clock, the
// failures injected, and what was read.

export const infrastructureGroup = 'infrastructure.cluster.x-k8s.io'
export const bootstrapGroup = 'bootstrap.cluster.x-k8s.io'
export const controlPlaneGroup = 'controlplane.cluster.x-k8s.io'

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

export interface StandInContext {
  client: ManagementClient
  delays: StandInDelays
  endpoint: { host: string; port: number }
  /** The simulated cloud's availability zones. */
  zones: string[]
  log: (entry: Record<string, unknown>) => void
  /** The time of the pass in progress (ms). */
  now: number
  /** Whether a Machine's `stage` (entered now if it was in another) has lasted `delay`; else wakes the loop then. */
  due(uid: string, stage: string, delay: number): boolean
  /** Asks for a pass at `at` (ms) even if nothing changes. */
  wake(at: number): void
  /** Server quotas by `flavor/failure domain` (`*` for all). */
  quotas: Map<string, number>
  /** Provider failures to report, by Machine name. */
  failures: Map<string, { reason: string; message: string }>
  /** Machines whose Node reports Ready=False, and since when (ms). */
  unhealthy: Map<string, number>
  /** When each Machine (by uid) entered its current stage: its delays count from there. */
  stages: Map<string, { stage: string; at: number }>
}

/** What one pass reads: every object of the kinds the stand-in plays the controllers of. */
export interface Snapshot {
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
export interface ClusterVerdict {
  topology?: WantedCondition
  deleting?: WantedCondition
}

export const named = <T extends KubeObject<unknown, unknown>>(list: T[], namespace: string, name: string) =>
  list.find((o) => o.metadata.namespace === namespace && o.metadata.name === name)
export const ownedBy = <T extends KubeObject<unknown, unknown>>(
  list: T[],
  owner: KubeObject<unknown, unknown>,
) => list.filter((o) => controllerOf(o)?.uid === owner.metadata.uid)

/** The labels Cluster API puts on everything of a Cluster's topology. */
export const topologyLabels = (cluster: Cluster) => ({
  [label.clusterName]: labelValue(cluster.metadata.name),
  [label.topologyOwned]: '',
})

export async function create<T extends KubeObject<unknown, unknown>>(
  ctx: StandInContext,
  kind: Kind,
  object: T,
): Promise<T> {
  const created = (await ctx.client.create(kind, compact(object))) as T
  ctx.log({ msg: 'created', kind, namespace: object.metadata.namespace, name: object.metadata.name })
  return created
}

export async function remove(
  ctx: StandInContext,
  kind: Kind,
  object: KubeObject<unknown, unknown>,
  why: string,
) {
  await ctx.client.delete(kind, object)
  ctx.log({ msg: 'deleted', kind, namespace: object.metadata.namespace, name: object.metadata.name, why })
}

/** Writes the status fields in `wanted` when any differs from what is stored. */
export async function writeStatus<S, T>(
  ctx: StandInContext,
  kind: Kind,
  object: KubeObject<S, T>,
  wanted: Json,
) {
  if (alreadyHas(object.status, wanted)) return object
  return (
    (await ctx.client.update(
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

/** Machines the stand-in's control plane or MachineDeployment controllers own. */
export function isOurs(machine: Machine, s: Snapshot) {
  const owner = controllerOf(machine)
  if (!owner) return false
  if (owner.kind === 'KubeadmControlPlane' || owner.kind === 'MachineDeployment') return true
  return !s.uids.has(owner.uid) && machine.metadata.finalizers?.includes(finalizer.machine) === true
}
