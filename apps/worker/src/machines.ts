import type { Database, Machine, NodeGroup } from '@kiln/db'
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

/** The machines a group still lacks: lowest free ordinals first, each with its zone. */
export async function plannedMachines(db: Database, clusterId: string, plan: GroupPlan) {
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
 * Records the machines a group still lacks before anything is created outside. Existing rows are
 * kept, so a retry computes the same names.
 */
export async function recordMissingMachines(
  db: Database,
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
      phase: 'Allocating',
    })),
    skipDuplicates: true,
  })
}

/** What the group's next allocation needs: planned machines and recorded ones not yet allocated. */
export async function capacityNeeds(db: Database, clusterId: string, plan: GroupPlan) {
  const unallocated = await db.machine.findMany({
    where: { ...groupWhere(clusterId, plan), phase: 'Allocating' },
    select: { zone: true },
  })
  return [
    ...(await plannedMachines(db, clusterId, plan)).map((m) => m.zone),
    ...unallocated.map((m) => m.zone ?? 'default'),
  ].map((zone) => ({ machineClass: plan.machineClass, zone, count: 1 }))
}

export function specOf(machine: Machine, plan: Pick<GroupPlan, 'labels' | 'taints'>): MachineSpec {
  return {
    name: machine.name,
    machineClass: machine.machineClass,
    zone: machine.zone ?? 'default',
    role: machine.role === 'control-plane' ? 'control-plane' : 'worker',
    kubernetesVersion: machine.kubernetesVersion,
    labels: plan.labels,
    taints: plan.taints,
  }
}

/** Asks the backend for every recorded machine still `Allocating`, then records what it returned. */
export async function allocateRecordedMachines(
  db: Database,
  driver: Driver,
  cluster: ClusterRef,
  plans: GroupPlan[],
): Promise<number> {
  const pending = await db.machine.findMany({ where: { clusterId: cluster.id, phase: 'Allocating' } })
  if (pending.length === 0) return 0
  const planOf = (m: Machine) =>
    plans.find((p) => (p.nodeGroup?.id ?? null) === m.nodeGroupId) ?? { labels: {}, taints: [] }
  const refs = await driver.ensureMachines(
    cluster,
    pending.map((m) => specOf(m, planOf(m))),
  )
  // One statement records every machine the backend returned.
  await db.$executeRaw`
    UPDATE "Machine" AS m SET "externalId" = v.ext, zone = v.zone, phase = 'Allocated', "updatedAt" = now()
    FROM unnest(${refs.map((r) => r.name)}::text[], ${refs.map((r) => r.externalId)}::text[], ${refs.map((r) => r.zone)}::text[])
      AS v(name, ext, zone)
    WHERE m.name = v.name AND m.phase = 'Allocating'`
  return refs.length
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

/** Capacity still needed for the recorded-but-unallocated machines plus `extra`, per class and zone. */
export async function checkCapacity(
  driver: Driver,
  needs: { machineClass: string; zone: string; count: number }[],
) {
  const totals = new Map<string, { machineClass: string; zone: string; count: number }>()
  for (const n of needs) {
    const key = `${n.machineClass}@${n.zone}`
    const t = totals.get(key) ?? { machineClass: n.machineClass, zone: n.zone, count: 0 }
    t.count += n.count
    totals.set(key, t)
  }
  const caps = await driver.capabilities()
  const short: string[] = []
  for (const need of totals.values()) {
    const available =
      caps.machineClasses.find((mc) => mc.name === need.machineClass)?.available[need.zone] ?? 0
    if (available < need.count)
      short.push(`${need.count} × ${need.machineClass} in ${need.zone} (${available} free)`)
  }
  if (short.length > 0)
    throw new DriverError('ERR_CAPACITY', `Not enough capacity: needs ${short.join(', ')}.`)
  return [...totals.values()].reduce((sum, n) => sum + n.count, 0)
}
