import type { Database } from '@kiln/db'
import { operationKinds } from '@kiln/domain'
import { type Driver, DriverError } from '@kiln/drivers'
import {
  Counter,
  cachedFor,
  createMetricsRegistry,
  Gauge,
  Histogram,
  latencyBuckets,
  type Registry,
  type RunObserver,
  type RunRecorder,
  stepBuckets,
} from '@kiln/jobs'
import { certificateInfo, Purpose } from '@kiln/pki'
import type { Queue } from 'bullmq'

// The worker's series (see README "Metrics"). Counters and histograms are written where things
// happen (the step runner's observer, the driver wrapper, the dispatcher); the gauges of state kept
// elsewhere (PostgreSQL, the queue in Redis) are read when Prometheus scrapes, through a short cache.

/** What the on-scrape gauges read. */
export interface WorkerMetricsSources {
  db: Database
  /** The operations queue (BullMQ); its name is the `queue` label. */
  queue: Queue
}

export interface WorkerMetricsOptions {
  /** prom-client's process series; default on (off in tests that build several in one process). */
  processMetrics?: boolean
  /** How long a scrape's reading of PostgreSQL and Redis serves later scrapes (default 5 s). */
  cacheMs?: number
  /** The same for CA expiry, which parses every cluster's CA certificate (default 60 s). */
  caCacheMs?: number
}

/** Queue states reported by `kiln_queue_jobs` (BullMQ's names). */
const queueStates = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'failed',
  'completed',
] as const

export class WorkerMetrics {
  readonly registry: Registry
  private sources: WorkerMetricsSources | undefined
  /** Cluster id → its backend's name (fixed for a cluster's life: upgrades stay on its backend). */
  private readonly backendOfCluster = new Map<string, string>()

  readonly operationsStarted: Counter<'kind'>
  readonly operationsFinished: Counter<'kind' | 'outcome' | 'error_class'>
  readonly stepDuration: Histogram<'kind' | 'step' | 'backend' | 'outcome'>
  readonly dispatcherRequeued: Counter
  readonly leaseExpiries: Counter
  readonly driverCallDuration: Histogram<'backend' | 'call' | 'outcome'>
  readonly driverCallErrors: Counter<'backend' | 'call' | 'error_class'>
  readonly backendUp: Gauge<'backend'>
  readonly addonApplies: Counter<'addon' | 'outcome'>

  constructor(options: WorkerMetricsOptions = {}) {
    const registry = createMetricsRegistry({ processMetrics: options.processMetrics ?? true })
    this.registry = registry
    const registers = [registry]
    const self = this
    this.operationsStarted = new Counter({
      name: 'kiln_operations_started_total',
      help: 'Operations that left pending (their first run began), by kind.',
      labelNames: ['kind'],
      registers,
    })
    this.operationsFinished = new Counter({
      name: 'kiln_operations_finished_total',
      help: 'Operations this worker ended, by kind, outcome (succeeded|failed|cancelled) and error class (retryable|user|platform|none).',
      labelNames: ['kind', 'outcome', 'error_class'],
      registers,
    })
    this.stepDuration = new Histogram({
      name: 'kiln_operation_step_duration_seconds',
      help: 'One run of one step, by operation kind, step, backend and outcome (succeeded|skipped|failed|retrying).',
      labelNames: ['kind', 'step', 'backend', 'outcome'],
      buckets: stepBuckets,
      registers,
    })
    this.dispatcherRequeued = new Counter({
      name: 'kiln_dispatcher_requeued_total',
      help: 'Operations the dispatcher put (back) on the queue from PostgreSQL: lost with Redis, never queued by the API, or due after a retry wait.',
      registers,
    })
    this.leaseExpiries = new Counter({
      name: 'kiln_lease_expiries_total',
      help: 'Operations taken over after another worker stopped renewing its lease (it died or stalled).',
      registers,
    })
    this.driverCallDuration = new Histogram({
      name: 'kiln_driver_call_duration_seconds',
      help: 'Backend driver calls, by backend, call and outcome (succeeded|failed).',
      labelNames: ['backend', 'call', 'outcome'],
      buckets: latencyBuckets,
      registers,
    })
    this.driverCallErrors = new Counter({
      name: 'kiln_driver_call_errors_total',
      help: 'Failed backend driver calls, by backend, call and error class.',
      labelNames: ['backend', 'call', 'error_class'],
      registers,
    })
    this.backendUp = new Gauge({
      name: 'kiln_backend_up',
      help: '1 when the backend answered the last driver call (catalogue sync, health check or step), 0 when that call found it unavailable.',
      labelNames: ['backend'],
      registers,
    })
    this.addonApplies = new Counter({
      name: 'kiln_addon_applies_total',
      help: 'Add-on applies to clusters, by add-on and outcome (succeeded|failed); a failed reconcile counts for each add-on it was applying.',
      labelNames: ['addon', 'outcome'],
      registers,
    })

    const cacheMs = options.cacheMs ?? 5000
    const inProgress = cachedFor(cacheMs, () => self.readInProgress())
    const queueState = cachedFor(cacheMs, () => self.readQueue())
    const caExpiry = cachedFor(options.caCacheMs ?? 60_000, () => self.readCaExpiry())

    new Gauge({
      name: 'kiln_operations_in_progress',
      help: 'Operations pending or running, by kind (PostgreSQL, read on scrape).',
      labelNames: ['kind'],
      registers,
      async collect() {
        if (!self.sources) return
        const { byKind } = await inProgress()
        for (const kind of operationKinds) this.set({ kind }, byKind.get(kind) ?? 0)
      },
    })
    new Gauge({
      name: 'kiln_operation_oldest_in_progress_seconds',
      help: 'Age of the oldest operation still pending or running (0 when none).',
      registers,
      async collect() {
        if (!self.sources) return
        const { oldest } = await inProgress()
        this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest.getTime()) / 1000))
      },
    })
    new Gauge({
      name: 'kiln_queue_jobs',
      help: 'Jobs in the queue (Redis), by queue and BullMQ state.',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        if (!self.sources) return
        const { queue, counts } = await queueState()
        for (const state of queueStates) this.set({ queue, state }, counts[state] ?? 0)
      },
    })
    new Gauge({
      name: 'kiln_queue_oldest_waiting_seconds',
      help: 'How long the oldest waiting job has been ready to run (0 when none waits).',
      labelNames: ['queue'],
      registers,
      async collect() {
        if (!self.sources) return
        const { queue, oldestReadyAt } = await queueState()
        this.set({ queue }, oldestReadyAt === null ? 0 : Math.max(0, (Date.now() - oldestReadyAt) / 1000))
      },
    })
    new Gauge({
      name: 'kiln_cluster_ca_expiry_timestamp_seconds',
      help: "When each cluster's current cluster CA certificate expires (Unix seconds).",
      labelNames: ['project', 'cluster'],
      registers,
      async collect() {
        if (!self.sources) return
        const expiries = await caExpiry()
        // Deleted clusters leave the series.
        this.reset()
        for (const e of expiries) this.set({ project: e.project, cluster: e.cluster }, e.notAfterSeconds)
      },
    })
  }

  /** Lets the on-scrape gauges read PostgreSQL and the queue (the engine calls it at start). */
  watch(sources: WorkerMetricsSources | undefined) {
    this.sources = sources
  }

  /** Hears the step runner: operations started and finished, each step's duration, lease take-overs. */
  runObserver(db: Database): RunObserver {
    return {
      run: async (operation, event): Promise<RunRecorder> => {
        const kind = operation.kind
        if (event.firstRun) this.operationsStarted.inc({ kind })
        if (event.leaseExpired) this.leaseExpiries.inc()
        const backend = await this.backendOf(db, operation.clusterId)
        return {
          step: (step, outcome, seconds) =>
            this.stepDuration.observe({ kind, step, backend, outcome }, seconds),
          finished: (outcome, errorClass) =>
            this.operationsFinished.inc({ kind, outcome, error_class: errorClass }),
        }
      },
    }
  }

  private async backendOf(db: Database, clusterId: string | null): Promise<string> {
    // An operation whose cluster row is gone (a finished delete) has no backend left to name.
    if (!clusterId) return 'none'
    const known = this.backendOfCluster.get(clusterId)
    if (known) return known
    const row = await db.cluster.findUnique({
      where: { id: clusterId },
      select: { template: { select: { backend: { select: { name: true } } } } },
    })
    const name = row?.template.backend.name ?? 'none'
    if (this.backendOfCluster.size >= 10_000) this.backendOfCluster.clear()
    if (row) this.backendOfCluster.set(clusterId, name)
    return name
  }

  /** Counts the dispatcher's re-queues. */
  requeued(count: number) {
    if (count > 0) this.dispatcherRequeued.inc(count)
  }

  addonsApplied(addons: readonly string[], outcome: 'succeeded' | 'failed') {
    for (const addon of addons) this.addonApplies.inc({ addon, outcome })
  }

  /** Times one driver call and records whether the backend answered it. */
  async timeDriverCall<T>(backend: string, call: string, result: Promise<T>): Promise<T> {
    const started = performance.now()
    const elapsed = () => (performance.now() - started) / 1000
    try {
      const value = await result
      this.driverCallDuration.observe({ backend, call, outcome: 'succeeded' }, elapsed())
      this.backendUp.set({ backend }, 1)
      return value
    } catch (error) {
      this.driverCallDuration.observe({ backend, call, outcome: 'failed' }, elapsed())
      // Anything but a DriverError is the engine's own failure, which it retries (see classifyError).
      const errorClass = error instanceof DriverError ? error.errorClass : 'retryable'
      this.driverCallErrors.inc({ backend, call, error_class: errorClass })
      // A backend that answered with an error (no capacity, a bad request) is up all the same.
      if (error instanceof DriverError)
        this.backendUp.set({ backend }, error.code === 'ERR_UNAVAILABLE' ? 0 : 1)
      throw error
    }
  }

  private async readInProgress() {
    const db = this.sources!.db
    const rows = await db.$queryRaw<{ kind: string; n: number; oldest: Date }[]>`
      SELECT kind, count(*)::int AS n, min("createdAt") AS oldest FROM "Operation"
      WHERE status IN ('pending', 'running') GROUP BY kind`
    const oldest = rows.reduce<Date | null>((o, r) => (o === null || r.oldest < o ? r.oldest : o), null)
    return { byKind: new Map(rows.map((r) => [r.kind, r.n])), oldest }
  }

  private async readQueue() {
    const queue = this.sources!.queue
    const [counts, [oldest]] = await Promise.all([
      queue.getJobCounts(...queueStates),
      // Oldest first: the job at the head of the wait list.
      queue.getJobs(['waiting'], 0, 0, true),
    ])
    // A job back from a delay has been ready since its delay ran out, not since it was created;
    // counted from its last start, that is at most its run time early.
    const oldestReadyAt = oldest
      ? Math.max(oldest.timestamp, oldest.processedOn ?? 0) + (oldest.delay ?? 0)
      : null
    return { queue: queue.name, counts: counts as Record<string, number>, oldestReadyAt }
  }

  /** Parsed expiry per stored CA generation: a certificate never changes, so it is parsed once. */
  private readonly notAfterOf = new Map<string, number>()

  private async readCaExpiry() {
    const db = this.sources!.db
    // The newest generation signs; during a rotation the previous one is on its way out.
    const rows = await db.$queryRaw<
      { clusterId: string; generation: number; project: string; cluster: string; publicPem: string }[]
    >`
      SELECT DISTINCT ON (s."clusterId") s."clusterId", s.generation, p.name AS project, c.name AS cluster, s."publicPem"
      FROM "ClusterSecret" s JOIN "Cluster" c ON c.id = s."clusterId" JOIN "Project" p ON p.id = c."projectId"
      WHERE s.purpose = ${Purpose.clusterCa}
      ORDER BY s."clusterId", s.generation DESC`
    const seen = new Set<string>()
    const expiries = rows.map((r) => {
      const key = `${r.clusterId}/${r.generation}`
      seen.add(key)
      let notAfterSeconds = this.notAfterOf.get(key)
      if (notAfterSeconds === undefined) {
        notAfterSeconds = Math.floor(certificateInfo(r.publicPem).notAfter.getTime() / 1000)
        this.notAfterOf.set(key, notAfterSeconds)
      }
      return { project: r.project, cluster: r.cluster, notAfterSeconds }
    })
    for (const key of this.notAfterOf.keys()) if (!seen.has(key)) this.notAfterOf.delete(key)
    return expiries
  }
}

/**
 * The driver with every call timed (`kiln_driver_call_*`, `kiln_backend_up`); without metrics, the
 * driver itself. Methods run on the driver, not the proxy, so its private fields keep working.
 */
export function instrumentDriver(
  metrics: WorkerMetrics | undefined,
  backend: string,
  driver: Driver,
): Driver {
  if (!metrics) return driver
  return new Proxy(driver, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target)
      if (typeof value !== 'function' || typeof property !== 'string' || property === 'close') return value
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args)
        return result instanceof Promise ? metrics.timeDriverCall(backend, property, result) : result
      }
    },
  })
}
