import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  conditionOf,
  createCluster,
  eventually,
  expectBooksAgree,
  getCluster,
  simulatorFor,
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
  const created = await waitForOperation(
    stack.app,
    (await createCluster(stack.app, { name: 'evidence', template: 'k8s-1.31' })).id,
  )
  expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
  cluster = await getCluster(stack.app, 'evidence')
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
