import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lockCluster, startClusterOperation } from '../../../packages/db/src/index.ts'
import type { SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  conditionOf,
  createReady,
  eventually,
  expectBooksAgree,
  getCluster,
  getOperation,
  simulatorFor,
  simulatorNames,
  sleep,
  waitForOperation,
} from './support.ts'

// Repair acts on evidence, not on silence: what the backend reports failed is replaced at once,
// anything else only once it has lasted the grace period; a release that did not finish is finished.
// The health checker is driven by hand (the periodic loop is off).

const graceMs = 2500
const config = testDataCentre()
let stack: TestStack
let sim: SimulatorDriver
let cluster: ClusterBody

const repairOps = () =>
  stack.db.operation.findMany({
    where: { clusterId: cluster.id, kind: 'cluster.repair' },
    orderBy: { createdAt: 'asc' },
  })
/** As a node that stopped reporting would look: allocated at the backend, no longer joined. */
const unjoin = (name: string) =>
  stack.db.$executeRawUnsafe(
    `UPDATE simulator.machines SET state = 'allocated' WHERE allocated_to = $1`,
    name,
  )
const rejoin = (name: string) =>
  stack.db.$executeRawUnsafe(`UPDATE simulator.machines SET state = 'joined' WHERE allocated_to = $1`, name)
const aWorker = async () =>
  (await expectBooksAgree(stack.db, sim, cluster.id)).find((m) => m.role === 'worker')!
const rowOf = (id: string) => stack.db.machine.findUniqueOrThrow({ where: { id } })

beforeAll(async () => {
  stack = await startTestStack({ engine: { healthIntervalMs: 0, repairGraceMs: graceMs } })
  await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  sim = simulatorFor(stack, 'sim', config)
  cluster = await createReady(stack.app, 'evidence', 'k8s-1.31')
}, 60_000)

afterAll(async () => {
  await sim?.close()
  await stack?.close()
})

describe('a machine the backend does not call failed', () => {
  it('is kept while it recovers within the grace period', async () => {
    const worker = await aWorker()
    await unjoin(worker.name)
    expect(await stack.engine!.observeOnce()).toBe(0)
    const waiting = await getCluster(stack.app, 'evidence')
    expect(conditionOf(waiting, 'MachinesReady')).toMatchObject({
      status: 'False',
      reason: 'MachinesUnhealthy',
    })
    expect(conditionOf(waiting, 'MachinesReady')?.message).toMatch(
      new RegExp(`${worker.name}: NotJoined \\(replaced at \\d\\d:\\d\\d:\\d\\dZ unless it recovers\\)`),
    )
    expect(waiting.status.phase).toBe('Degraded')
    const noted = await rowOf(worker.id)
    expect(noted).toMatchObject({ health: 'Unhealthy', healthReason: 'NotJoined' })
    expect(noted.unhealthySince).toBeInstanceOf(Date)

    await rejoin(worker.name)
    expect(await stack.engine!.observeOnce()).toBe(0)
    const recovered = await getCluster(stack.app, 'evidence')
    expect(recovered.status.phase).toBe('Ready')
    expect(await rowOf(worker.id)).toMatchObject({ health: 'Healthy', unhealthySince: null })
    // The grace period ran from the first sighting; a recovered machine starts none.
    await sleep(graceMs + 200)
    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await repairOps()).toHaveLength(0)
  })

  it('is replaced once it has stayed unhealthy for the grace period, not before', async () => {
    const worker = await aWorker()
    await unjoin(worker.name)
    const firstSeen = Date.now()
    expect(await stack.engine!.observeOnce()).toBe(0)
    const repairs = await eventually(
      'the grace period to pass',
      async () => ((await stack.engine!.observeOnce()) === 1 ? Date.now() : undefined),
      graceMs * 4,
      200,
    )
    expect(repairs - firstSeen).toBeGreaterThanOrEqual(graceMs)
    const [repair] = await repairOps()
    expect(repair!.params).toEqual({ unhealthy: [worker.name] })
    const done = await waitForOperation(stack.app, repair!.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.steps[0]!.message).toBe(`Replaced ${worker.name}.`)
    const after = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(after.map((m) => m.name)).not.toContain(worker.name)
    expect((await getCluster(stack.app, 'evidence')).status.phase).toBe('Ready')
  })
})

describe('a release that did not finish', () => {
  it('keeps the cluster from claiming Ready and is finished by a repair', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const worker = before.find((m) => m.role === 'worker')!
    // As a repair leaves a machine whose release the backend failed: marked, still held outside.
    await stack.db.machine.update({ where: { id: worker.id }, data: { phase: 'Releasing' } })
    expect(await stack.engine!.observeOnce()).toBe(1)
    const pending = await getCluster(stack.app, 'evidence')
    expect(conditionOf(pending, 'Ready')).toMatchObject({ status: 'False', reason: 'ReleasePending' })
    expect(conditionOf(pending, 'MachinesReady')?.message).toContain(worker.name)
    const repair = (await repairOps()).at(-1)!
    expect(repair.params).toEqual({ unhealthy: [], unreleased: [worker.name] })
    const done = await waitForOperation(stack.app, repair.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.steps[0]!.message).toContain(`Finished releasing ${worker.name}.`)
    const after = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(after).toHaveLength(before.length)
    expect(after.map((m) => m.name)).not.toContain(worker.name)
    expect(after.every((m) => m.phase === 'Running')).toBe(true)
    const ready = await getCluster(stack.app, 'evidence')
    expect(ready.status.phase).toBe('Ready')
  })
})

describe('a backend that does not answer', () => {
  it('is no evidence: the cluster keeps its machines, shows BackendReachable=False, and nothing is repaired', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const repairs = (await repairOps()).length
    // Broken and silent at once: even a machine that really died waits until the backend can say so.
    const victim = before.find((m) => m.role === 'worker')!
    await sim.killMachine(victim.name)
    await sim.startOutage()
    // Other driver instances (the engine's) re-read the outage at most every 250 ms.
    await sleep(300)
    try {
      for (let i = 0; i < 3; i++) expect(await stack.engine!.observeOnce()).toBe(0)
      const during = await getCluster(stack.app, 'evidence')
      expect(conditionOf(during, 'BackendReachable')).toMatchObject({
        status: 'False',
        reason: 'BackendUnreachable',
      })
      expect(conditionOf(during, 'BackendReachable')?.message).toMatch(
        /^Backend sim did not answer for 4 of 4/,
      )
      expect(conditionOf(during, 'MachinesReady')).toMatchObject({
        status: 'Unknown',
        reason: 'BackendUnreachable',
      })
      expect(during.status.phase).toBe('Ready')
      expect(await repairOps()).toHaveLength(repairs)
      const rows = await stack.db.machine.findMany({ where: { clusterId: cluster.id } })
      expect(rows.map((m) => [m.id, m.phase, m.health]).sort()).toEqual(
        before.map((m) => [m.id, 'Running', 'Unknown']).sort(),
      )
    } finally {
      await sim.endOutage()
    }
    // Answered again: the dead machine is positive evidence now, and only now it is replaced.
    await sleep(300)
    expect(await stack.engine!.observeOnce()).toBe(1)
    const back = await getCluster(stack.app, 'evidence')
    expect(conditionOf(back, 'BackendReachable')).toMatchObject({ status: 'True', reason: 'BackendAnswered' })
    const repair = (await repairOps()).at(-1)!
    expect(repair.params).toEqual({ unhealthy: [victim.name] })
    const done = await waitForOperation(stack.app, repair.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect((await getCluster(stack.app, 'evidence')).status.phase).toBe('Ready')
  })

  it('two failed observations open no repair, and the next answer clears the condition', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const repairs = (await repairOps()).length
    await sim.startOutage({ failObservations: 2 })
    // Other driver instances (the engine's) re-read the outage at most every 250 ms.
    await sleep(300)
    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(await stack.engine!.observeOnce()).toBe(0)
    expect(conditionOf(await getCluster(stack.app, 'evidence'), 'BackendReachable')?.status).toBe('False')
    expect(await stack.engine!.observeOnce()).toBe(0)
    const after = await getCluster(stack.app, 'evidence')
    expect(conditionOf(after, 'BackendReachable')?.status).toBe('True')
    expect(after.status.phase).toBe('Ready')
    expect(await repairOps()).toHaveLength(repairs)
    expect((await expectBooksAgree(stack.db, sim, cluster.id)).map((m) => m.id)).toEqual(
      before.map((m) => m.id),
    )
  })

  it('a repair that finds the backend silent when it looks again releases nothing and waits', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const victim = before.find((m) => m.role === 'worker')!
    await sim.setMaintenance(victim.name, 'fan failure')
    // The health checker sees the failure, then the backend goes silent before the repair looks again.
    await sim.startOutage()
    await sleep(300)
    await stack.db.machine.update({ where: { id: victim.id }, data: { health: 'Unhealthy' } })
    const op = await stack.db.$transaction(async (tx) => {
      const row = await tx.cluster.findUniqueOrThrow({ where: { id: cluster.id } })
      const locked = await lockCluster(tx, row.projectId, cluster.id)
      return startClusterOperation(
        tx,
        { subject: 'system:health', requestId: 'test' },
        locked,
        'cluster.repair',
        {
          unhealthy: [victim.name],
        },
      )
    })
    await stack.engine!.producer.enqueue('run-operation', { operationId: op.id })
    try {
      const waiting = await eventually(
        'the repair to find the backend silent',
        async () => {
          const read = await getOperation(stack.app, op.id)
          return read.steps[0]?.message.includes('ERR_UNAVAILABLE') ? read : undefined
        },
        20_000,
        100,
      )
      expect(waiting.status).toBe('running')
      expect(waiting.steps[0]!.message, waiting.steps[0]!.message).toContain(
        'nothing is replaced until it can',
      )
      expect((await stack.db.machine.findUniqueOrThrow({ where: { id: victim.id } })).phase).toBe('Running')
      expect(await simulatorNames(sim, cluster.id)).toContain(victim.name)
    } finally {
      await sim.endOutage()
    }
    const done = await waitForOperation(stack.app, op.id, 60_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.steps[0]!.message).toBe(`Replaced ${victim.name}.`)
    expect(await simulatorNames(sim, cluster.id)).not.toContain(victim.name)
  })
})
