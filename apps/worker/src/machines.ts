import type { Database, Machine, NodeGroup, Queryable, Tx } from '@kiln/db'
import type { Taint } from '@kiln/domain'
import { type ClusterRef, type Driver, DriverError, type MachineRef, type MachineSpec } from '@kiln/drivers'

/**
 * Deterministic machine names: the cluster, the group, the position and the operation that created
 * the machine. A retry of that operation asks for the same names and so adopts; a machine that
 * replaces another (repair, upgrade) gets a name of its own.
 */
export function machineName(
  clusterId: string,
  group: { kind: 'control-plane' } | { kind: 'nodegroup'; name: string },
  ordinal: number,
  operationId: string,
) {
  const groupPart = group.kind === 'control-plane' ? 'cp' : `ng-${group.name}`
  return `k-${clusterId.slice(0, 8)}-${groupPart}-${ordinal}-${operationId.slice(0, 6)}`
}

export interface GroupPlan {
  nodeGroup: NodeGroup | null
  machineClass: string
  count: number
  zones: string[]
  labels: Record<string, string>
  taints: Taint[]
}

/**
 * Spreads a group's machines over its zones by ordinal, starting at a zone chosen by the cluster,
 * so that clusters do not all put their first machines (and control planes) in the first zone.
 */
function zoneFor(zones: string[], ordinal: number, clusterId: string) {
  if (zones.length === 0) return 'default'
  const offset = Number.parseInt(clusterId.slice(0, 8), 16) % zones.length
  return zones[(offset + ordinal) % zones.length]!
}

const groupWhere = (clusterId: string, plan: GroupPlan) => ({
  clusterId,
  nodeGroupId: plan.nodeGroup?.id ?? null,
  role: plan.nodeGroup ? 'worker' : 'control-plane',
})

/**
 * Machine phases, in order: `Reserved` (recorded and counted against the backend's capacity; the
 * backend has not been asked), `Allocating` (the backend is being asked; a crash here is retried and
 * the retry adopts by name), `Allocated` (the backend handed it out), `Running` (a node of the
 * cluster), `Draining` (leaving the cluster), `Releasing` (being given back to the backend).
 * Reserved and Allocating machines are Kiln's claims the backend's free count does not show yet.
 */
export const reservedPhases = ['Reserved', 'Allocating']

/** The machines a group still lacks: lowest free ordinals first, each with its zone. */
export async function plannedMachines(db: Queryable, clusterId: string, plan: GroupPlan) {
  const existing = await db.machine.findMany({
    where: groupWhere(clusterId, plan),
    select: { ordinal: true },
  })
  const used = new Set(existing.map((m) => m.ordinal))
  const planned: { ordinal: number; zone: string }[] = []
  for (let ordinal = 0; planned.length < plan.count - existing.length; ordinal++) {
    if (!used.has(ordinal)) planned.push({ ordinal, zone: zoneFor(plan.zones, ordinal, clusterId) })
  }
  return planned
}

/**
 * Records the machines a group still lacks, as `Reserved`, before anything is created outside.
 * Existing rows are kept, so a retry computes the same names.
 */
async function recordMissingMachines(
  db: Queryable,
  clusterId: string,
  plan: GroupPlan,
  kubernetesVersion: string,
  operationId: string,
): Promise<void> {
  const planned = await plannedMachines(db, clusterId, plan)
  if (planned.length === 0) return
  const group = plan.nodeGroup
    ? { kind: 'nodegroup' as const, name: plan.nodeGroup.name }
    : { kind: 'control-plane' as const }
  await db.machine.createMany({
    data: planned.map(({ ordinal, zone }) => ({
      ...groupWhere(clusterId, plan),
      name: machineName(clusterId, group, ordinal, operationId),
      machineClass: plan.machineClass,
      zone,
      ordinal,
      kubernetesVersion,
      phase: 'Reserved',
    })),
    skipDuplicates: true,
  })
}

/** What the group's next allocation needs: planned machines and recorded ones not yet allocated. */
async function capacityNeeds(db: Queryable, clusterId: string, plan: GroupPlan) {
  const unallocated = await db.machine.findMany({
    where: { ...groupWhere(clusterId, plan), phase: { in: reservedPhases } },
    select: { zone: true },
  })
  return [
    ...(await plannedMachines(db, clusterId, plan)).map((m) => m.zone),
    ...unallocated.map((m) => m.zone ?? 'default'),
  ].map((zone) => ({ machineClass: plan.machineClass, zone, count: 1 }))
}

export function specOf(
  machine: Machine,
  plan: Pick<GroupPlan, 'labels' | 'taints'> & { nodeGroup?: NodeGroup | null },
): MachineSpec {
  const ng = plan.nodeGroup
  const autoscaled = (ng?.features as { autoscaler?: { enabled?: boolean } } | undefined)?.autoscaler?.enabled
  return {
    name: machine.name,
    machineClass: machine.machineClass,
    zone: machine.zone ?? 'default',
    role: machine.role === 'control-plane' ? 'control-plane' : 'worker',
    kubernetesVersion: machine.kubernetesVersion,
    labels: plan.labels,
    taints: plan.taints,
    ...(ng
      ? {
          nodeGroup: {
            name: ng.name,
            ...(autoscaled ? { autoscaling: { minCount: ng.minCount, maxCount: ng.maxCount } } : {}),
          },
        }
      : {}),
  }
}

/** Where capacity is counted and machines come from: one cluster on one backend. */
export interface CapacityScope {
  db: Database
  driver: Driver
  /** The backend's id: the key of its capacity lock. */
  backendId: string
  cluster: ClusterRef
}

/**
 * Runs `work` in a transaction holding the backend's capacity lock (transaction-scoped, so a crash
 * or a lost connection frees it). Every reservation and every allocation on one backend takes it,
 * so a reservation never counts a machine twice (once reserved, once taken at the backend) and two
 * creates cannot both pass a check that only one of them fits.
 *
 * The allocation holds a connection across the backend call. That is bounded: the transaction
 * times out (then the step fails retryably and its retry adopts by name), only allocations on the
 * same backend wait, and a worker runs fewer steps at once than its pool has connections.
 */
async function underCapacityLock<T>(db: Database, backendId: string, work: (tx: Tx) => Promise<T>) {
  return db.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`kiln.capacity:${backendId}`}))`
      return work(tx)
    },
    { maxWait: 30_000, timeout: capacityLockTimeoutMs },
  )
}

/** How long one reservation or allocation may hold its backend's lock (the Ironic allocation wait is 2 min a machine). */
const capacityLockTimeoutMs = 10 * 60_000

type Need = { machineClass: string; zone: string; count: number }
const keyOf = (n: { machineClass: string; zone: string | null }) => `${n.machineClass}@${n.zone ?? 'default'}`

/**
 * Fails ERR_CAPACITY unless `needs` fit into what the backend has free less what other clusters
 * have reserved there and the backend has not handed out yet. Call under the capacity lock.
 */
async function assertCapacity(tx: Tx, c: CapacityScope, needs: Need[]): Promise<number> {
  const totals = new Map<string, Need>()
  for (const n of needs) {
    const t = totals.get(keyOf(n)) ?? { machineClass: n.machineClass, zone: n.zone, count: 0 }
    t.count += n.count
    totals.set(keyOf(n), t)
  }
  if (totals.size === 0) return 0
  const caps = await c.driver.capabilities()
  const elsewhere = await tx.machine.groupBy({
    by: ['machineClass', 'zone'],
    where: {
      phase: { in: reservedPhases },
      clusterId: { not: c.cluster.id },
      cluster: { template: { backendId: c.backendId } },
    },
    _count: { _all: true },
  })
  const reserved = new Map(elsewhere.map((r) => [keyOf(r), r._count._all]))
  const short: string[] = []
  for (const need of totals.values()) {
    const free = caps.machineClasses.find((mc) => mc.name === need.machineClass)?.available[need.zone] ?? 0
    const held = reserved.get(keyOf(need)) ?? 0
    if (free - held < need.count)
      short.push(
        `${need.count} × ${need.machineClass} in ${need.zone} (${free} free${held ? `, ${held} of them reserved by other clusters` : ''})`,
      )
  }
  if (short.length > 0)
    throw new DriverError('ERR_CAPACITY', `Not enough capacity: needs ${short.join(', ')}.`)
  return [...totals.values()].reduce((sum, n) => sum + n.count, 0)
}

/** Whether `needs` fit now (nothing is recorded): for surge machines an upgrade reserves batch by batch. */
export function checkCapacity(c: CapacityScope, needs: Need[]): Promise<number> {
  return underCapacityLock(c.db, c.backendId, (tx) => assertCapacity(tx, c, needs))
}

/**
 * Reserves what the groups lack: if it fits, records the missing machines as `Reserved`, else fails
 * ERR_CAPACITY holding nothing (reservations of earlier attempts are dropped too). Returns how many
 * machines the cluster has reserved.
 */
export async function reserveMachines(
  c: CapacityScope,
  plans: GroupPlan[],
  kubernetesVersion: string,
  operationId: string,
): Promise<number> {
  try {
    return await underCapacityLock(c.db, c.backendId, async (tx) => {
      const needs = []
      for (const plan of plans) needs.push(...(await capacityNeeds(tx, c.cluster.id, plan)))
      const total = await assertCapacity(tx, c, needs)
      for (const plan of plans)
        await recordMissingMachines(tx, c.cluster.id, plan, kubernetesVersion, operationId)
      return total
    })
  } catch (error) {
    if (error instanceof DriverError && error.code === 'ERR_CAPACITY')
      await c.db.machine.deleteMany({ where: { clusterId: c.cluster.id, phase: 'Reserved' } })
    throw error
  }
}

/**
 * Asks the backend for every reserved machine, then records what it returned, under the capacity
 * lock. A failure the retry cannot fix (no capacity after all, a user error) keeps nothing: what
 * this attempt took is released at the backend (by name, so half-allocated ones go too) and the
 * rows are deleted. A retryable one keeps the reservation: the retry adopts by name.
 */
export async function allocateReservedMachines(c: CapacityScope, plans: GroupPlan[]): Promise<number> {
  const { db, driver, cluster } = c
  const pending = await db.machine.findMany({
    where: { clusterId: cluster.id, phase: { in: reservedPhases } },
    orderBy: [{ role: 'asc' }, { ordinal: 'asc' }, { name: 'asc' }],
  })
  if (pending.length === 0) return 0
  // Committed before the call, so a crash during it leaves rows that say the backend was asked.
  await db.machine.updateMany({
    where: { id: { in: pending.map((m) => m.id) }, phase: 'Reserved' },
    data: { phase: 'Allocating' },
  })
  const planOf = (m: Machine) =>
    plans.find((p) => (p.nodeGroup?.id ?? null) === m.nodeGroupId) ?? { labels: {}, taints: [] }
  try {
    return await underCapacityLock(db, c.backendId, async (tx) => {
      const refs = await driver.ensureMachines(
        cluster,
        pending.map((m) => specOf(m, planOf(m))),
      )
      // One statement records every machine the backend returned.
      await tx.$executeRaw`
        UPDATE "Machine" AS m SET "externalId" = v.ext, zone = v.zone, phase = 'Allocated', "updatedAt" = now()
        FROM unnest(${refs.map((r) => r.name)}::text[], ${refs.map((r) => r.externalId)}::text[], ${refs.map((r) => r.zone)}::text[])
          AS v(name, ext, zone)
        WHERE m.name = v.name AND m.phase = 'Allocating'`
      return refs.length
    })
  } catch (error) {
    if (error instanceof DriverError && error.errorClass !== 'retryable') {
      // The original failure is what the operation reports; a release that fails too leaves the
      // rows `Releasing`, shown with the cluster, and its delete releases them again.
      await releaseMachines(db, driver, cluster, pending).catch(() => {})
    }
    throw error
  }
}

/** Reserves what the groups lack, then allocates every reserved machine. */
export async function reserveAndAllocate(
  c: CapacityScope,
  plans: GroupPlan[],
  kubernetesVersion: string,
  operationId: string,
): Promise<number> {
  await reserveMachines(c, plans, kubernetesVersion, operationId)
  return allocateReservedMachines(c, plans)
}

export const refOf = (m: Machine): MachineRef => {
  if (!m.externalId) throw new DriverError('ERR_PROVISION_FAILED', `Machine ${m.name} has no backend id yet.`)
  return { name: m.name, externalId: m.externalId, zone: m.zone ?? 'default', machineClass: m.machineClass }
}

/** Releases machines at the backend (by name, so even half-recorded ones go) and forgets them. */
export async function releaseMachines(
  db: Database,
  driver: Driver,
  cluster: ClusterRef,
  machines: Machine[],
) {
  if (machines.length === 0) return
  await db.machine.updateMany({
    where: { id: { in: machines.map((m) => m.id) } },
    data: { phase: 'Releasing' },
  })
  await driver.releaseMachines(
    cluster,
    machines.map((m) => m.name),
  )
  await db.machine.deleteMany({ where: { id: { in: machines.map((m) => m.id) } } })
}
