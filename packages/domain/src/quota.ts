import { addMachines, type Consumption, emptyConsumption } from './consumption.ts'
import { DomainError, ErrorCode, type Violation } from './errors.ts'
import type { MachineClassInfo } from './resolution.ts'

/**
 * A project's limits; null means unlimited. `gpusByModel` bounds the GPUs of each model it names;
 * a model it does not name is bounded only by `gpus`.
 */
export interface QuotaLimits {
  clusters: number | null
  nodes: number | null
  vcpus: number | null
  memoryMiB: number | null
  gpus: number | null
  gpusByModel: Record<string, number>
}

export const scalarQuotaResources = ['clusters', 'nodes', 'vcpus', 'memoryMiB', 'gpus'] as const
export type ScalarQuotaResource = (typeof scalarQuotaResources)[number]

export const unlimitedQuota = (): QuotaLimits => ({
  clusters: null,
  nodes: null,
  vcpus: null,
  memoryMiB: null,
  gpus: null,
  gpusByModel: {},
})

/** Whether the limits bound nothing (then no request needs checking, and nothing is locked). */
export const isUnlimited = (limits: QuotaLimits) =>
  scalarQuotaResources.every((r) => limits[r] === null) && Object.keys(limits.gpusByModel).length === 0

/** The quota resource name of a GPU model: `gpus:nvidia-a100`. */
export const gpuModelResource = (model: string) => `gpus:${model}`

/** How much of one quota resource (`vcpus`, `gpus:nvidia-a100`, …) a consumption holds. */
export function amountOf(consumption: Consumption, resource: string): number {
  if (resource.startsWith('gpus:')) return consumption.gpusByModel[resource.slice('gpus:'.length)] ?? 0
  return (scalarQuotaResources as readonly string[]).includes(resource)
    ? consumption[resource as ScalarQuotaResource]
    : 0
}

/** Componentwise a + b. */
export function addConsumption(a: Consumption, b: Consumption): Consumption {
  return combine(a, b, (x, y) => x + y)
}

/** Componentwise a − b: a change, which may be negative. */
export function subtractConsumption(a: Consumption, b: Consumption): Consumption {
  return combine(a, b, (x, y) => x - y)
}

/** Componentwise max(a, b). */
export function maxConsumption(a: Consumption, b: Consumption): Consumption {
  return combine(a, b, Math.max)
}

function combine(a: Consumption, b: Consumption, op: (x: number, y: number) => number): Consumption {
  const gpusByModel: Record<string, number> = {}
  for (const model of new Set([...Object.keys(a.gpusByModel), ...Object.keys(b.gpusByModel)])) {
    const value = op(a.gpusByModel[model] ?? 0, b.gpusByModel[model] ?? 0)
    if (value !== 0) gpusByModel[model] = value
  }
  return {
    clusters: op(a.clusters, b.clusters),
    nodes: op(a.nodes, b.nodes),
    vcpus: op(a.vcpus, b.vcpus),
    memoryMiB: op(a.memoryMiB, b.memoryMiB),
    gpus: op(a.gpus, b.gpus),
    gpusByModel,
  }
}

/** `count` machines of a class by name; a class the catalogue no longer has still counts as nodes. */
export function machinesConsumption(
  machineClass: string,
  count: number,
  machineClasses: ReadonlyMap<string, MachineClassInfo>,
): Consumption {
  const mc = machineClasses.get(machineClass) ?? {
    name: machineClass,
    backend: '',
    cpu: 0,
    memoryMiB: 0,
    gpuModel: null,
    gpuCount: 0,
    zones: [],
  }
  return addMachines(emptyConsumption(), mc, count)
}

/** One group of a cluster (its control plane or a node group) as the quota sees it. */
export interface GroupClaim {
  /** What the group should have: its machine class and count. Null when the cluster is being deleted. */
  desired: { machineClass: string; count: number } | null
  /** The machines it holds now (Machine rows), by class. */
  held: { machineClass: string; count: number }[]
}

/**
 * What one group claims: per resource, the larger of what it should have and what it still holds.
 * Growing, it claims its new size at once (reserved when the request is accepted); shrinking, it
 * keeps claiming its machines until the worker has released them.
 */
export function groupClaim(group: GroupClaim, machineClasses: ReadonlyMap<string, MachineClassInfo>) {
  const desired = group.desired
    ? machinesConsumption(group.desired.machineClass, group.desired.count, machineClasses)
    : emptyConsumption()
  const held = group.held.reduce(
    (sum, h) => addConsumption(sum, machinesConsumption(h.machineClass, h.count, machineClasses)),
    emptyConsumption(),
  )
  return maxConsumption(desired, held)
}

/**
 * What one cluster claims from its project's quota: the sum of its groups' claims, and the cluster
 * itself. A cluster being deleted wants nothing any more (it can only go), so it claims only the
 * machines it still holds, and counts as a cluster until the last of them is released.
 */
export function clusterClaim(
  cluster: { deleting: boolean; groups: GroupClaim[] },
  machineClasses: ReadonlyMap<string, MachineClassInfo>,
): Consumption {
  const machines = cluster.groups.reduce(
    (sum, g) => addConsumption(sum, groupClaim(g, machineClasses)),
    emptyConsumption(),
  )
  const holdsMachines = cluster.groups.some((g) => g.held.some((h) => h.count > 0))
  return { ...machines, clusters: !cluster.deleting || holdsMachines ? 1 : 0 }
}

/** One resource of a quota check. */
export interface QuotaLine {
  /** `clusters`, `nodes`, `vcpus`, `memoryMiB`, `gpus` or `gpus:<model>`. */
  resource: string
  /** Null: unlimited. */
  limit: number | null
  /** What the project's clusters claim now. */
  usage: number
  /** What the request adds (negative when it gives back). */
  request: number
  /** What is left before the request: limit − usage, never below 0; null when unlimited. */
  remaining: number | null
  /** Whether the request would take usage beyond the limit. */
  exceeded: boolean
}

/**
 * Every resource of a project's quota against a request. A request is refused only for resources it
 * grows beyond their limit: one that gives back, or leaves a resource alone, passes even when an
 * administrator has lowered the limit below the current usage.
 */
export function quotaLines(limits: QuotaLimits, usage: Consumption, request: Consumption): QuotaLine[] {
  const line = (resource: string, limit: number | null, used: number, asked: number): QuotaLine => ({
    resource,
    limit,
    usage: used,
    request: asked,
    remaining: limit === null ? null : Math.max(0, limit - used),
    exceeded: limit !== null && asked > 0 && used + asked > limit,
  })
  const models = [
    ...new Set([
      ...Object.keys(limits.gpusByModel),
      ...Object.keys(usage.gpusByModel),
      ...Object.keys(request.gpusByModel),
    ]),
  ].sort()
  return [
    ...scalarQuotaResources.map((r) => line(r, limits[r], usage[r], request[r])),
    ...models.map((m) =>
      line(
        gpuModelResource(m),
        limits.gpusByModel[m] ?? null,
        usage.gpusByModel[m] ?? 0,
        request.gpusByModel[m] ?? 0,
      ),
    ),
  ]
}

/**
 * The 422 for a request that would exceed the quota: one violation per exceeded resource (pointing
 * at what in the request asks for it) and the figures in the `exceeded` extension.
 */
export function quotaExceeded(lines: QuotaLine[], pointersOf: (line: QuotaLine) => string[]): DomainError {
  const exceeded = lines.filter((l) => l.exceeded)
  const sentence = (l: QuotaLine) =>
    `${l.resource}: the limit is ${l.limit}, ${l.usage} ${l.usage === 1 ? 'is' : 'are'} in use and this request needs ${l.request} more.`
  const violations: Violation[] = exceeded.flatMap((l) =>
    pointersOf(l).map((pointer) => ({ pointer, message: sentence(l) })),
  )
  return new DomainError(
    ErrorCode.quotaExceeded,
    `The request exceeds the project's quota. ${exceeded.map(sentence).join(' ')}`,
    { violations, extensions: { exceeded } },
  )
}
