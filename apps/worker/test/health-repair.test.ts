import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  conditionOf,
  createCluster,
  expectBooksAgree,
  getCluster,
  simulatorFor,
  waitForOperation,
} from './support.ts'

// The health checker, driven by hand (the periodic loop is off): observe, repair, and its limits.

const config = testDataCentre()
let stack: TestStack
let sim: SimulatorDriver
let cluster: ClusterBody

const auditCount = () => stack.db.auditEvent.count({ where: { targetId: cluster.id } })
const repairOps = () =>
  stack.db.operation.findMany({
    where: { clusterId: cluster.id, kind: 'cluster.repair' },
    orderBy: { createdAt: 'asc' },
  })
const revision = async () =>
  (await stack.db.cluster.findUniqueOrThrow({ where: { id: cluster.id } })).revision

beforeAll(async () => {
  stack = await startTestStack({ engine: { healthIntervalMs: 0 } })
  await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  sim = simulatorFor(stack, 'sim', config)
  const created = await waitForOperation(
    stack.app,
    (await createCluster(stack.app, { name: 'web', template: 'k8s-1.31' })).id,
  )
  expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
  cluster = await getCluster(stack.app, 'web')
  expect(cluster.status.phase).toBe('Ready')
}, 60_000)

afterAll(async () => {
  await sim?.close()
  await stack?.close()
})

describe('observing a healthy cluster', () => {
  it('opens no repair and records no health transition for a cluster that was Ready all along', async () => {
    const audit = await auditCount()
    expect(await stack.engine!.observeOnce()).toBe(0)
    const c = await getCluster(stack.app, 'web')
    expect(c.status.phase).toBe('Ready')
    expect(c.status.lastObservedAt).not.toBeNull()
    expect(conditionOf(c, 'MachinesReady')?.status).toBe('True')
    expect(await repairOps()).toHaveLength(0)
    // Nothing changed: it was healthy when created and is healthy now.
    expect(await auditCount()).toBe(audit)
  })

  it('writes nothing at all when observed again within 30 s and nothing changed', async () => {
    await stack.engine!.observeOnce()
    const audit = await auditCount()
    const rev = await revision()
    const lastObservedAt = (await getCluster(stack.app, 'web')).status.lastObservedAt
    for (let i = 0; i < 3; i++) expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await auditCount()).toBe(audit)
    expect(await revision()).toBe(rev)
    expect((await getCluster(stack.app, 'web')).status.lastObservedAt).toBe(lastObservedAt)
  })
})

describe('repair', () => {
  it('replaces a dead worker: observeOnce opens cluster.repair, which succeeds and brings the cluster back to Ready', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const victim = before.find((m) => m.role === 'worker')!
    await sim.killMachine(victim.name)

    expect(await stack.engine!.observeOnce()).toBe(1)
    const degraded = await getCluster(stack.app, 'web')
    expect(conditionOf(degraded, 'MachinesReady')).toMatchObject({
      status: 'False',
      reason: 'MachinesUnhealthy',
    })
    expect(conditionOf(degraded, 'MachinesReady')?.message).toContain(victim.name)
    const [repair] = await repairOps()
    expect(repair).toBeDefined()
    expect(repair!.params).toEqual({ unhealthy: [victim.name] })
    expect(repair!.requestedBy).toBe('system:health')
    expect(degraded.activeOperationId).toBe(repair!.id)

    const done = await waitForOperation(stack.app, repair!.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.steps[0]!.message).toBe(`Replaced ${victim.name}.`)

    const after = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(after).toHaveLength(before.length)
    // The dead machine's row is gone and its hardware is no longer allocated; a new machine (a new
    // row on other hardware) stands in its place.
    expect(after.map((m) => m.id)).not.toContain(victim.id)
    expect(after.map((m) => m.externalId)).not.toContain(victim.externalId)
    const replacement = after.find((m) => !before.some((b) => b.id === m.id))
    expect(replacement).toMatchObject({ role: 'worker', phase: 'Running', nodeGroupId: victim.nodeGroupId })
    expect(replacement!.externalId).toBeTruthy()
    // Names carry the operation that created the machine, so the replacement's is its own.
    expect(replacement!.name).not.toBe(victim.name)
    expect(after.map((m) => m.name)).not.toContain(victim.name)
    // Every other machine was kept as it was.
    for (const m of before.filter((b) => b.id !== victim.id)) expect(after.map((a) => a.id)).toContain(m.id)

    const healthy = await getCluster(stack.app, 'web')
    expect(healthy.status.phase).toBe('Ready')
    expect(conditionOf(healthy, 'Ready')?.status).toBe('True')
    expect(conditionOf(healthy, 'MachinesReady')?.status).toBe('True')
    expect(healthy.activeOperationId).toBeNull()

    // Observed again: healthy, nothing more to repair.
    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await repairOps()).toHaveLength(1)
  })

  it('does not repair when more than 40 % of the machines are down: MachinesReady False, RepairBlocked', async () => {
    const machines = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(machines).toHaveLength(4)
    const victims = machines.filter((m) => m.role === 'worker').slice(0, 2) // 2 of 4 = 50 %
    for (const m of victims) await sim.killMachine(m.name)

    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await repairOps()).toHaveLength(1) // only the earlier one
    const c = await getCluster(stack.app, 'web')
    expect(c.activeOperationId).toBeNull()
    expect(conditionOf(c, 'MachinesReady')).toMatchObject({ status: 'False', reason: 'RepairBlocked' })
    for (const m of victims) expect(conditionOf(c, 'MachinesReady')?.message).toContain(m.name)
    expect(conditionOf(c, 'Ready')?.status).toBe('False')
    expect(c.status.phase).toBe('Degraded')

    // Still blocked on the next pass, and still no repair; the machines stay recorded.
    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await repairOps()).toHaveLength(1)
    expect((await expectBooksAgree(stack.db, sim, cluster.id)).map((m) => m.id)).toEqual(
      machines.map((m) => m.id),
    )
  })
})
