import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database, Operation } from '../../../packages/db/src/index.ts'
import type { OperationStep } from '../../../packages/domain/src/index.ts'
import {
  type ClassifiedError,
  type ErrorClass,
  LeaseLost,
  type OperationDefinitions,
  type Outcome,
  RetryLater,
  type RunnerOptions,
  type RunResult,
  runOperation,
  type StepHandler,
} from '../../../packages/jobs/src/index.ts'
import { aProject } from '../../../test/support/builders.ts'
import { startTestStack, type TestStack } from '../../../test/support/engine.ts'
import { eventually } from '../../../test/support/eventually.ts'

// The step runner against real Postgres, with small operation definitions of our own: checkpoints,
// lease fencing, error classification, attempt budget and cancellation at step boundaries.

let stack: TestStack
let db: Database
let projectId: string

beforeAll(async () => {
  stack = await startTestStack({ engine: false })
  db = stack.db
  projectId = (await aProject(db, 'runner')).id
})

afterAll(async () => {
  await stack?.close()
})

const KIND = 'cluster.update-features'

class TestError extends Error {
  constructor(
    readonly errorClass: ErrorClass,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

const classify = (error: unknown): ClassifiedError =>
  error instanceof TestError
    ? { errorClass: error.errorClass, code: error.code, message: error.message }
    : { errorClass: 'retryable', code: 'ERR_INTERNAL', message: String(error) }

/** A definition made of the given handlers that records every handler call and every finish. */
function harness(handlers: Record<string, StepHandler>) {
  const calls: string[] = []
  const finished: Outcome[] = []
  const steps: Record<string, StepHandler> = {}
  for (const [name, handler] of Object.entries(handlers)) {
    steps[name] = async (ctx) => {
      calls.push(name)
      return handler(ctx)
    }
  }
  const definitions = {
    [KIND]: {
      steps,
      async finish(_tx, _op, outcome) {
        finished.push(outcome)
      },
    },
  } as OperationDefinitions
  return { calls, finished, definitions }
}

async function anOperation(stepNames: string[]): Promise<Operation> {
  return db.operation.create({
    data: {
      kind: KIND,
      projectId,
      resource: { kind: 'test', id: 'test', name: 'test' },
      steps: stepNames.map((name) => ({
        name,
        status: 'pending',
        startedAt: null,
        finishedAt: null,
        message: '',
      })),
      requestedBy: 'test',
    },
  })
}

const read = (id: string) => db.operation.findUniqueOrThrow({ where: { id } })

/** Short pauses between attempts, so a test waits milliseconds for a step's next attempt. */
const quick = { retryBaseDelayMs: 20, retryMaxDelayMs: 50 }
const withHorizon = (retryHorizonMs: number): RunnerOptions => ({
  workerId: 'w1',
  classify,
  retryHorizonMs,
  ...quick,
})

/**
 * Runs the operation once its next attempt is due, as the engine's delayed job does: a run that
 * comes early is told busy (the lease runs until the next attempt) and comes back when told.
 */
async function runWhenDue(
  id: string,
  definitions: OperationDefinitions,
  options: RunnerOptions,
): Promise<Exclude<RunResult, { state: 'busy' }>> {
  for (;;) {
    const result = await runOperation(db, id, definitions, options)
    if (result.state !== 'busy') return result
    await new Promise((r) => setTimeout(r, result.retryAfterMs))
  }
}

/** Runs the operation, every due attempt, until it finishes; returns how many runs threw RetryLater. */
async function runToEnd(id: string, definitions: OperationDefinitions, options: RunnerOptions) {
  let retries = 0
  for (;;) {
    try {
      return { result: await runWhenDue(id, definitions, options), retries }
    } catch (error) {
      if (!(error instanceof RetryLater)) throw error
      retries++
    }
  }
}
const stepsOf = (op: Operation) => op.steps as unknown as OperationStep[]
const ok =
  (message: string): StepHandler =>
  async () => ({ message })
/** A step that always fails retryably: an outage that does not end. */
const failing =
  (code: string, message: string): StepHandler =>
  async () => {
    throw new TestError('retryable', code, message)
  }

describe('runOperation', () => {
  it('runs every step in order, checkpoints each, finishes once, and does nothing for a finished operation', async () => {
    const op = await anOperation(['one', 'two', 'three'])
    const h = harness({
      one: ok('did one'),
      two: async () => ({ skipped: true, message: 'n/a' }),
      three: ok('did three'),
    })
    const result = await runOperation(db, op.id, h.definitions, { workerId: 'w1', classify })
    expect(result).toEqual({ state: 'finished', outcome: 'succeeded' })
    expect(h.calls).toEqual(['one', 'two', 'three'])
    expect(h.finished).toEqual([{ status: 'succeeded' }])

    const row = await read(op.id)
    expect(row.status).toBe('succeeded')
    expect(row.progress).toBe(100)
    expect(row.attempts).toBe(0) // attempts count failures; there were none
    expect(row.leaseOwner).toBeNull()
    expect(row.leaseUntil).toBeNull()
    expect(row.startedAt).not.toBeNull()
    expect(row.finishedAt).not.toBeNull()
    expect(stepsOf(row).map((s) => [s.name, s.status, s.message])).toEqual([
      ['one', 'succeeded', 'did one'],
      ['two', 'skipped', 'n/a'],
      ['three', 'succeeded', 'did three'],
    ])

    expect(await runOperation(db, op.id, h.definitions, { workerId: 'w2', classify })).toEqual({
      state: 'already-finished',
    })
    expect(h.calls).toHaveLength(3)
    expect(h.finished).toHaveLength(1)
  })

  it('checkpoints: a retryable failure throws RetryLater, records the attempt, and the next run resumes at that step', async () => {
    const op = await anOperation(['one', 'two', 'three'])
    let failures = 1
    const h = harness({
      one: ok('did one'),
      two: async () => {
        if (failures-- > 0) throw new TestError('retryable', 'ERR_FLAKY', 'the backend hiccupped')
        return { message: 'did two' }
      },
      three: ok('did three'),
    })

    const first = runOperation(db, op.id, h.definitions, { workerId: 'w1', classify, ...quick })
    await expect(first).rejects.toBeInstanceOf(RetryLater)
    await expect(first).rejects.toThrow('the backend hiccupped')
    const retryAt = ((await first.catch((e) => e)) as RetryLater).retryAt!
    const mid = await read(op.id)
    expect(mid.status).toBe('running')
    expect(mid.attempts).toBe(1)
    const midSteps = stepsOf(mid)
    expect(midSteps[0]).toMatchObject({ name: 'one', status: 'succeeded', message: 'did one' })
    expect(midSteps[1]!.status).not.toBe('succeeded')
    expect(midSteps[1]!.message).toMatch(
      /^Waiting for the backend \(ERR_FLAKY: the backend hiccupped\); attempt 1 failed, next at \d\d:\d\d:\d\dZ, gives up at \d\d:\d\d:\d\dZ\.$/,
    )
    expect(midSteps[1]!.retry).toMatchObject({
      attempts: 1,
      nextAttemptAt: retryAt.toISOString(),
      lastError: { code: 'ERR_FLAKY', message: 'the backend hiccupped' },
    })
    expect(midSteps[2]).toMatchObject({ name: 'three', status: 'pending' })
    expect(mid.progress).toBe(33)
    // The lease is given back, but runs until the next attempt: any worker may take it then.
    expect(mid.leaseOwner).toBeNull()
    expect(mid.leaseUntil!.getTime()).toBe(retryAt.getTime())
    expect(h.finished).toHaveLength(0)

    const second = await runWhenDue(op.id, h.definitions, { workerId: 'w2', classify, ...quick })
    expect(second).toEqual({ state: 'finished', outcome: 'succeeded' })
    // Step one's handler ran once: its checkpoint was kept.
    expect(h.calls).toEqual(['one', 'two', 'two', 'three'])
    const done = await read(op.id)
    expect(done.attempts).toBe(1) // one failure
    expect(stepsOf(done)[0]!.finishedAt).toBe(midSteps[0]!.finishedAt)
    expect(stepsOf(done)[1]).toMatchObject({ status: 'succeeded', message: 'did two', retry: null })
    expect(h.finished).toEqual([{ status: 'succeeded' }])
  })

  it('fences by lease: a second worker is told busy, takes over once the lease expires, and the first can no longer write', async () => {
    const op = await anOperation(['one', 'two'])
    let release!: () => void
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    let entered!: () => void
    const inside = new Promise<void>((resolve) => {
      entered = resolve
    })
    let oneCalls = 0
    const h = harness({
      one: async () => {
        // The first run stalls inside step one until told to go on; later runs pass straight through.
        if (oneCalls++ === 0) {
          entered()
          await released
          return { message: 'stale result' }
        }
        return { message: 'did one' }
      },
      two: ok('did two'),
    })

    // Worker a's heartbeats can be made to fail, the way they would if it stalled (GC pause, frozen VM).
    let stalled = false
    const stallable = new Proxy(db, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target)
        if (prop === 'operation') {
          return new Proxy(value as object, {
            get(delegate, method) {
              const fn = Reflect.get(delegate, method, delegate)
              if (method !== 'updateMany' || typeof fn !== 'function') return fn
              return (args: { data: Record<string, unknown> }) => {
                const heartbeat = Object.keys(args.data).join() === 'leaseUntil'
                if (stalled && heartbeat) return Promise.reject(new Error('stalled'))
                return fn.call(delegate, args)
              }
            },
          })
        }
        return typeof value === 'function' ? value.bind(target) : value
      },
    }) as Database

    // Leases long enough that a busy machine's slow query never lets one lapse by chance; the test
    // waits for what it needs to see (a heartbeat, an expiry) instead of sleeping a guess.
    const leaseMs = 2000
    const a = runOperation(stallable, op.id, h.definitions, { workerId: 'a', leaseMs, classify })
    a.catch(() => undefined)
    await inside

    // While a holds a live lease (it heartbeats every leaseMs / 3), b is told to come back later.
    const taken0 = (await read(op.id)).leaseUntil!.getTime()
    await eventually('a heartbeat of a', async () =>
      (await read(op.id)).leaseUntil!.getTime() > taken0 ? true : undefined,
    )
    const busy = await runOperation(db, op.id, h.definitions, { workerId: 'b', leaseMs, classify })
    expect(busy.state).toBe('busy')
    if (busy.state === 'busy') {
      expect(busy.retryAfterMs).toBeGreaterThan(0)
      expect(busy.retryAfterMs).toBeLessThanOrEqual(leaseMs + 100)
    }
    expect((await read(op.id)).leaseOwner).toBe('a')

    // a stalls: no more heartbeats, so its lease runs out and b takes the operation over.
    stalled = true
    await eventually('the lease of a to run out', async () =>
      (await read(op.id)).leaseUntil!.getTime() < Date.now() ? true : undefined,
    )
    const taken = await runOperation(db, op.id, h.definitions, { workerId: 'b', leaseMs, classify })
    expect(taken).toEqual({ state: 'finished', outcome: 'succeeded' })

    // a wakes up: its next write is refused and nothing it does reaches the operation.
    stalled = false
    release()
    await expect(a).rejects.toBeInstanceOf(LeaseLost)
    const row = await read(op.id)
    expect(row.status).toBe('succeeded')
    expect(stepsOf(row).map((s) => [s.name, s.status, s.message])).toEqual([
      ['one', 'succeeded', 'did one'],
      ['two', 'succeeded', 'did two'],
    ])
    expect(row.leaseOwner).toBeNull()
    expect(h.finished).toEqual([{ status: 'succeeded' }])
    expect(h.calls).toEqual(['one', 'one', 'two'])
  })

  it('fails at once on a user error: reason user, 422, later steps skipped and never run', async () => {
    const op = await anOperation(['one', 'two', 'three'])
    const h = harness({
      one: ok('did one'),
      two: async () => {
        throw new TestError('user', 'ERR_INVALID_REQUEST', 'machine class m9 does not exist')
      },
      three: ok('did three'),
    })
    const result = await runOperation(db, op.id, h.definitions, { workerId: 'w1', maxAttempts: 8, classify })
    expect(result).toEqual({ state: 'finished', outcome: 'failed' })
    expect(h.calls).toEqual(['one', 'two'])
    const row = await read(op.id)
    expect(row.status).toBe('failed')
    expect(row.attempts).toBe(0) // a user error is not an attempt to retry
    expect(row.error).toMatchObject({
      code: 'ERR_INVALID_REQUEST',
      reason: 'user',
      status: 422,
      step: 'two',
      title: 'Step two failed',
      detail: 'machine class m9 does not exist',
      instance: `/v1/operations/${op.id}`,
      type: 'https://kiln.dev/problems/err-invalid-request',
    })
    expect(stepsOf(row).map((s) => [s.name, s.status])).toEqual([
      ['one', 'succeeded'],
      ['two', 'failed'],
      ['three', 'skipped'],
    ])
    expect(stepsOf(row)[1]!.message).toBe('machine class m9 does not exist')
    expect(row.leaseOwner).toBeNull()
    expect(h.finished).toHaveLength(1)
    expect(h.finished[0]).toMatchObject({ status: 'failed', step: 'two', error: { reason: 'user' } })
  })

  it('fails at once on a platform error, keeping its reason', async () => {
    const op = await anOperation(['one'])
    const h = harness({
      one: async () => {
        throw new TestError('platform', 'ERR_CAPACITY', 'no free machines')
      },
    })
    expect(await runOperation(db, op.id, h.definitions, { workerId: 'w1', classify })).toEqual({
      state: 'finished',
      outcome: 'failed',
    })
    expect((await read(op.id)).error).toMatchObject({ code: 'ERR_CAPACITY', reason: 'platform', status: 503 })
  })

  it('gives up on a retryable failure once the optional maxAttempts are spent: reason platform, "Gave up after"', async () => {
    const op = await anOperation(['one', 'two'])
    const h = harness({ one: failing('ERR_TRANSIENT', 'still flaky'), two: ok('did two') })
    const options = { workerId: 'w1', maxAttempts: 2, classify, ...quick }
    await expect(runOperation(db, op.id, h.definitions, options)).rejects.toBeInstanceOf(RetryLater)
    expect((await read(op.id)).status).toBe('running')
    expect(await runWhenDue(op.id, h.definitions, options)).toEqual({
      state: 'finished',
      outcome: 'failed',
    })
    const row = await read(op.id)
    expect(row.status).toBe('failed')
    expect(row.attempts).toBe(2)
    expect(row.error).toMatchObject({ code: 'ERR_TRANSIENT', reason: 'platform', status: 503, step: 'one' })
    expect((row.error as { detail: string }).detail).toMatch(
      /^Gave up after 2 attempts over \d+ m?s: still flaky$/,
    )
    expect(stepsOf(row).map((s) => [s.name, s.status])).toEqual([
      ['one', 'failed'],
      ['two', 'skipped'],
    ])
    expect(stepsOf(row)[0]!.message).toMatch(/^Gave up after 2 attempts/)
    expect(stepsOf(row)[0]!.retry).toBeNull()
    expect(h.calls).toEqual(['one', 'one'])
    expect(h.finished).toHaveLength(1)
  })

  it('retries a step past the old 8 attempts while within the horizon: it succeeds on attempt 12', async () => {
    const op = await anOperation(['one', 'two'])
    let failures = 11
    const h = harness({
      one: async () => {
        if (failures-- > 0) throw new TestError('retryable', 'ERR_UNAVAILABLE', 'Ironic is unreachable')
        return { message: 'did one' }
      },
      two: ok('did two'),
    })
    const { result, retries } = await runToEnd(op.id, h.definitions, withHorizon(60_000))
    expect(result).toEqual({ state: 'finished', outcome: 'succeeded' })
    expect(retries).toBe(11)
    expect(h.calls).toEqual([...Array(12).fill('one'), 'two'])
    const row = await read(op.id)
    expect(row.attempts).toBe(11) // failed runs in total
    expect(stepsOf(row)[0]).toMatchObject({ status: 'succeeded', message: 'did one', retry: null })
  })

  it('gives each step its own horizon: a streak ends when its step succeeds', async () => {
    const op = await anOperation(['one', 'two'])
    // Each step fails for 1 s, under the 1.5 s horizon; together they fail for longer than it.
    const failFor = (ms: number): StepHandler => {
      let first: number | undefined
      return async () => {
        first ??= Date.now()
        if (Date.now() - first < ms) throw new TestError('retryable', 'ERR_TRANSIENT', 'not yet')
        return { message: 'done' }
      }
    }
    const h = harness({ one: failFor(1000), two: failFor(1000) })
    const started = Date.now()
    let sinceOfTwo: string | undefined
    const options = withHorizon(1500)
    let result: RunResult | undefined
    while (!result) {
      try {
        result = await runWhenDue(op.id, h.definitions, options)
      } catch (error) {
        if (!(error instanceof RetryLater)) throw error
        sinceOfTwo ??= stepsOf(await read(op.id))[1]!.retry?.since
      }
    }
    expect(result).toEqual({ state: 'finished', outcome: 'succeeded' })
    expect(Date.now() - started).toBeGreaterThan(1500)
    const steps = stepsOf(await read(op.id))
    // Step two's streak began after step one had succeeded.
    expect(Date.parse(sinceOfTwo!)).toBeGreaterThanOrEqual(Date.parse(steps[0]!.finishedAt!))
    expect(steps.map((s) => [s.status, s.retry])).toEqual([
      ['succeeded', null],
      ['succeeded', null],
    ])
  })

  it('gives up once a step has been failing for longer than the horizon: "Gave up after N attempts over …"', async () => {
    const op = await anOperation(['one', 'two'])
    const h = harness({ one: failing('ERR_UNAVAILABLE', 'Ironic is unreachable'), two: ok('did two') })
    const started = Date.now()
    const { result, retries } = await runToEnd(op.id, h.definitions, withHorizon(500))
    expect(result).toEqual({ state: 'finished', outcome: 'failed' })
    expect(Date.now() - started).toBeGreaterThanOrEqual(500)
    const row = await read(op.id)
    expect(row.attempts).toBe(retries + 1)
    expect(row.error).toMatchObject({ code: 'ERR_UNAVAILABLE', reason: 'platform', status: 503, step: 'one' })
    // The last attempt falls on the horizon: the streak lasted at least 500 ms.
    expect((row.error as { detail: string }).detail).toMatch(
      new RegExp(`^Gave up after ${retries + 1} attempts over (5\\d\\d ms|\\d+ s): Ironic is unreachable$`),
    )
    expect(stepsOf(row).map((s) => [s.name, s.status, s.retry ?? null])).toEqual([
      ['one', 'failed', null],
      ['two', 'skipped', null],
    ])
  })

  it('fails at once on a user error after retryable failures, ending the retry streak', async () => {
    const op = await anOperation(['one'])
    let calls = 0
    const h = harness({
      one: async () => {
        if (++calls <= 2) throw new TestError('retryable', 'ERR_TRANSIENT', 'hiccup')
        throw new TestError('user', 'ERR_INVALID_REQUEST', 'machine class m9 does not exist')
      },
    })
    const { result, retries } = await runToEnd(op.id, h.definitions, { workerId: 'w1', classify, ...quick })
    expect(result).toEqual({ state: 'finished', outcome: 'failed' })
    expect(retries).toBe(2)
    const row = await read(op.id)
    expect(row.attempts).toBe(2)
    expect(row.error).toMatchObject({ code: 'ERR_INVALID_REQUEST', reason: 'user', status: 422 })
    expect(stepsOf(row)[0]).toMatchObject({
      status: 'failed',
      message: 'machine class m9 does not exist',
      retry: null,
    })
  })

  it('keeps a waiting operation until its next attempt: an early run is told busy, any worker takes it then', async () => {
    const op = await anOperation(['one'])
    let failures = 1
    const h = harness({
      one: async () => {
        if (failures-- > 0) throw new TestError('retryable', 'ERR_TRANSIENT', 'hiccup')
        return { message: 'did one' }
      },
    })
    const slow = { classify, retryBaseDelayMs: 800, retryMaxDelayMs: 800 }
    const failed = await runOperation(db, op.id, h.definitions, { workerId: 'w1', ...slow }).catch((e) => e)
    expect(failed).toBeInstanceOf(RetryLater)
    const retryAt = (failed as RetryLater).retryAt!
    // Full jitter: between half and all of the delay.
    expect(retryAt.getTime()).toBeGreaterThanOrEqual(Date.now() + 100)
    const early = await runOperation(db, op.id, h.definitions, { workerId: 'w2', ...slow })
    expect(early.state).toBe('busy')
    if (early.state === 'busy') {
      expect(early.retryAfterMs).toBeGreaterThan(0)
      expect(Date.now() + early.retryAfterMs).toBeGreaterThanOrEqual(retryAt.getTime())
    }
    expect(h.calls).toEqual(['one'])
    expect(await runWhenDue(op.id, h.definitions, { workerId: 'w2', ...slow })).toEqual({
      state: 'finished',
      outcome: 'succeeded',
    })
    expect(h.calls).toEqual(['one', 'one'])
  })

  it('classifies anything unknown as retryable, so a plain Error is retried, not failed', async () => {
    const op = await anOperation(['one'])
    let failures = 1
    const h = harness({
      one: async () => {
        if (failures-- > 0) throw new Error('socket hang up')
        return { message: 'did one' }
      },
    })
    const options = { workerId: 'w1', classify, ...quick }
    await expect(runOperation(db, op.id, h.definitions, options)).rejects.toBeInstanceOf(RetryLater)
    expect(stepsOf(await read(op.id))[0]!.message).toMatch(
      /^Waiting for a transient failure to clear \(ERR_INTERNAL: Error: socket hang up\); attempt 1 failed/,
    )
    expect(await runWhenDue(op.id, h.definitions, options)).toEqual({
      state: 'finished',
      outcome: 'succeeded',
    })
  })

  it('stops at the next step boundary when cancel is requested: cancelled, the remaining steps skipped and never run', async () => {
    const op = await anOperation(['one', 'two', 'three'])
    const h = harness({
      one: async ({ operation }) => {
        // What POST /cancel does to a running operation, while this step runs.
        await db.operation.update({ where: { id: operation.id }, data: { cancelRequested: true } })
        return { message: 'did one' }
      },
      two: ok('did two'),
      three: ok('did three'),
    })
    const result = await runOperation(db, op.id, h.definitions, { workerId: 'w1', classify })
    expect(result).toEqual({ state: 'finished', outcome: 'cancelled' })
    expect(h.calls).toEqual(['one'])
    const row = await read(op.id)
    expect(row.status).toBe('cancelled')
    expect(row.error).toBeNull()
    expect(row.finishedAt).not.toBeNull()
    expect(row.leaseOwner).toBeNull()
    expect(stepsOf(row).map((s) => [s.name, s.status])).toEqual([
      ['one', 'succeeded'],
      ['two', 'skipped'],
      ['three', 'skipped'],
    ])
    // The skipped steps never started.
    expect(stepsOf(row)[1]!.startedAt).toBeNull()
    expect(h.finished).toEqual([{ status: 'cancelled' }])
  })
})
