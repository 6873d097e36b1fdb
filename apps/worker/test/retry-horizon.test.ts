import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { EngineOptions } from '../../../apps/worker/src/engine.ts'
import type { SimulatorConfig } from '../../../packages/drivers/src/index.ts'
import { redisUrl } from '../../../test/support/api.ts'
import { startTestStack, type TestStack } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  createCluster,
  eventually,
  getOperation,
  type OperationBody,
  type StepBody,
  waitForOperation,
} from './support.ts'

// Retries that outlast a backend outage, on the real engine and API: a failing step is retried over a
// time horizon (not a fixed number of attempts), the wait is visible on the operation, and the
// BullMQ job sleeps in the delayed set until the next attempt.

/** A data centre whose every mutating call fails retryably (ERR_TRANSIENT): an outage. */
const down = (machineClass: string, over: Partial<SimulatorConfig> = {}): SimulatorConfig => ({
  ...over,
  zones: ['zone-a', 'zone-b'],
  racksPerZone: 1,
  machineClasses: [{ name: machineClass, cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, perRack: 5 }],
  faults: { seed: 1, callFailureRate: 1 },
})

let stack: TestStack
let redis: Redis

beforeAll(async () => {
  stack = await startTestStack({ engine: false })
  redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
})

afterEach(async () => {
  await stack.stopEngine()
})

afterAll(async () => {
  redis?.disconnect()
  await stack?.close()
})

const startEngine = (over: Partial<EngineOptions>) => stack.startEngine(over)

/** An outage of backend `name` (and its template `name-k8s`), which `recover` ends. */
async function anOutage(name: string, over: Partial<SimulatorConfig> = {}) {
  const machineClass = `${name}.vm`
  const { backend } = await aSimulatedBackend(stack.db, name, down(machineClass, over), {
    name: `${name}-k8s`,
    nodeGroups: [{ name: 'workers', machineClass, count: 1, minCount: 1, maxCount: 3 }],
  })
  return {
    template: `${name}-k8s`,
    // A new configuration: the worker's driver cache builds a driver without faults for the next call.
    recover: () =>
      stack.db.backend.update({
        where: { id: backend.id },
        data: { config: { ...(backend.config as object), faults: { seed: 1, callFailureRate: 0 } } },
      }),
  }
}

const retryingStep = (op: OperationBody): StepBody | undefined => op.steps.find((s) => s.retry)

describe('retries over a time horizon', () => {
  it('shows a waiting step on GET /v1/operations/{id}, keeps its job delayed until the next attempt, and resumes after the outage', async () => {
    const engine = await startEngine({
      retryBaseDelayMs: 1500,
      retryMaxDelayMs: 1500,
      retryHorizonMs: 60_000,
    })
    const outage = await anOutage('visible')
    const accepted = await createCluster(stack.app, { name: 'visible', template: outage.template })

    const { op, step, seenAt } = await eventually(
      'a step waiting to retry',
      async () => {
        const op = await getOperation(stack.app, accepted.id)
        const step = retryingStep(op)
        return step ? { op, step, seenAt: Date.now() } : undefined
      },
      20_000,
      25,
    )
    expect(op.status).toBe('running')
    const retry = step.retry!
    expect(step.status).toBe('running')
    expect(retry.attempts).toBeGreaterThanOrEqual(1)
    expect(retry.lastError.code).toBe('ERR_TRANSIENT')
    expect(retry.lastError.message).toMatch(/^Simulated fault in \w+/)
    // 0.75–1.5 s after the failure; read within a poll of it.
    expect(Date.parse(retry.nextAttemptAt)).toBeGreaterThan(seenAt)
    expect(Date.parse(retry.giveUpAt)).toBe(Date.parse(retry.since) + 60_000)
    expect(step.message).toMatch(
      /^Waiting for the backend \(ERR_TRANSIENT: Simulated fault in \w+.*\); attempt \d+ failed, next at \d\d:\d\d:\d\dZ, gives up at \d\d:\d\d:\d\dZ\.$/,
    )

    // The job sleeps in BullMQ's delayed set until the next attempt, and the lease runs until then.
    const queue = engine.producer.queue('operations')
    const job = await queue.getJob(`op-${accepted.id}`)
    expect(await job!.getState()).toBe('delayed')
    const score = await redis.zscore(`${stack.prefix}:operations:delayed`, `op-${accepted.id}`)
    // BullMQ scores a delayed job by its due time in ms, times 4096 (plus a counter).
    expect(Math.abs(Math.floor(Number(score) / 0x1000) - Date.parse(retry.nextAttemptAt))).toBeLessThan(100)
    const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
    expect(row.leaseOwner).toBeNull()
    expect(row.leaseUntil?.toISOString()).toBe(retry.nextAttemptAt)

    await outage.recover()
    const done = await waitForOperation(stack.app, accepted.id, 60_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.steps.every((s) => !s.retry)).toBe(true)
  })

  it('a cancel of an operation waiting for its next attempt is honoured at once, not when the backoff ends', async () => {
    await startEngine({ retryBaseDelayMs: 20_000, retryMaxDelayMs: 20_000, retryHorizonMs: 600_000 })
    const outage = await anOutage('impatient')
    const accepted = await createCluster(stack.app, { name: 'impatient', template: outage.template })
    const waiting = await eventually(
      'a step waiting to retry',
      async () => retryingStep(await getOperation(stack.app, accepted.id)),
      20_000,
      25,
    )
    // The next attempt is 10–20 s away.
    expect(Date.parse(waiting.retry!.nextAttemptAt) - Date.now()).toBeGreaterThan(5_000)
    const asked = Date.now()
    const res = await stack.app.inject({ method: 'POST', url: `/v1/operations/${accepted.id}/cancel` })
    expect(res.statusCode, res.body).toBe(200)
    const done = await waitForOperation(stack.app, accepted.id, 20_000)
    expect(done.status).toBe('cancelled')
    expect(Date.now() - asked).toBeLessThan(5_000)
    await outage.recover()
  })

  it('keeps retrying past the old 8 attempts within the horizon: the step succeeds on attempt 12', async () => {
    await startEngine({ retryBaseDelayMs: 300, retryMaxDelayMs: 300, retryHorizonMs: 60_000 })
    const outage = await anOutage('patient')
    const accepted = await createCluster(stack.app, { name: 'patient', template: outage.template })
    // The outage ends after the 11th failed attempt.
    await eventually(
      'the 11th failed attempt',
      async () => {
        const op = await getOperation(stack.app, accepted.id)
        expect(op.status).not.toBe('failed')
        return (retryingStep(op)?.retry?.attempts ?? 0) >= 11 ? true : undefined
      },
      30_000,
      10,
    )
    await outage.recover()
    const done = await waitForOperation(stack.app, accepted.id, 60_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
    expect(row.attempts).toBeGreaterThanOrEqual(11)
  })

  it('fails the operation once a step has failed for longer than the horizon ("Gave up after"), and a platform error at once', async () => {
    await startEngine({ retryBaseDelayMs: 50, retryMaxDelayMs: 300, retryHorizonMs: 3000 })
    // Kiln's catalogue offers a machine class the data centre no longer has: there is no capacity
    // for it, which waiting would not change.
    const { backend } = await aSimulatedBackend(stack.db, 'refusing', down('refusing.vm'), {
      name: 'refusing-k8s',
      nodeGroups: [{ name: 'workers', machineClass: 'refusing.vm', count: 1, minCount: 1, maxCount: 3 }],
    })
    await stack.db.backend.update({
      where: { id: backend.id },
      data: {
        config: {
          ...(backend.config as object),
          machineClasses: [
            { name: 'other.vm', cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, perRack: 5 },
          ],
          faults: { seed: 1, callFailureRate: 0 },
        },
      },
    })
    const refusal = await createCluster(stack.app, { name: 'refused', template: 'refusing-k8s' })
    const refused = await waitForOperation(stack.app, refusal.id, 30_000)
    expect(refused.status).toBe('failed')
    expect(refused.error).toMatchObject({ code: 'ERR_CAPACITY', reason: 'platform', status: 503 })
    expect(refused.error!.detail).not.toMatch(/Gave up/)
    const refusedRow = await stack.db.operation.findUniqueOrThrow({ where: { id: refusal.id } })
    expect(refusedRow.attempts).toBe(0)
    expect(refused.steps.every((s) => !s.retry)).toBe(true)

    const outage = await anOutage('hopeless')
    const accepted = await createCluster(stack.app, { name: 'hopeless', template: outage.template })
    const done = await waitForOperation(stack.app, accepted.id, 30_000)
    expect(done.status).toBe('failed')
    expect(done.error).toMatchObject({ code: 'ERR_TRANSIENT', reason: 'platform', status: 503 })
    expect(done.error!.detail).toMatch(/^Gave up after \d+ attempts over 3 s: Simulated fault in \w+/)
    const failed = done.steps.find((s) => s.status === 'failed')!
    expect(failed.message).toBe(done.error!.detail)
    expect(failed.retry ?? null).toBeNull()
    const attempts = Number(/^Gave up after (\d+)/.exec(done.error!.detail)![1])
    const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
    expect(row.attempts).toBe(attempts)
    expect(row.finishedAt!.getTime() - row.startedAt!.getTime()).toBeGreaterThanOrEqual(3000)
  })

  it('survives losing its job with the Redis data mid-attempt: logged as expected, re-created when the next attempt is due', async () => {
    const logs: Record<string, unknown>[] = []
    const engine = await startEngine({
      retryBaseDelayMs: 500,
      retryMaxDelayMs: 500,
      retryHorizonMs: 60_000,
      log: (event) => logs.push(event),
    })
    // Each allocation takes a second before it fails: time to lose the job while it runs.
    const outage = await anOutage('flushed', { latency: { ensureMachines: { minMs: 1000, maxMs: 1000 } } })
    const accepted = await createCluster(stack.app, { name: 'flushed', template: outage.template })
    const queue = engine.producer.queue('operations')
    await eventually(
      'the allocation to be under way',
      async () => {
        const op = await getOperation(stack.app, accepted.id)
        const running = op.steps.find((s) => s.name === 'allocate-machines')?.status === 'running'
        const job = await queue.getJob(`op-${accepted.id}`)
        return running && (await job?.getState()) === 'active' ? true : undefined
      },
      20_000,
      20,
    )
    // What FLUSHALL does to this stack (only its own keys: other tests share the Redis).
    const keys = await redis.keys(`${stack.prefix}:*`)
    await redis.del(...keys)

    // The attempt fails, its job cannot be parked (its keys are gone), yet the operation waits on,
    // and the dispatcher re-creates the job once the next attempt is due.
    await eventually(
      'a second attempt, from a re-created job',
      async () => {
        const op = await getOperation(stack.app, accepted.id)
        expect(op.status).toBe('running')
        return (retryingStep(op)?.retry?.attempts ?? 0) >= 2 ? true : undefined
      },
      20_000,
      20,
    )
    expect(logs).toContainEqual(
      expect.objectContaining({
        level: 'info',
        msg: 'job lost with Redis data; the dispatcher re-creates it',
      }),
    )
    expect(logs.filter((l) => l.level === 'error')).toEqual([])
    await outage.recover()
    const done = await waitForOperation(stack.app, accepted.id, 60_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(logs.filter((l) => l.level === 'error')).toEqual([])
  })
})
