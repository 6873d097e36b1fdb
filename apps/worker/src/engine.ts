import { randomUUID } from 'node:crypto'
import { AddonError } from '@kiln/addons'
import { type Database, isDatabaseUnavailable, requestClusterDeletion } from '@kiln/db'
import { DriverError } from '@kiln/drivers'
import {
  backoffDelay,
  type ClassifiedError,
  JobProducer,
  jobCatalogue,
  LeaseLost,
  queueNames,
  RetryLater,
  runOperation,
} from '@kiln/jobs'
import type { MasterKeyring } from '@kiln/pki'
import { createLogger, type Logger, type LogSink, logEvent } from '@kiln/telemetry'
import { type ConnectionOptions, DelayedError, type Job, Worker } from 'bullmq'
import Value from 'typebox/value'
import { type CatalogueSync, syncMachineClasses } from './catalogue.ts'
import { DriverCache } from './driver-cache.ts'
import { healthChecker } from './health.ts'
import type { WorkerMetrics } from './metrics.ts'
import { operationTelemetry } from './operation-telemetry.ts'
import { buildOperationDefinitions, markProgressing } from './operations.ts'

export interface EngineOptions {
  db: Database
  /** Seals the private keys the engine generates (cluster CAs, service-account keys). */
  masterKey: MasterKeyring
  /** Where drivers keep their own state (the simulator's data centre). */
  databaseUrl: string
  connection: ConnectionOptions
  /** BullMQ key prefix, shared with the API's producer. */
  prefix: string
  workerId?: string
  concurrency?: number
  leaseMs?: number
  /** Optional cap on a step's retries per failure streak; undefined: only the horizon limits them. */
  maxAttempts?: number
  /** How long a step may keep failing retryably before it gives up (default 30 min). */
  retryHorizonMs?: number
  /** Delay before a step's first retry (default 1 s); it doubles per attempt, with jitter. */
  retryBaseDelayMs?: number
  /** Longest wait between two attempts of a step (default 30 s). */
  retryMaxDelayMs?: number
  /** How often lost or never-queued operations are (re-)queued. */
  dispatchIntervalMs?: number
  /** How often Ready clusters are observed; 0 turns the health checker off. */
  healthIntervalMs?: number
  /** How often discovering backends' machine classes are copied into the catalogue; 0: only at start. */
  catalogueIntervalMs?: number
  /** How often clusters past their `expiresAt` are deleted; 0 turns it off. */
  expiryIntervalMs?: number
  /** Machines allowed unhealthy (fraction of the cluster) before repair stops and asks for people. */
  maxUnhealthyFraction?: number
  /**
   * How long a machine the backend does not call failed (not joined, powered off) must stay unhealthy
   * before repair replaces it. Default 5 min, as a MachineHealthCheck's usual NotReady timeout.
   */
  repairGraceMs?: number
  /** Where the engine logs (main.ts: Kiln's JSON lines on stdout). */
  logger?: Logger
  /** Without `logger`: receives each log record (info and above) as an object; tests read them. */
  log?: LogSink
  /** Where the engine records its series; without it, nothing is recorded. */
  metrics?: WorkerMetrics
}

export interface Engine {
  workerId: string
  producer: JobProducer
  /** Queues lost operations once, now (the periodic loop does the same). */
  dispatchOnce(): Promise<number>
  /** Observes every idle, built cluster once, now. */
  observeOnce(): Promise<number>
  /** Copies the machine classes of discovering backends (Ironic) into the catalogue, now. */
  syncCatalogueOnce(): Promise<CatalogueSync[]>
  /** Starts the delete of every cluster past its `expiresAt`, now; returns how many it started. */
  expireOnce(): Promise<number>
  /** True while the engine takes work (the worker's /healthz). */
  running(): boolean
  stop(): Promise<void>
}

/** Classifies a failure for the step runner (retry, or fail with a reason the user can act on). */
export function classifyError(error: unknown): ClassifiedError {
  if (error instanceof DriverError)
    return { errorClass: error.errorClass, code: error.code, message: error.message }
  // A cluster that cannot be reached is retried; one that refuses Kiln's own manifests is the
  // platform team's to fix, and retrying would not change its answer.
  if (error instanceof AddonError)
    return {
      errorClass: error.retryable ? 'retryable' : 'platform',
      code: `ERR_ADDON_${error.code.toUpperCase().replace(/-/g, '_')}`,
      message: error.message,
    }
  return {
    errorClass: 'retryable',
    code: 'ERR_INTERNAL',
    message: error instanceof Error ? error.message : String(error),
  }
}

/**
 * BullMQ's complaints about a job whose keys vanished (Redis flushed or restarted empty) while a
 * worker held it: expected, since the dispatcher re-creates the job from Postgres.
 */
export function isLostJobError(error: unknown): boolean {
  const message = error instanceof Error ? error.message : String(error)
  return /^(Missing (key|lock) for job|could not renew lock for job)/.test(message)
}

export async function startEngine(options: EngineOptions): Promise<Engine> {
  const { db } = options
  const workerId = options.workerId ?? `worker-${randomUUID().slice(0, 8)}`
  const logger =
    options.logger ??
    createLogger({ service: 'kiln-worker', level: options.log ? 'info' : 'silent', destination: options.log })
  const log = (event: Record<string, unknown>) => logEvent(logger, event)
  const telemetry = operationTelemetry(db, logger, workerId)
  const { metrics } = options
  const drivers = new DriverCache(options.databaseUrl, metrics)
  const definitions = buildOperationDefinitions({ db, drivers, masterKey: options.masterKey, metrics })
  const producer = new JobProducer({ connection: options.connection, prefix: options.prefix })
  metrics?.watch({ db, queue: producer.queue(queueNames.operations) })
  /** Expected after a Redis flush: an informative line, not an error. */
  const logLostJob = (context: Record<string, unknown>) =>
    log({ level: 'info', msg: 'job lost with Redis data; the dispatcher re-creates it', ...context })
  const leaseMs = options.leaseMs ?? 15_000

  const worker = new Worker(
    queueNames.operations,
    async (job: Job, token?: string) => {
      const payload = job.data as unknown
      if (!Value.Check(jobCatalogue['run-operation'].payload, payload)) {
        log({ msg: 'dropping malformed job', jobId: job.id })
        return
      }
      const { operationId } = payload
      const op = await db.operation.findUnique({ where: { id: operationId } })
      if (op?.status === 'pending') await markProgressing(db, op)
      // Parks the job until `at`; a job whose keys a Redis flush removed cannot be parked, which
      // is no failure of the operation: the dispatcher re-creates the job when it is due.
      const delayUntil = async (at: number): Promise<never> => {
        try {
          await job.moveToDelayed(at, token)
        } catch (error) {
          if (!isLostJobError(error)) throw error
          logLostJob({ jobId: job.id })
        }
        throw new DelayedError()
      }
      try {
        const result = await telemetry.attempt(op, (aroundStep) =>
          runOperation(db, operationId, definitions, {
            workerId,
            leaseMs,
            maxAttempts: options.maxAttempts,
            retryHorizonMs: options.retryHorizonMs,
            retryBaseDelayMs: options.retryBaseDelayMs,
            retryMaxDelayMs: options.retryMaxDelayMs,
            classify: classifyError,
            aroundStep,
            ...(metrics ? { observer: metrics.runObserver(db) } : {}),
          }),
        )
        // Busy: another worker holds it, or its next attempt is not due yet (this job fired early).
        if (result.state === 'busy') await delayUntil(Date.now() + result.retryAfterMs)
      } catch (error) {
        // Another worker took the operation over; it carries on, this job has nothing left to do.
        if (error instanceof LeaseLost) return
        // A step waits for its next attempt: the job sleeps in BullMQ's delayed set until then,
        // instead of failing into the queue's own (shorter) backoff.
        if (error instanceof RetryLater && error.retryAt) await delayUntil(error.retryAt.getTime())
        throw error
      }
    },
    {
      connection: options.connection,
      prefix: options.prefix,
      concurrency: options.concurrency ?? 8,
      lockDuration: leaseMs,
      stalledInterval: Math.max(1000, Math.floor(leaseMs / 2)),
      settings: { backoffStrategy: (attemptsMade: number) => backoffDelay(attemptsMade) },
    },
  )
  worker.on('error', (error) => {
    if (isLostJobError(error)) logLostJob({ detail: String(error) })
    else log({ level: 'error', msg: 'worker error', error: String(error) })
  })

  const dispatchOnce = async (): Promise<number> => {
    const due = await db.$queryRaw<{ id: string }[]>`
      SELECT id FROM "Operation"
      WHERE status IN ('pending', 'running')
        AND ("leaseUntil" IS NULL OR "leaseUntil" < now())
        -- Give the API a moment to queue what it just committed before stepping in.
        AND ("enqueuedAt" < now() - interval '3 seconds' OR ("enqueuedAt" IS NULL AND "createdAt" < now() - interval '1 second'))
      ORDER BY "createdAt" LIMIT 500`
    let queued = 0
    for (const { id } of due) {
      if ((await producer.ensure('run-operation', { operationId: id })) === 'enqueued') queued++
      await db.operation.update({ where: { id }, data: { enqueuedAt: new Date() } })
    }
    if (queued > 0) log({ msg: 'dispatcher queued operations', queued })
    metrics?.requeued(queued)
    return queued
  }

  const observeOnce = healthChecker({
    db,
    drivers,
    producer,
    workerId,
    log,
    options: {
      maxUnhealthyFraction: options.maxUnhealthyFraction ?? 0.4,
      repairGraceMs: options.repairGraceMs ?? 300_000,
    },
  })

  // A cluster's TTL (`expiresAt`, e.g. `kiln cluster create --ttl 2h`) is a safety net for CI: the
  // delete it starts is the one DELETE starts, so it supersedes a pending operation and is idempotent.
  const expireOnce = async (): Promise<number> => {
    const due = await db.cluster.findMany({
      where: { expiresAt: { lte: new Date() }, deletionRequested: false },
      select: { id: true, name: true, projectId: true },
      orderBy: { expiresAt: 'asc' },
      take: 100,
    })
    let started = 0
    for (const cluster of due) {
      const { operation, created } = await db.$transaction((tx) =>
        requestClusterDeletion(
          tx,
          { subject: 'system:expiry', requestId: workerId },
          cluster.projectId,
          cluster.id,
        ),
      )
      if (!created) continue
      started++
      await producer.enqueue('run-operation', { operationId: operation.id }).catch(() => undefined)
      log({ msg: 'expired cluster deleted', cluster: cluster.name, operationId: operation.id })
    }
    return started
  }

  const loops: NodeJS.Timeout[] = []
  const every = (ms: number, fn: () => Promise<unknown>, name: string) => {
    let running = false
    loops.push(
      setInterval(() => {
        if (running) return
        running = true
        fn()
          .catch((error) => {
            if (!isDatabaseUnavailable(error)) log({ msg: `${name} failed`, error: String(error) })
          })
          .finally(() => {
            running = false
          })
      }, ms),
    )
  }
  const syncCatalogueOnce = async () => {
    drivers.retainOnly((await db.backend.findMany({ select: { id: true } })).map((b) => b.id))
    const results = await syncMachineClasses(db, drivers)
    for (const r of results.filter((x) => x.conflicts.length > 0))
      log({ msg: 'machine classes named by another backend', backend: r.backend, conflicts: r.conflicts })
    for (const r of results.filter((x) => x.error !== undefined))
      log({ msg: 'backend catalogue not read', backend: r.backend, error: r.error })
    return results
  }
  // At start (not awaited: an unreachable Ironic must not keep the worker from other backends' work).
  syncCatalogueOnce().catch((error) => log({ msg: 'catalogue sync failed', error: String(error) }))
  if ((options.catalogueIntervalMs ?? 60_000) > 0)
    every(options.catalogueIntervalMs ?? 60_000, syncCatalogueOnce, 'catalogue')
  every(options.dispatchIntervalMs ?? 1000, dispatchOnce, 'dispatcher')
  if ((options.expiryIntervalMs ?? 15_000) > 0)
    every(options.expiryIntervalMs ?? 15_000, expireOnce, 'expiry')
  if ((options.healthIntervalMs ?? 10_000) > 0)
    every(options.healthIntervalMs ?? 10_000, observeOnce, 'health')

  return {
    workerId,
    producer,
    dispatchOnce,
    observeOnce,
    syncCatalogueOnce,
    expireOnce,
    running: () => worker.isRunning(),
    async stop() {
      // In order: stop taking work, let running jobs finish their current step, then release clients.
      for (const loop of loops) clearInterval(loop)
      await worker.close()
      await producer.close()
      await drivers.closeAll()
      metrics?.watch(undefined)
    },
  }
}
