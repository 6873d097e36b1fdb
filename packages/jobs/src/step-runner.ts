import { type Database, isDatabaseUnavailable, type Operation, type Prisma, type Tx } from '@kiln/db'
import { isTerminal, type OperationStep, type QueuedOperationKind, type StepRetry } from '@kiln/domain'
import { backoffDelay } from './catalogue.ts'

export type ErrorClass = 'retryable' | 'user' | 'platform'

export interface ClassifiedError {
  errorClass: ErrorClass
  /** A stable code, e.g. ERR_CAPACITY. */
  code: string
  message: string
}

export interface StepContext {
  db: Database
  /** The operation as read at the start of this step. */
  operation: Operation
}

export interface StepResult {
  message?: string
  /** The step had nothing to do for this operation (e.g. a feature not installed yet). */
  skipped?: boolean
}

export type StepHandler = (ctx: StepContext) => Promise<StepResult | undefined>

export interface OperationProblem {
  type: string
  title: string
  status: number
  detail: string
  instance: string
  requestId: string
  code: string
  reason: ErrorClass
  step: string
}

export type Outcome =
  | { status: 'succeeded' }
  | { status: 'cancelled' }
  | { status: 'failed'; step: string; error: OperationProblem }

export interface OperationDefinition {
  /** One handler per step name in the operation catalogue. */
  steps: Record<string, StepHandler>
  /** Runs in the transaction that ends the operation: the cluster's new status, freeing it. */
  finish(tx: Tx, operation: Operation, outcome: Outcome): Promise<void>
}

export type OperationDefinitions = Record<QueuedOperationKind, OperationDefinition>

/** The job should run again later (transient failure); nothing was lost. */
export class RetryLater extends Error {
  constructor(
    message: string,
    cause: unknown,
    /** When the step's next attempt is due; absent: as soon as the queue's own backoff allows. */
    readonly retryAt?: Date,
  ) {
    super(message, { cause })
    this.name = 'RetryLater'
  }
}

/** Another worker holds the operation now; this run must stop writing. */
export class LeaseLost extends Error {
  constructor(operationId: string) {
    super(`Lost the lease on operation ${operationId}`)
    this.name = 'LeaseLost'
  }
}

export type RunResult =
  | { state: 'finished'; outcome: Outcome['status'] }
  | { state: 'already-finished' }
  | { state: 'busy'; retryAfterMs: number }

export interface RunnerOptions {
  workerId: string
  /** How long a lease lasts without a heartbeat. */
  leaseMs?: number
  /**
   * Retryable failures of one step, in one streak, before the next one is final. Undefined: only
   * the horizon limits retries (tests set it to make a step give up fast).
   */
  maxAttempts?: number
  /** How long a step may keep failing retryably, without a success between, before it gives up. */
  retryHorizonMs?: number
  /** The first retry's delay (jittered); it doubles per attempt up to retryMaxDelayMs. */
  retryBaseDelayMs?: number
  retryMaxDelayMs?: number
  classify(error: unknown): ClassifiedError
  /** Hears about each run's steps and end (metrics); it must not throw. */
  observer?: RunObserver
  /** Runs each step's handler (the worker traces and logs it there); default: just runs it. */
  aroundStep?: <T>(operation: Operation, step: string, run: () => Promise<T>) => Promise<T>
}

/** How one run of a step ended: `retrying` is a retryable failure that will be tried again. */
export type StepOutcome = 'succeeded' | 'skipped' | 'failed' | 'retrying'

export interface RunObserver {
  /**
   * A run holds the lease and is about to run its first step. `firstRun`: the operation just left
   * pending; `leaseExpired`: another worker held it and stopped renewing its lease.
   */
  run(
    operation: Operation,
    event: { firstRun: boolean; leaseExpired: boolean },
  ): Promise<RunRecorder> | RunRecorder
}

export interface RunRecorder {
  step(name: string, outcome: StepOutcome, seconds: number): void
  /** The operation ended (committed); `errorClass` is the final one, `none` unless it failed. */
  finished(outcome: Outcome['status'], errorClass: ErrorClass | 'none'): void
}

const silentRecorder: RunRecorder = { step() {}, finished() {} }

const statusFor: Record<ErrorClass, number> = { user: 422, platform: 503, retryable: 503 }

/** The problem `type` and status an operation that failed with `error` stores (registered in the API). */
export function operationProblemType(error: ClassifiedError): { type: string; status: number } {
  return {
    type: `https://kiln.dev/problems/${error.code.toLowerCase().replace(/_/g, '-')}`,
    status: statusFor[error.errorClass],
  }
}

function progressOf(steps: OperationStep[]): number {
  const done = steps.filter((s) => s.status === 'succeeded' || s.status === 'skipped').length
  return steps.length === 0 ? 100 : Math.round((done / steps.length) * 100)
}

const json = (v: unknown) => v as Prisma.InputJsonValue

export const retryDefaults = { horizonMs: 30 * 60_000, baseDelayMs: 1000, maxDelayMs: 30_000 }

/** "13:22:05Z": the time of day of a retry or repair, short enough to read in a message. */
export const clockOf = (iso: string) => `${iso.slice(11, 19)}Z`

/** "850 ms", "42 s", "30 min", "2 h 5 min". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  const minutes = Math.round(ms / 60_000)
  return `${Math.floor(minutes / 60)} h${minutes % 60 ? ` ${minutes % 60} min` : ''}`
}

/** What a step waiting on a retryable failure is waiting for, in words. */
function waitingFor(code: string): string {
  if (code.startsWith('ERR_ADDON_')) return "the cluster's API server"
  if (code === 'ERR_INTERNAL') return 'a transient failure to clear'
  return 'the backend'
}

export function retryMessage(retry: StepRetry): string {
  const { code, message } = retry.lastError
  return (
    `Waiting for ${waitingFor(code)} (${code}: ${message}); attempt ${retry.attempts} failed, ` +
    `next at ${clockOf(retry.nextAttemptAt)}, gives up at ${clockOf(retry.giveUpAt)}.`
  )
}

/**
 * Runs an operation's steps in order, from the first that has not succeeded. Each step's result
 * is checkpointed in Postgres before the next starts. Every write is fenced by the lease: a worker
 * that lost its lease (it stalled, another took over) can no longer change the operation.
 */
export async function runOperation(
  db: Database,
  operationId: string,
  definitions: OperationDefinitions,
  options: RunnerOptions,
): Promise<RunResult> {
  const leaseMs = options.leaseMs ?? 15_000
  const { maxAttempts } = options
  const horizonMs = options.retryHorizonMs ?? retryDefaults.horizonMs
  const baseDelayMs = options.retryBaseDelayMs ?? retryDefaults.baseDelayMs
  const maxDelayMs = options.retryMaxDelayMs ?? retryDefaults.maxDelayMs
  const { workerId } = options

  const before = await db.operation.findUnique({ where: { id: operationId } })
  if (!before || isTerminal(before.status)) return { state: 'already-finished' }
  // A delete may wait for an operation it superseded to stop at its next step boundary.
  if (before.clusterId) {
    const earlier = await db.operation.findFirst({
      where: {
        clusterId: before.clusterId,
        id: { not: before.id },
        status: 'running',
        createdAt: { lt: before.createdAt },
      },
    })
    if (earlier) return { state: 'busy', retryAfterMs: 500 }
  }

  const acquired = await db.$executeRaw`
    UPDATE "Operation"
    SET "leaseOwner" = ${workerId}, "leaseUntil" = now() + ${leaseMs} * interval '1 millisecond',
        status = 'running', "startedAt" = COALESCE("startedAt", now()), "updatedAt" = now()
    WHERE id = ${operationId}::uuid AND status IN ('pending', 'running')
      AND ("leaseUntil" IS NULL OR "leaseUntil" < now() OR "leaseOwner" = ${workerId})`
  if (acquired === 0) {
    const op = await db.operation.findUnique({ where: { id: operationId } })
    if (!op || isTerminal(op.status)) return { state: 'already-finished' }
    return {
      state: 'busy',
      retryAfterMs: Math.max(100, (op.leaseUntil?.getTime() ?? Date.now()) - Date.now() + 50),
    }
  }

  // Metrics must never fail an operation: an observer that cannot answer records nothing.
  const { observer } = options
  const recorder = observer
    ? await Promise.resolve()
        .then(() =>
          observer.run(before, {
            firstRun: before.startedAt === null,
            leaseExpired:
              before.leaseOwner !== null &&
              before.leaseOwner !== workerId &&
              (before.leaseUntil?.getTime() ?? 0) < Date.now(),
          }),
        )
        .catch(() => silentRecorder)
    : silentRecorder

  let lost = false
  const heartbeat = setInterval(
    () => {
      db.operation
        .updateMany({
          where: { id: operationId, leaseOwner: workerId },
          data: { leaseUntil: new Date(Date.now() + leaseMs) },
        })
        .then(({ count }) => {
          if (count === 0) lost = true
        })
        .catch(() => {
          // A missed heartbeat only shortens the lease; the next one may succeed.
        })
    },
    Math.max(50, Math.floor(leaseMs / 3)),
  )

  const fenced = async (data: Prisma.OperationUpdateManyMutationInput, tx: Database | Tx = db) => {
    const { count } = await tx.operation.updateMany({
      where: { id: operationId, leaseOwner: workerId },
      data,
    })
    if (count === 0) throw new LeaseLost(operationId)
  }

  const finish = async (
    op: Operation,
    steps: OperationStep[],
    outcome: Outcome,
    extra: Prisma.OperationUpdateManyMutationInput = {},
  ): Promise<RunResult> => {
    const finalSteps =
      outcome.status === 'succeeded'
        ? steps
        : steps.map((s) => (s.status === 'pending' ? { ...s, status: 'skipped' as const } : s))
    await db.$transaction(
      async (tx) => {
        await fenced(
          {
            status: outcome.status,
            finishedAt: new Date(),
            steps: json(finalSteps),
            // Steps a cancel or failure skipped never ran: they are not progress.
            progress: outcome.status === 'succeeded' ? 100 : progressOf(steps),
            error: outcome.status === 'failed' ? json(outcome.error) : undefined,
            leaseOwner: null,
            leaseUntil: null,
            ...extra,
          },
          tx,
        )
        await definitions[op.kind as QueuedOperationKind].finish(tx, op, outcome)
      },
      { timeout: 20_000 },
    )
    recorder.finished(outcome.status, outcome.status === 'failed' ? outcome.error.reason : 'none')
    return { state: 'finished', outcome: outcome.status }
  }

  /**
   * The one write per step boundary: records the steps (one done, the next running) and reads back,
   * in the same fenced statement, whether a cancel was asked for meanwhile.
   */
  const checkpoint = async (steps: OperationStep[]): Promise<{ cancelRequested: boolean }> => {
    const rows = await db.$queryRaw<{ cancelRequested: boolean }[]>`
      UPDATE "Operation" SET steps = ${JSON.stringify(steps)}::jsonb, progress = ${progressOf(steps)}, "updatedAt" = now()
      WHERE id = ${operationId}::uuid AND "leaseOwner" = ${workerId}
      RETURNING "cancelRequested"`
    if (!rows[0]) throw new LeaseLost(operationId)
    return rows[0]
  }
  const nextStep = (steps: OperationStep[], from: number) =>
    steps.findIndex((s, j) => j >= from && s.status !== 'succeeded' && s.status !== 'skipped')

  try {
    const definition = definitions[before.kind as QueuedOperationKind]
    // Read once: handlers use its identity and parameters, which do not change while it runs.
    const op = await db.operation.findUniqueOrThrow({ where: { id: operationId } })
    const steps = [...(op.steps as unknown as OperationStep[])]
    let i = nextStep(steps, 0)
    if (i === -1) return await finish(op, steps, { status: 'succeeded' })
    steps[i] = {
      ...steps[i]!,
      status: 'running',
      startedAt: steps[i]!.startedAt ?? new Date().toISOString(),
      finishedAt: null,
    }
    let { cancelRequested } = await checkpoint(steps)
    for (;;) {
      const step = steps[i]!
      if (lost) throw new LeaseLost(operationId)
      if (cancelRequested) {
        // The step marked running never started: it is skipped with the rest.
        steps[i] = { ...step, status: 'pending', startedAt: null, retry: null }
        return await finish(op, steps, { status: 'cancelled' })
      }
      const handler = definition.steps[step.name]
      if (!handler) throw new Error(`No handler for step ${step.name} of ${op.kind}`)
      const stepStarted = performance.now()
      const seconds = () => (performance.now() - stepStarted) / 1000
      try {
        const run = () => handler({ db, operation: op })
        const result = await (options.aroundStep ? options.aroundStep(op, step.name, run) : run())
        recorder.step(step.name, result?.skipped ? 'skipped' : 'succeeded', seconds())
        if (lost) throw new LeaseLost(operationId)
        // A success ends the step's failure streak: the next failure starts a fresh horizon.
        steps[i] = {
          ...step,
          status: result?.skipped ? 'skipped' : 'succeeded',
          finishedAt: new Date().toISOString(),
          message: result?.message ?? '',
          retry: null,
        }
      } catch (error) {
        if (error instanceof LeaseLost || error instanceof RetryLater) throw error
        if (isDatabaseUnavailable(error)) throw new RetryLater('PostgreSQL is unavailable', error)
        const c = options.classify(error)
        const retrying = c.errorClass === 'retryable'
        // Attempts count failures, not runs: a worker killed mid-step costs no attempt.
        const failures = op.attempts + 1
        const now = Date.now()
        const streak = step.retry ?? null
        const attempts = (streak?.attempts ?? 0) + 1
        const since = streak ? Date.parse(streak.since) : now
        const giveUpAt = since + horizonMs
        const withinBudget = now < giveUpAt && (maxAttempts === undefined || attempts < maxAttempts)
        recorder.step(step.name, retrying && withinBudget ? 'retrying' : 'failed', seconds())
        if (retrying && withinBudget) {
          // The last attempt falls on the horizon rather than past it.
          const nextAttemptAt = Math.min(giveUpAt, now + backoffDelay(attempts - 1, baseDelayMs, maxDelayMs))
          const retry: StepRetry = {
            attempts,
            since: new Date(since).toISOString(),
            nextAttemptAt: new Date(nextAttemptAt).toISOString(),
            giveUpAt: new Date(giveUpAt).toISOString(),
            lastError: { code: c.code, message: c.message },
          }
          steps[i] = { ...step, message: retryMessage(retry), retry }
          // The lease is given back but runs until the next attempt: the dispatcher leaves the
          // operation alone meanwhile, any worker's delayed job may take it then, and after a Redis
          // flush the dispatcher re-creates the job once that time has come.
          await fenced({
            steps: json(steps),
            leaseOwner: null,
            leaseUntil: new Date(nextAttemptAt),
            attempts: failures,
          })
          throw new RetryLater(c.message, error, new Date(nextAttemptAt))
        }
        // A retryable failure past its horizon (or attempt cap) is final now: the platform team must look.
        const final: ClassifiedError =
          c.errorClass === 'retryable'
            ? {
                ...c,
                errorClass: 'platform',
                message: `Gave up after ${attempts} attempts over ${formatDuration(now - since)}: ${c.message}`,
              }
            : c
        steps[i] = {
          ...step,
          status: 'failed',
          finishedAt: new Date().toISOString(),
          message: final.message,
          retry: null,
        }
        const problem = operationProblemType(final)
        return await finish(
          op,
          steps,
          {
            status: 'failed',
            step: step.name,
            error: {
              type: problem.type,
              title: `Step ${step.name} failed`,
              status: problem.status,
              detail: final.message,
              instance: `/v1/operations/${operationId}`,
              requestId: operationId,
              code: final.code,
              reason: final.errorClass,
              step: step.name,
            },
          },
          c.errorClass === 'retryable' ? { attempts: failures } : {},
        )
      }
      const next = nextStep(steps, i + 1)
      if (next === -1) break
      steps[next] = {
        ...steps[next]!,
        status: 'running',
        startedAt: steps[next]!.startedAt ?? new Date().toISOString(),
        finishedAt: null,
      }
      ;({ cancelRequested } = await checkpoint(steps))
      i = next
    }
    return await finish(op, steps, { status: 'succeeded' })
  } catch (error) {
    if (error instanceof LeaseLost || error instanceof RetryLater) throw error
    if (isDatabaseUnavailable(error)) throw new RetryLater('PostgreSQL is unavailable', error)
    throw error
  } finally {
    clearInterval(heartbeat)
  }
}
