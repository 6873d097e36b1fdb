/**
 * Provisioning benchmark: `npx tsx bench/provision.ts`.
 *
 * One run builds a throw-away database `kiln_bench_<random>` (migrated with the real
 * `prisma migrate deploy`), uses private BullMQ prefixes `kiln-bench-<random>-…` on the local Redis,
 * prints a table, writes `bench/results/provision-<timestamp>.json`, and removes the database and
 * every Redis key under its prefixes, also on error or Ctrl-C (never FLUSHALL).
 *
 *   P5  enqueue throughput    JobProducer.enqueue vs raw BullMQ queue.add, 50 in flight   goal ratio >= 0.5
 *       add→start latency     JobProducer.enqueue paced at 200/s → a BullMQ Worker        goal p99 < 20 ms
 *   P7  storm                 1,000 POST /clusters (3 nodes each), ~50 in flight, ONE worker child process
 *                             (WORKER_CONCURRENCY=32): first POST → last finishedAt       goal < 60 s
 *                             per-cluster time, last 100 created ÷ first 100 created      goal <= 1.5x
 *                             every operation succeeded                                   goal 0 failures
 *   P6  platform CPU per node (worker process + API/bench process) during the storm ÷ 3,000 nodes
 *                                                                                         goal <= 20 ms
 *       Postgres and Redis CPU are NOT in P6; they are shown beside it (all their processes, from /proc).
 *   Books: after the storm the simulator's allocated machines == Machine rows == 3,000.
 *   P7c/P6c the same storm on a capi backend: a management cluster Kiln builds on the simulated data
 *           centre, the official Cluster API CRDs, the Cluster API stand-in as a child process; time,
 *           platform CPU per node (info, beside the simulator's), books: slots == Machine rows.
 *
 * Flags / env:
 *   --profile        instead of the benchmark, a quick in-process run (BENCH_PROFILE_CLUSTERS, 20) that
 *                    runs the engine's job path one operation at a time and counts Prisma queries per
 *                    cluster create, by step and by statement: bench/results/provision-profile-<ts>.json
 *   --cpu-prof       also run the worker child with `--cpu-prof` (profile kept in the OS temp dir) and
 *                    summarise where its samples went. Samples count on-CPU and preempted time alike:
 *                    on a busy 2-core box `writev` (waking a Postgres backend) looks far bigger than it is.
 *   BENCH_CAPI_CLUSTERS (1000; 0 skips the storm on capi), BENCH_CAPI_TIMEOUT (s, 1800),
 *   BENCH_CLUSTERS (1000), BENCH_ENQUEUE_JOBS (20000), BENCH_LATENCY_JOBS (2000), BENCH_LATENCY_RATE (200/s),
 *   BENCH_STORM_TIMEOUT (s, 300), KILN_BENCH_POSTGRES (postgresql://postgres@127.0.0.1:5432),
 *   KILN_BENCH_REDIS (redis://127.0.0.1:6379).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { createDatabase, type Database, type Operation } from '@kiln/db'
import type { OperationStatus } from '@kiln/domain'
import { type SimulatorConfig, SimulatorDriver } from '@kiln/drivers'
import { JobProducer, queueNames, runOperation } from '@kiln/jobs'
import { type ConnectionOptions, type Job, Queue, Worker } from 'bullmq'
import { Redis } from 'ioredis'
import pg from 'pg'
import { buildApp, type KilnApp } from '../apps/api/src/app.ts'
import {
  clusterApiCrdDirs,
  simulatedCapiBackend,
  simulatedClusterClass,
} from '../apps/simulator/test/capi-support.ts'
import { DriverCache } from '../apps/worker/src/driver-cache.ts'
import { classifyError } from '../apps/worker/src/engine.ts'
import { buildOperationDefinitions, markProgressing } from '../apps/worker/src/operations.ts'
import { masterKeyFromSettings } from '../packages/pki/src/index.ts'
import {
  createBenchDatabase,
  dbName,
  dbUrl,
  describeMachine,
  envInt,
  explainAnalyze,
  fmt,
  formatTable,
  log,
  onCleanup,
  openTracedDatabase,
  printReport,
  redisUrl,
  root,
  round,
  runBench,
  runId,
  sleep,
  startSimulatorChild,
  withTimeout,
  writeResults,
} from './harness.ts'

const args = new Set(process.argv.slice(2))

const CONFIG = {
  enqueueJobs: envInt('BENCH_ENQUEUE_JOBS', 20_000),
  enqueueInFlight: 50,
  /** Discarded adds per side before timing. */
  enqueueWarmup: 2_000,
  latencyJobs: envInt('BENCH_LATENCY_JOBS', 2_000),
  latencyRatePerSecond: envInt('BENCH_LATENCY_RATE', 200),
  latencyWarmup: 200,
  latencyWorkerConcurrency: 50,
  clusters: envInt('BENCH_CLUSTERS', 1_000),
  nodesPerCluster: 3,
  postsInFlight: 50,
  workerConcurrency: 32,
  pollMs: 250,
  stormTimeoutMs: envInt('BENCH_STORM_TIMEOUT', 300) * 1000,
  /** Clusters of the storm on a Cluster API backend (0 skips it). */
  capiClusters: envInt('BENCH_CAPI_CLUSTERS', 1_000),
  /** The capi storm's own limit (s): Cluster API's stand-in and the management cluster take their time. */
  capiTimeoutMs: envInt('BENCH_CAPI_TIMEOUT', 1_800) * 1000,
  apiPoolSize: 20,
  project: 'bench',
  template: 'bench-3n',
  profileClusters: envInt('BENCH_PROFILE_CLUSTERS', 20),
}

/**
 * Room for 1,000 × (1 control plane + 2 workers): 10 racks × 330 = 3,300 per zone. The engine spreads
 * every group by ordinal from the first zone (apps/worker/src/machines.ts zoneFor), so each cluster puts
 * its control plane and worker 0 in zone-a and worker 1 in zone-b: 2,000 / 1,000 / 0. `zoneDemand`
 * checks this before anything runs.
 */
const DATA_CENTRE: SimulatorConfig = {
  zones: ['zone-a', 'zone-b', 'zone-c'],
  racksPerZone: 10,
  machineClasses: [{ name: 'm1.large', cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, perRack: 330 }],
}
const CONTROL_PLANE = { count: 1, machineClass: 'm1.large' }
const NODE_GROUPS = [{ name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 10 }]

/** Every Redis key this run writes starts with this. */
const keyBase = `kiln-bench-${runId}`
const prefixes = {
  kilnEnqueue: `${keyBase}-p5-kiln`,
  rawEnqueue: `${keyBase}-p5-raw`,
  rawOptsEnqueue: `${keyBase}-p5-rawopts`,
  latency: `${keyBase}-p5-latency`,
  storm: `${keyBase}-storm`,
  apiRedis: `${keyBase}-api:`,
}
const producerConnection: ConnectionOptions = { url: redisUrl, maxRetriesPerRequest: 1 }
const workerConnection: ConnectionOptions = { url: redisUrl, maxRetriesPerRequest: null }

const clusterName = (i: number) => `c-${String(i).padStart(4, '0')}`

/** Deletes every key of this run (SCAN + DEL on our own prefix only). */
async function deleteRunKeys(redis: Redis): Promise<number> {
  let deleted = 0
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyBase}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) deleted += await redis.del(...keys)
  } while (cursor !== '0')
  return deleted
}

// ---------------------------------------------------------------------------------------------
// Database: the catalogue (harness.ts creates and migrates it).

/** Backend `sim` (its config is the data centre), m1.large in all its zones, 1.31.4, template, project. */
async function seedCatalogue(db: Database, apiServerUrl: string) {
  const backend = await db.backend.create({
    data: {
      name: 'sim',
      kind: 'simulator',
      capabilities: { zones: DATA_CENTRE.zones },
      config: { ...DATA_CENTRE, apiServerUrl } as unknown as object,
    },
  })
  for (const mc of DATA_CENTRE.machineClasses) {
    await db.machineClass.create({
      data: {
        name: mc.name,
        backendId: backend.id,
        cpu: mc.cpu,
        memoryMiB: mc.memoryMiB,
        gpuModel: mc.gpuModel,
        gpuCount: mc.gpuCount,
        zones: mc.zones ?? DATA_CENTRE.zones,
      },
    })
  }
  await db.kubernetesVersion.create({ data: { version: '1.31.4', lifecycle: 'supported' } })
  await db.clusterTemplate.create({
    data: {
      name: CONFIG.template,
      version: 1,
      projectId: null,
      kubernetesVersion: '1.31.4',
      backendId: backend.id,
      controlPlane: CONTROL_PLANE,
      nodeGroups: NODE_GROUPS,
      features: {},
      lockedFeatures: [],
    },
  })
  await db.project.create({ data: { name: CONFIG.project, displayName: 'Provisioning bench' } })
}

/**
 * What the engine will ask for per zone: the control plane spreads over its class's zones and each
 * node group over its own (the class's, by default), both by ordinal (apps/worker/src/machines.ts).
 */
function zoneDemand(clusters: number) {
  const zonesOf = (cls: string) =>
    DATA_CENTRE.machineClasses.find((m) => m.name === cls)?.zones ?? DATA_CENTRE.zones
  const need: Record<string, number> = {}
  const add = (cls: string, count: number) => {
    const zones = zonesOf(cls)
    for (let ordinal = 0; ordinal < count; ordinal++) {
      const zone = zones[ordinal % zones.length]!
      need[zone] = (need[zone] ?? 0) + clusters
    }
  }
  add(CONTROL_PLANE.machineClass, CONTROL_PLANE.count)
  for (const ng of NODE_GROUPS) add(ng.machineClass, ng.count)
  const perZone = DATA_CENTRE.racksPerZone * DATA_CENTRE.machineClasses[0]!.perRack
  return { need, perZone, fits: Object.values(need).every((n) => n <= perZone) }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc.

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

interface ProcCpu {
  /** utime + stime, ms. */
  self: number
  /** stime alone (kernel: syscalls, loopback TCP), ms. */
  system: number
  /** cutime + cstime (reaped children), ms. */
  children: number
}

function procCpu(pid: number): ProcCpu | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state); utime..cstime are fields 14..17.
    const tick = (i: number) => (Number(fields[i]) * 1000) / CLK_TCK
    return { self: tick(11) + tick(12), system: tick(12), children: tick(13) + tick(14) }
  } catch {
    return undefined
  }
}

function pids(name: string): number[] {
  try {
    return execFileSync('pgrep', ['-x', name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** CPU of every process named `name`: per pid, plus the children their parents reaped. */
function groupCpu(name: string): Map<number, ProcCpu> {
  const out = new Map<number, ProcCpu>()
  for (const pid of pids(name)) {
    const c = procCpu(pid)
    if (c) out.set(pid, c)
  }
  return out
}

/**
 * CPU a process group spent between two snapshots: live processes' own time (new ones in full) plus
 * the reaped-children time their parents gained (Postgres backends that exited in between).
 */
function groupDelta(before: Map<number, ProcCpu>, after: Map<number, ProcCpu>): number {
  let ms = 0
  for (const [pid, a] of after) {
    const b = before.get(pid)
    ms += a.self - (b?.self ?? 0) + (b ? a.children - b.children : 0)
  }
  return ms
}

/** Machine-wide busy and total CPU time (ms, all cores) from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.reduce((a, b) => a + b, 0)
    const idle = (v[3] ?? 0) + (v[4] ?? 0) // idle + iowait
    return { busy: ((total - idle) * 1000) / CLK_TCK, total: (total * 1000) / CLK_TCK }
  } catch {
    return { busy: Number.NaN, total: Number.NaN }
  }
}

interface CpuSnapshot {
  at: number
  machine: { busy: number; total: number }
  bench: NodeJS.CpuUsage
  worker: ProcCpu | undefined
  postgres: Map<number, ProcCpu>
  redis: Map<number, ProcCpu>
}

function snapshot(workerPid: number | undefined): CpuSnapshot {
  return {
    at: performance.now(),
    machine: machineCpu(),
    bench: process.cpuUsage(),
    worker: workerPid ? procCpu(workerPid) : undefined,
    postgres: groupCpu('postgres'),
    redis: groupCpu('redis-server'),
  }
}

function cpuBetween(a: CpuSnapshot, b: CpuSnapshot) {
  const workerMs = a.worker && b.worker ? b.worker.self - a.worker.self : Number.NaN
  const workerSystemMs = a.worker && b.worker ? b.worker.system - a.worker.system : Number.NaN
  const benchMs = (b.bench.user - a.bench.user + b.bench.system - a.bench.system) / 1000
  const benchSystemMs = (b.bench.system - a.bench.system) / 1000
  const postgresMs = a.postgres.size ? groupDelta(a.postgres, b.postgres) : Number.NaN
  const redisMs = a.redis.size ? groupDelta(a.redis, b.redis) : Number.NaN
  const machineBusyMs = b.machine.busy - a.machine.busy
  return {
    wallMs: b.at - a.at,
    workerMs,
    /** Of workerMs, in the kernel (a loopback TCP write also runs the receiving side's stack). */
    workerSystemMs,
    benchMs,
    benchSystemMs,
    postgresMs,
    redisMs,
    postgresProcesses: b.postgres.size,
    /** Every core's busy time (all processes on the machine). */
    machineBusyMs,
    machineTotalMs: b.machine.total - a.machine.total,
    /** Busy time of everything else on the machine (other engineers' tests, the kernel, …). */
    otherMs: machineBusyMs - workerMs - benchMs - postgresMs - redisMs,
  }
}

// ---------------------------------------------------------------------------------------------
// Small statistics.

function percentile(sorted: number[], q: number) {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : Number.NaN)
function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b)
  return {
    count: s.length,
    mean: round(mean(s)),
    p50: round(percentile(s, 0.5)),
    p90: round(percentile(s, 0.9)),
    p99: round(percentile(s, 0.99)),
    max: round(s.at(-1) ?? Number.NaN),
  }
}

/** Runs `n` calls of `fn` with `inFlight` at a time; returns calls per second. */
async function pump(n: number, inFlight: number, fn: (i: number) => Promise<unknown>) {
  let next = 0
  const t = performance.now()
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      for (;;) {
        const i = next++
        if (i >= n) return
        await fn(i)
      }
    }),
  )
  const seconds = (performance.now() - t) / 1000
  return { jobs: n, seconds, perSecond: n / seconds }
}

// ---------------------------------------------------------------------------------------------
// P5: enqueue throughput and add→start latency.

async function measureEnqueue() {
  const kiln = new JobProducer({ connection: producerConnection, prefix: prefixes.kilnEnqueue })
  const raw = new Queue(queueNames.operations, {
    connection: producerConnection,
    prefix: prefixes.rawEnqueue,
  })
  // Diagnostic third side: raw add with the options Kiln sends (attempts, backoff, removeOn…).
  const rawOpts = new Queue(queueNames.operations, {
    connection: producerConnection,
    prefix: prefixes.rawOptsEnqueue,
  })
  raw.on('error', () => {})
  rawOpts.on('error', () => {})
  const { jobCatalogue } = await import('@kiln/jobs')
  const kilnOptions = jobCatalogue['run-operation'].options
  const sides = {
    kiln: () => kiln.enqueue('run-operation', { operationId: randomUUID() }),
    raw: () => {
      const operationId = randomUUID()
      return raw.add('run-operation', { operationId }, { jobId: `op-${operationId}` })
    },
    rawWithKilnOptions: () => {
      const operationId = randomUUID()
      return rawOpts.add('run-operation', { operationId }, { ...kilnOptions, jobId: `op-${operationId}` })
    },
  }
  type Side = keyof typeof sides
  const order: Side[] = ['kiln', 'raw', 'rawWithKilnOptions']
  try {
    await kiln.queue(queueNames.operations).waitUntilReady()
    await raw.waitUntilReady()
    await rawOpts.waitUntilReady()
    for (const side of order) await pump(CONFIG.enqueueWarmup, CONFIG.enqueueInFlight, sides[side])
    // Two slices per side, A B C C B A: drift and other load fall on every side alike.
    const slices: Record<Side, { jobs: number; seconds: number }[]> = {
      kiln: [],
      raw: [],
      rawWithKilnOptions: [],
    }
    const half = Math.ceil(CONFIG.enqueueJobs / 2)
    for (const side of [...order, ...[...order].reverse()]) {
      const r = await pump(half, CONFIG.enqueueInFlight, sides[side])
      slices[side].push({ jobs: r.jobs, seconds: r.seconds })
    }
    const rate = (side: Side) => {
      const s = slices[side]
      return s.reduce((n, x) => n + x.jobs, 0) / s.reduce((n, x) => n + x.seconds, 0)
    }
    const result = {
      jobsPerSide: half * 2,
      inFlight: CONFIG.enqueueInFlight,
      kilnPerSecond: rate('kiln'),
      rawPerSecond: rate('raw'),
      rawWithKilnOptionsPerSecond: rate('rawWithKilnOptions'),
      slices,
      waitingAfter: {
        kiln: await kiln.queue(queueNames.operations).getWaitingCount(),
        raw: await raw.getWaitingCount(),
        rawWithKilnOptions: await rawOpts.getWaitingCount(),
      },
    }
    log(
      `P5 enqueue: kiln ${fmt(result.kilnPerSecond)} jobs/s, raw ${fmt(result.rawPerSecond)} jobs/s, raw+kiln options ${fmt(result.rawWithKilnOptionsPerSecond)} jobs/s`,
    )
    return result
  } finally {
    for (const q of [kiln.queue(queueNames.operations), raw, rawOpts])
      await q.obliterate({ force: true }).catch((e) => log(`obliterate: ${(e as Error).message}`))
    await kiln.close()
    await raw.close()
    await rawOpts.close()
  }
}

async function measureLatency() {
  const producer = new JobProducer({ connection: producerConnection, prefix: prefixes.latency })
  let recording = false
  const samples: number[] = []
  let seen = 0
  const worker = new Worker(
    queueNames.operations,
    async (job: Job) => {
      const ms = Date.now() - job.timestamp
      seen++
      if (recording) samples.push(ms)
    },
    {
      connection: workerConnection,
      prefix: prefixes.latency,
      concurrency: CONFIG.latencyWorkerConcurrency,
      removeOnComplete: { count: 0 },
    },
  )
  worker.on('error', (e) => log(`latency worker: ${String(e)}`))
  const addMs: number[] = []
  const paced = async (n: number) => {
    const t0 = performance.now()
    const interval = 1000 / CONFIG.latencyRatePerSecond
    const pending: Promise<unknown>[] = []
    for (let i = 0; i < n; i++) {
      const wait = t0 + i * interval - performance.now()
      if (wait > 1) await sleep(wait)
      const t = performance.now()
      pending.push(
        producer.enqueue('run-operation', { operationId: randomUUID() }).then(() => {
          if (recording) addMs.push(performance.now() - t)
        }),
      )
    }
    await Promise.all(pending)
    return performance.now() - t0
  }
  const waitFor = async (count: number) => {
    const deadline = Date.now() + 60_000
    while (seen < count) {
      if (Date.now() > deadline) throw new Error(`latency worker saw ${seen} of ${count} jobs in 60 s`)
      await sleep(20)
    }
  }
  try {
    await worker.waitUntilReady()
    await producer.queue(queueNames.operations).waitUntilReady()
    await paced(CONFIG.latencyWarmup)
    await waitFor(CONFIG.latencyWarmup)
    recording = true
    const ms = await paced(CONFIG.latencyJobs)
    await waitFor(CONFIG.latencyWarmup + CONFIG.latencyJobs)
    recording = false
    const result = {
      jobs: samples.length,
      ratePerSecond: CONFIG.latencyRatePerSecond,
      achievedRatePerSecond: CONFIG.latencyJobs / (ms / 1000),
      workerConcurrency: CONFIG.latencyWorkerConcurrency,
      addToStartMs: summary(samples),
      enqueueCallMs: summary(addMs),
    }
    log(
      `P5 add→start: p50 ${result.addToStartMs.p50} ms, p99 ${result.addToStartMs.p99} ms, max ${result.addToStartMs.max} ms (enqueue call p99 ${result.enqueueCallMs.p99} ms)`,
    )
    return result
  } finally {
    await worker.close()
    await producer
      .queue(queueNames.operations)
      .obliterate({ force: true })
      .catch((e) => log(`obliterate: ${(e as Error).message}`))
    await producer.close()
  }
}

// ---------------------------------------------------------------------------------------------
// The worker child process.

interface WorkerChild {
  child: ChildProcess
  pid: number
  lines: { finished: number; errors: string[]; dispatcherQueued: number; tail: string[] }
  stop(): Promise<number | null>
}

async function startWorkerChild(cpuProfDir: string | undefined): Promise<WorkerChild> {
  const nodeArgs = [
    ...(cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : []),
    '--import',
    'tsx',
    'apps/worker/src/main.ts',
  ]
  const child = spawn(process.execPath, nodeArgs, {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      REDIS_URL: redisUrl,
      KILN_DEV_MODE: 'true',
      KILN_QUEUE_PREFIX: prefixes.storm,
      WORKER_CONCURRENCY: String(CONFIG.workerConcurrency),
      OPERATION_LEASE_MS: '15000',
      HEALTH_INTERVAL_MS: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: WorkerChild['lines'] = { finished: 0, errors: [], dispatcherQueued: 0, tail: [] }
  let ready: () => void
  let failed: (e: Error) => void
  const readyPromise = new Promise<void>((resolve, reject) => {
    ready = resolve
    failed = reject
  })
  const remember = (line: string) => {
    lines.tail.push(line)
    if (lines.tail.length > 40) lines.tail.shift()
  }
  let buffer = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk
    let nl = buffer.indexOf('\n')
    while (nl >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      nl = buffer.indexOf('\n')
      remember(line)
      try {
        const event = JSON.parse(line) as { msg?: string; queued?: number; error?: string }
        if (event.msg === 'worker ready') ready()
        else if (event.msg === 'operation finished') lines.finished++
        else if (event.msg === 'dispatcher queued operations') lines.dispatcherQueued += event.queued ?? 0
        else if (event.error && lines.errors.length < 20) lines.errors.push(line)
      } catch {
        // not JSON: kept in the tail only
      }
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n').filter(Boolean)) {
      remember(`stderr: ${line}`)
      if (lines.errors.length < 20) lines.errors.push(`stderr: ${line}`)
    }
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  void exited.then((code) => failed(new Error(`worker exited (${code}) before it was ready`)))
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    const code = await exited
    clearTimeout(timer)
    return code
  }
  onCleanup('worker child', stop)
  await withTimeout(readyPromise, 60_000, 'worker start')
  return { child, pid: child.pid!, lines, stop }
}

// ---------------------------------------------------------------------------------------------
// P6/P7: the storm.

interface OpRow {
  id: string
  status: OperationStatus
  attempts: number
  createdAt: Date
  startedAt: Date | null
  finishedAt: Date | null
  enqueuedAt: Date | null
  error: { code?: string; detail?: string; step?: string } | null
}

async function storm(db: Database, pool: pg.Pool, redis: Redis, cpuProfDir: string | undefined) {
  const demand = zoneDemand(CONFIG.clusters)
  await seedCatalogue(db, (await startSimulatorChild()).url)

  // Rack the data centre before the storm (the worker's first driver call would otherwise).
  const sim = new SimulatorDriver('sim', DATA_CENTRE, dbUrl)
  onCleanup('simulator (books)', () => sim.close())
  const inventoryBefore = await sim.inventory()
  if (inventoryBefore.allocated !== 0)
    throw new Error(`simulator starts with ${inventoryBefore.allocated} allocated`)
  log(`data centre: ${inventoryBefore.total} machines; demand per zone ${JSON.stringify(demand.need)}`)

  const worker = await startWorkerChild(cpuProfDir)
  log(`worker child pid ${worker.pid} ready (concurrency ${CONFIG.workerConcurrency})`)
  const app: KilnApp = await buildApp({
    db,
    redis,
    queue: { connection: producerConnection, prefix: prefixes.storm },
    logger: false,
  })
  onCleanup('kiln api', () => app.close())
  // Warm the route outside the measurement: a plan touches planning and validation only.
  const dry = await app.inject({
    method: 'POST',
    url: `/v1/projects/${CONFIG.project}/cluster-plans`,
    payload: { name: 'warm-up', template: CONFIG.template },
  })
  if (dry.statusCode !== 200) throw new Error(`plan: ${dry.statusCode} ${dry.body}`)

  const statsSql = `SELECT xact_commit::bigint AS commits, xact_rollback::bigint AS rollbacks,
      tup_returned::bigint AS returned, tup_fetched::bigint AS fetched, tup_inserted::bigint AS inserted,
      tup_updated::bigint AS updated, tup_deleted::bigint AS deleted
    FROM pg_stat_database WHERE datname = $1`
  type DbStats = Record<
    'commits' | 'rollbacks' | 'returned' | 'fetched' | 'inserted' | 'updated' | 'deleted',
    string
  >
  const dbStatsBefore = (await pool.query<DbStats>(statsSql, [dbName])).rows[0]!
  const tableSql = `SELECT schemaname || '.' || relname AS name, n_tup_ins::bigint AS ins, n_tup_upd::bigint AS upd,
      n_tup_hot_upd::bigint AS hot, n_tup_del::bigint AS del, seq_scan::bigint AS seq, coalesce(idx_scan, 0)::bigint AS idx
    FROM pg_stat_user_tables`
  type TableStats = {
    name: string
    ins: string
    upd: string
    hot: string
    del: string
    seq: string
    idx: string
  }
  const tablesBefore = (await pool.query<TableStats>(tableSql)).rows

  // Fire.
  const posts: { status: number; ms: number; operationId?: string; body?: string }[] = []
  const cpuStart = snapshot(worker.pid)
  const firstPostAt = Date.now()
  let terminal = 0
  let polls = 0
  const progress: { s: number; terminal: number }[] = []
  let postsDone = false
  const poller = (async () => {
    const deadline = firstPostAt + CONFIG.stormTimeoutMs
    for (;;) {
      await sleep(CONFIG.pollMs)
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "Operation" WHERE status IN ('succeeded', 'failed', 'cancelled')`,
      )
      polls++
      terminal = rows[0]!.n
      if (polls % 20 === 0) {
        progress.push({ s: round((Date.now() - firstPostAt) / 1000, 1), terminal })
        log(`  ${fmt((Date.now() - firstPostAt) / 1000, 1)} s: ${terminal} operations terminal`)
      }
      const accepted = posts.filter((p) => p.operationId).length
      if (postsDone && terminal >= accepted) return true
      if (Date.now() > deadline) return false
    }
  })()
  const postRate = await pump(CONFIG.clusters, CONFIG.postsInFlight, async (i) => {
    const t = performance.now()
    const res = await app.inject({
      method: 'POST',
      url: `/v1/projects/${CONFIG.project}/clusters`,
      payload: { name: clusterName(i), template: CONFIG.template },
    })
    const entry: (typeof posts)[number] = { status: res.statusCode, ms: performance.now() - t }
    if (res.statusCode === 202) entry.operationId = (res.json() as { id: string }).id
    else entry.body = res.body.slice(0, 500)
    posts.push(entry)
  })
  postsDone = true
  const postsEndedAt = Date.now()
  log(`posted ${CONFIG.clusters} clusters in ${fmt(postRate.seconds, 1)} s (${fmt(postRate.perSecond)}/s)`)
  const completed = await poller
  const cpuEnd = snapshot(worker.pid)
  const cpu = cpuBetween(cpuStart, cpuEnd)
  if (!completed) log(`storm timed out after ${CONFIG.stormTimeoutMs / 1000} s with ${terminal} terminal`)

  // What happened, from Postgres.
  const { rows: ops } = await pool.query<OpRow>(
    `SELECT id, status, attempts, "createdAt", "startedAt", "finishedAt", "enqueuedAt", error
     FROM "Operation" ORDER BY "createdAt", id`,
  )
  const finished = ops.filter((o) => o.finishedAt)
  const lastFinished = Math.max(...finished.map((o) => o.finishedAt!.getTime()))
  const firstStarted = Math.min(...ops.filter((o) => o.startedAt).map((o) => o.startedAt!.getTime()))
  const perCluster = (o: OpRow) =>
    o.finishedAt ? o.finishedAt.getTime() - o.createdAt.getTime() : Number.NaN
  const queueWait = (o: OpRow) => (o.startedAt ? o.startedAt.getTime() - o.createdAt.getTime() : Number.NaN)
  const runTime = (o: OpRow) =>
    o.startedAt && o.finishedAt ? o.finishedAt.getTime() - o.startedAt.getTime() : Number.NaN
  const first = ops.slice(0, 100)
  const last = ops.slice(-100)
  const failures = ops.filter((o) => o.status !== 'succeeded')
  const failureCodes: Record<string, number> = {}
  for (const f of failures) {
    const key = `${f.status}:${f.error?.code ?? '-'}@${f.error?.step ?? '-'}`
    failureCodes[key] = (failureCodes[key] ?? 0) + 1
  }

  // Books: the data centre's and Kiln's agree, and hold exactly 3 machines per cluster.
  const inventory = await sim.inventory()
  const { rows: machineRows } = await pool.query<{ name: string; phase: string; role: string; zone: string }>(
    'SELECT name, phase, role, zone FROM "Machine"',
  )
  const kilnNames = new Set(machineRows.map((m) => m.name))
  const simNames = new Set(inventory.allocatedNames)
  const onlyKiln = [...kilnNames].filter((n) => !simNames.has(n))
  const onlySim = [...simNames].filter((n) => !kilnNames.has(n))
  const countBy = <T>(xs: T[], key: (x: T) => string) =>
    xs.reduce<Record<string, number>>((acc, x) => {
      acc[key(x)] = (acc[key(x)] ?? 0) + 1
      return acc
    }, {})
  const { rows: phases } = await pool.query<{ phase: string; n: number }>(
    `SELECT status->>'phase' AS phase, count(*)::int AS n FROM "Cluster" GROUP BY 1 ORDER BY 1`,
  )
  const expectedNodes = CONFIG.clusters * CONFIG.nodesPerCluster
  const books = {
    expectedNodes,
    simulatorAllocated: inventory.allocated,
    simulatorClusters: inventory.clusterIds.length,
    machineRows: machineRows.length,
    namesAgree: onlyKiln.length === 0 && onlySim.length === 0,
    onlyInKiln: onlyKiln.slice(0, 10),
    onlyInSimulator: onlySim.slice(0, 10),
    machinePhases: countBy(machineRows, (m) => m.phase),
    machinesByRoleAndZone: countBy(machineRows, (m) => `${m.role}@${m.zone}`),
    clusterPhases: Object.fromEntries(phases.map((p) => [p.phase, p.n])),
  }
  const booksOk =
    inventory.allocated === expectedNodes &&
    machineRows.length === expectedNodes &&
    books.namesAgree &&
    inventory.clusterIds.length === CONFIG.clusters

  const stoppedWith = await worker.stop()
  await sleep(1200) // pg stats are flushed by backends at most once a second
  const dbStatsAfter = (await pool.query<DbStats>(statsSql, [dbName])).rows[0]!
  const tablesAfter = (await pool.query<TableStats>(tableSql)).rows
  /** Per cluster: rows inserted/updated/deleted and scans, per table (storm start → worker stopped). */
  const tablesPerCluster = Object.fromEntries(
    tablesAfter
      .map((t) => {
        const b = tablesBefore.find((x) => x.name === t.name)
        const d = (k: keyof Omit<TableStats, 'name'>) =>
          round((Number(t[k]) - Number(b?.[k] ?? 0)) / CONFIG.clusters, 2)
        return [
          t.name,
          {
            inserted: d('ins'),
            updated: d('upd'),
            hotUpdated: d('hot'),
            deleted: d('del'),
            seqScans: d('seq'),
            idxScans: d('idx'),
          },
        ] as const
      })
      .filter(([, v]) => v.inserted + v.updated + v.deleted + v.seqScans + v.idxScans > 0),
  )
  const dbStats = Object.fromEntries(
    Object.keys(dbStatsAfter).map((k) => [
      k,
      Number(dbStatsAfter[k as keyof DbStats]) - Number(dbStatsBefore[k as keyof DbStats]),
    ]),
  ) as Record<keyof DbStats, number>

  const totalMs = lastFinished - firstPostAt
  const firstMean = mean(first.map(perCluster))
  const lastMean = mean(last.map(perCluster))
  const nodes = expectedNodes
  const result = {
    clusters: CONFIG.clusters,
    nodes,
    completed,
    posts: {
      accepted: posts.filter((p) => p.status === 202).length,
      rejected: posts
        .filter((p) => p.status !== 202)
        .map((p) => ({ status: p.status, body: p.body }))
        .slice(0, 10),
      seconds: postRate.seconds,
      perSecond: postRate.perSecond,
      latencyMs: summary(posts.map((p) => p.ms)),
    },
    timeline: {
      totalMs,
      postsMs: postsEndedAt - firstPostAt,
      firstStartedAfterMs: firstStarted - firstPostAt,
      lastFinishedAfterPostsMs: lastFinished - postsEndedAt,
      workerOpsPerSecond: finished.length / ((lastFinished - firstStarted) / 1000),
      progress,
    },
    perClusterMs: {
      all: summary(ops.map(perCluster)),
      first100Mean: firstMean,
      last100Mean: lastMean,
      ratio: lastMean / firstMean,
      queueWait: { first100Mean: mean(first.map(queueWait)), last100Mean: mean(last.map(queueWait)) },
      run: {
        first100Mean: mean(first.map(runTime)),
        last100Mean: mean(last.map(runTime)),
        all: summary(ops.map(runTime)),
      },
    },
    outcomes: countBy(ops, (o) => o.status),
    failures: failures.length,
    failureCodes,
    failureSamples: failures.slice(0, 5).map((f) => ({ id: f.id, status: f.status, error: f.error })),
    retriedOperations: ops.filter((o) => o.attempts > 1).length,
    attempts: countBy(ops, (o) => String(o.attempts)),
    /** enqueuedAt more than 3 s after createdAt: the worker's dispatcher touched the operation again. */
    dispatcherTouched: ops.filter(
      (o) => o.enqueuedAt && o.enqueuedAt.getTime() - o.createdAt.getTime() > 3000,
    ).length,
    cpu: {
      ...cpu,
      platformMs: cpu.workerMs + cpu.benchMs,
      platformMsPerNode: (cpu.workerMs + cpu.benchMs) / nodes,
      workerMsPerNode: cpu.workerMs / nodes,
      apiMsPerNode: cpu.benchMs / nodes,
      postgresMsPerNode: cpu.postgresMs / nodes,
      redisMsPerNode: cpu.redisMs / nodes,
      /** Average cores busy during the storm. */
      cores: {
        worker: cpu.workerMs / cpu.wallMs,
        api: cpu.benchMs / cpu.wallMs,
        postgres: cpu.postgresMs / cpu.wallMs,
        redis: cpu.redisMs / cpu.wallMs,
        other: cpu.otherMs / cpu.wallMs,
        machineBusy: cpu.machineBusyMs / cpu.wallMs,
        machineAvailable: cpu.machineTotalMs / cpu.wallMs,
      },
      benchPolls: polls,
    },
    postgresStats: {
      ...dbStats,
      commitsPerCluster: dbStats.commits / CONFIG.clusters,
      tablesPerCluster,
      note: 'pg_stat_database for this database, storm start → worker stopped: every autocommit statement and every transaction is one commit; includes the bench poller (one query per poll).',
    },
    books: { ...books, ok: booksOk },
    worker: {
      pid: worker.pid,
      exitCode: stoppedWith,
      finishedLogged: worker.lines.finished,
      dispatcherQueued: worker.lines.dispatcherQueued,
      errors: worker.lines.errors,
      tail: worker.lines.tail.slice(-10),
    },
  }
  log(
    `storm: ${fmt(totalMs / 1000, 1)} s total, per cluster first100 ${fmt(firstMean)} ms vs last100 ${fmt(lastMean)} ms, ${failures.length} failed; CPU worker ${fmt(cpu.workerMs)} ms, api ${fmt(cpu.benchMs)} ms, postgres ${fmt(cpu.postgresMs)} ms, redis ${fmt(cpu.redisMs)} ms over ${fmt(cpu.wallMs / 1000, 1)} s`,
  )
  return result
}

// ---------------------------------------------------------------------------------------------
// --cpu-prof summary: where the worker's CPU went.

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number }
  children?: number[]
}

function categoryOf(url: string, fn: string) {
  if (!url) return fn || '(anonymous)'
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
    if (pkg === '@kiln' || pkg.startsWith('@kiln/')) return `kiln ${rest.slice(1).join('/')}`
    return pkg
  }
  if (url.startsWith('node:')) return 'node internals'
  const local = url.replace(/^file:\/\//, '')
  if (local.startsWith(root)) {
    const rel = path.relative(root, local)
    if (rel.includes('/generated/')) return 'prisma generated client'
    return `kiln ${rel}`
  }
  return url
}

async function summariseCpuProfile(dir: string) {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'))
  if (files.length === 0) return null
  const sized = await Promise.all(files.map(async (f) => ({ f, size: (await stat(path.join(dir, f))).size })))
  const file = sized.sort((a, b) => b.size - a.size)[0]!.f
  const profile = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as {
    nodes: ProfileNode[]
    samples: number[]
    timeDeltas: number[]
  }
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const self = new Map<string, number>()
  const category = new Map<string, number>()
  const inclusive = new Map<string, number>()
  let total = 0
  let idle = 0
  const keyOf = (n: ProfileNode) =>
    `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url ? `${categoryOf(n.callFrame.url, '')}:${n.callFrame.lineNumber + 1}` : ''}`.trim()
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0
    const node = byId.get(profile.samples[i]!)
    if (!node) continue
    if (node.callFrame.functionName === '(idle)') {
      idle += dt
      continue
    }
    total += dt
    self.set(keyOf(node), (self.get(keyOf(node)) ?? 0) + dt)
    const cat = categoryOf(node.callFrame.url, node.callFrame.functionName)
    category.set(cat, (category.get(cat) ?? 0) + dt)
    // Inclusive time of Kiln's own functions (each once per sample, recursion or not).
    const seen = new Set<string>()
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!
      if (!n.callFrame.url.includes('/src/') || n.callFrame.url.includes('node_modules/.')) continue
      if (n.callFrame.url.includes('/generated/')) continue
      const k = keyOf(n)
      if (seen.has(k)) continue
      seen.add(k)
      inclusive.set(k, (inclusive.get(k) ?? 0) + dt)
    }
  }
  const top = (m: Map<string, number>, n: number) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: round(us / 1000, 1), percent: round((100 * us) / total, 1) }))
  return {
    file: path.join(dir, file),
    busyMs: round(total / 1000),
    idleMs: round(idle / 1000),
    byCategory: top(category, 20),
    topSelf: top(self, 25),
    kilnInclusive: top(inclusive, 25),
  }
}

// ---------------------------------------------------------------------------------------------
// --profile: queries per cluster create, one operation at a time, tagged by step.

async function profileQueries(db: Database, pool: pg.Pool) {
  await seedCatalogue(db, (await startSimulatorChild()).url)
  const sim = new SimulatorDriver('sim', DATA_CENTRE, dbUrl)
  onCleanup('simulator (books)', () => sim.close())
  await sim.inventory()
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, keyPrefix: prefixes.apiRedis })
  redis.on('error', () => {})
  onCleanup('redis (api)', async () => redis.disconnect())
  let tag = 'api'
  const queries: { tag: string; sql: string; ms: number }[] = []
  const tdb = openTracedDatabase(4, (e) => queries.push({ tag, sql: e.query, ms: e.duration }))
  await tdb.$queryRaw`SELECT 1`
  queries.length = 0

  const drivers = new DriverCache(dbUrl)
  onCleanup('drivers', () => drivers.closeAll())
  const definitions = buildOperationDefinitions({
    db: tdb,
    drivers,
    // The simulator child opens the clusters' CAs with the development key, as the storm's worker does.
    masterKey: masterKeyFromSettings({ devMode: true }).masterKey,
  })
  // Tag every step handler and finish with its name; the runner's own queries carry 'runner'.
  for (const def of Object.values(definitions)) {
    for (const [name, handler] of Object.entries(def.steps)) {
      def.steps[name] = async (ctx) => {
        tag = `step ${name}`
        try {
          return await handler(ctx)
        } finally {
          tag = 'runner'
        }
      }
    }
    const finish = def.finish.bind(def)
    def.finish = async (tx, op, outcome) => {
      tag = 'finish (in the closing tx)'
      try {
        return await finish(tx, op, outcome)
      } finally {
        tag = 'runner'
      }
    }
  }

  const n = CONFIG.profileClusters
  const cpu: number[] = []
  const pgCpu: number[] = []
  const wall: number[] = []
  const perOpQueries: number[] = []
  const opIds: string[] = []
  // POST through an API on the traced client (no queue: nothing dispatches), so its queries count too.
  const tracedApp = await buildApp({ db: tdb, redis, logger: false })
  onCleanup('kiln api (traced)', () => tracedApp.close())
  for (let i = 0; i < n; i++) {
    tag = 'api POST /clusters'
    const res = await tracedApp.inject({
      method: 'POST',
      url: `/v1/projects/${CONFIG.project}/clusters`,
      payload: { name: clusterName(i), template: CONFIG.template },
    })
    if (res.statusCode !== 202) throw new Error(`POST: ${res.statusCode} ${res.body}`)
    opIds.push((res.json() as { id: string }).id)
  }
  const apiQueries = queries.length
  for (const operationId of opIds) {
    const before = queries.length
    const pg0 = groupCpu('postgres')
    const c0 = process.cpuUsage()
    const t0 = performance.now()
    // What the engine's processor does per job (apps/worker/src/engine.ts), minus BullMQ.
    tag = 'job preamble'
    const op = (await tdb.operation.findUnique({ where: { id: operationId } })) as Operation
    if (op.status === 'pending') {
      tag = 'markProgressing'
      await markProgressing(tdb, op)
    }
    tag = 'runner'
    const r = await runOperation(tdb, operationId, definitions, {
      workerId: 'profiler',
      leaseMs: 15_000,
      classify: classifyError,
    })
    if (r.state !== 'finished' || r.outcome !== 'succeeded')
      throw new Error(`op ${operationId}: ${JSON.stringify(r)}`)
    wall.push(performance.now() - t0)
    const c = process.cpuUsage(c0)
    cpu.push((c.user + c.system) / 1000)
    pgCpu.push(groupDelta(pg0, groupCpu('postgres')))
    perOpQueries.push(queries.length - before)
  }
  // How Postgres runs the simulator's per-create queries (its own pool: not in the counts above).
  const explain = (sql: string, params: unknown[]) => explainAnalyze(pool, sql, params)
  const simulatorPlans = {
    capabilities: await explain(
      `SELECT machine_class, zone, count(*) FILTER (WHERE allocated_to IS NULL AND state = 'free') AS free
       FROM simulator.machines WHERE backend = $1 GROUP BY machine_class, zone`,
      ['sim'],
    ),
    claimPick: await explain(
      `SELECT id FROM simulator.machines
       WHERE backend = $1 AND machine_class = $2 AND zone = $3 AND allocated_to IS NULL AND state = 'free'
       ORDER BY rack, id LIMIT 1`,
      ['sim', 'm1.large', 'zone-a'],
    ),
  }
  const engineQueries = queries.slice(apiQueries)
  const byTag: Record<string, number> = {}
  const bySql = new Map<string, { count: number; ms: number; tags: Set<string> }>()
  for (const q of [...queries]) {
    byTag[q.tag] = (byTag[q.tag] ?? 0) + 1
    const key = q.sql.replace(/\s+/g, ' ').slice(0, 160)
    const e = bySql.get(key) ?? { count: 0, ms: 0, tags: new Set<string>() }
    e.count++
    e.ms += q.ms
    e.tags.add(q.tag)
    bySql.set(key, e)
  }
  const perOp = (x: number) => round(x / n, 1)
  const inventory = await sim.inventory()
  return {
    clusters: n,
    note: 'One operation at a time through the engine job path (findUnique, markProgressing, runOperation) on a Prisma client with query events; simulator SQL (its own pg pool) is not counted.',
    apiQueriesPerCreate: perOp(apiQueries),
    engineQueriesPerCreate: perOp(engineQueries.length),
    engineQueriesPerCreateByTag: Object.fromEntries(
      Object.entries(byTag)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => [k, perOp(v)]),
    ),
    engineCpuMsPerCreate: summary(cpu),
    /** All postgres processes, so other load on the server counts too; 10 ms tick resolution. */
    postgresCpuMsPerCreate: summary(pgCpu),
    simulatorPlans,
    engineWallMsPerCreate: summary(wall),
    queriesPerOp: summary(perOpQueries),
    statements: [...bySql.entries()]
      .sort((a, b) => b[1].count - a[1].count)
      .slice(0, 30)
      .map(([sql, e]) => ({ perCreate: perOp(e.count), msPerCreate: perOp(e.ms), tags: [...e.tags], sql })),
    simulatorAllocated: inventory.allocated,
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

interface Row {
  id: string
  figure: string
  value: string
  baseline: string
  ratio: string
  goal: string
  pass: boolean
  postgres: string
  redis: string
}

function table(rows: Row[]): string {
  const header = ['P', 'figure', 'value', 'baseline', 'ratio', 'goal', 'result', '+postgres', '+redis']
  const cells = rows.map((r) => [
    r.id,
    r.figure,
    r.value,
    r.baseline,
    r.ratio,
    r.goal,
    r.goal === 'info' ? 'INFO' : r.pass ? 'PASS' : 'MISS',
    r.postgres,
    r.redis,
  ])
  return formatTable(header, cells)
}

// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// P7 on capi: the same storm against a Cluster API backend. The management cluster is a Kiln
// cluster on the simulated data centre holding the official CRDs; Cluster API's controllers are the
// stand-in, a child process of its own (its CPU is the "cloud's", not Kiln's).

const capiNamespace = 'kiln-clusters'
const capiClusterName = (i: number) => `k-${String(i).padStart(4, '0')}`

async function kubectl(kubeconfig: string, cacheDir: string, args: string[]) {
  return execFileSync(
    'kubectl',
    ['--kubeconfig', kubeconfig, '--cache-dir', cacheDir, '--request-timeout', '60s', ...args],
    {
      encoding: 'utf8',
      maxBuffer: 512 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
}

async function capiStorm(db: Database, pool: pg.Pool, redis: Redis) {
  const clusters = CONFIG.capiClusters
  const simulator = await startSimulatorChild()
  const worker = await startWorkerChild(undefined)
  const app: KilnApp = await buildApp({
    db,
    redis,
    queue: { connection: producerConnection, prefix: prefixes.storm },
    logger: false,
    masterKey: masterKeyFromSettings({ devMode: true }).masterKey,
  })
  onCleanup('kiln api (capi)', () => app.close())
  let polls = 0
  const wait = async (ids: string[], timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM "Operation" WHERE id = ANY($1::uuid[]) AND status IN ('succeeded', 'failed', 'cancelled')`,
        [ids],
      )
      if (rows[0]!.n >= ids.length) return true
      if (Date.now() > deadline) return false
      if (++polls % 40 === 0) log(`  capi: ${rows[0]!.n}/${ids.length} operations terminal`)
      await sleep(CONFIG.pollMs)
    }
  }

  // The management cluster, as a platform team would run one: a cluster Kiln built, the CRDs installed.
  const made = await app.inject({
    method: 'POST',
    url: `/v1/projects/${CONFIG.project}/clusters`,
    payload: { name: 'capi-management', template: CONFIG.template },
  })
  if (made.statusCode !== 202) throw new Error(`management cluster: ${made.body}`)
  await wait([(made.json() as { id: string }).id], 120_000)
  const issued = await app.inject({
    method: 'POST',
    url: `/v1/projects/${CONFIG.project}/clusters/capi-management/kubeconfig`,
    payload: {},
  })
  if (issued.statusCode !== 201) throw new Error(`kubeconfig: ${issued.body}`)
  const dir = path.join(os.tmpdir(), `kiln-bench-capi-${runId}`)
  await mkdir(dir, { recursive: true })
  const kubeconfig = path.join(dir, 'management.kubeconfig')
  await writeFile(kubeconfig, (issued.json() as { kubeconfig: string }).kubeconfig, { mode: 0o600 })
  const cache = path.join(dir, 'cache')
  await kubectl(kubeconfig, cache, ['apply', '--server-side', ...clusterApiCrdDirs.flatMap((d) => ['-f', d])])
  await kubectl(kubeconfig, cache, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s'])
  await kubectl(kubeconfig, cache, ['create', 'namespace', capiNamespace])
  await kubectl(kubeconfig, cache, [
    'apply',
    '--server-side',
    '-n',
    capiNamespace,
    '-f',
    simulatedClusterClass,
  ])
  for (const template of ['kiln-simulated-control-plane', 'kiln-simulated-m1-medium'])
    await kubectl(kubeconfig, cache, [
      'annotate',
      '-n',
      capiNamespace,
      `openstackmachinetemplate/${template}`,
      `kiln.dev/max-per-failure-domain=${clusters * 3}`,
      '--overwrite',
    ])
  const standIn = spawn(process.execPath, ['--import', 'tsx', 'apps/simulator/src/capi/main.ts'], {
    cwd: root,
    env: { ...process.env, KUBECONFIG: kubeconfig, CAPI_NAMESPACES: capiNamespace, CAPI_INTERVAL_MS: '200' },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const standInExited = new Promise<void>((resolve) => standIn.once('exit', () => resolve()))
  onCleanup('cluster api stand-in', async () => {
    if (standIn.exitCode === null && standIn.signalCode === null) standIn.kill('SIGTERM')
    await standInExited
  })
  const registered = await app.inject({
    method: 'POST',
    url: '/v1/backends',
    payload: {
      name: 'cloud',
      kind: 'capi',
      config: simulatedCapiBackend(kubeconfig, simulator.url, { namespace: capiNamespace }),
    },
  })
  if (registered.statusCode !== 201) throw new Error(`backend: ${registered.body}`)
  // A worker copies the ClusterClass's machine classes into the catalogue as it starts.
  await worker.stop()
  const stormWorker = await startWorkerChild(undefined)
  const classDeadline = Date.now() + 60_000
  while (!(await db.machineClass.findUnique({ where: { name: 'c1.medium' } }))) {
    if (Date.now() > classDeadline) throw new Error('the capi machine classes never reached the catalogue')
    await sleep(500)
  }
  const backend = await db.backend.findUniqueOrThrow({ where: { name: 'cloud' } })
  await db.clusterTemplate.create({
    data: {
      name: 'cloud-1.31',
      version: 1,
      kubernetesVersion: '1.31.4',
      backendId: backend.id,
      controlPlane: { count: 1, machineClass: 'c1.medium' },
      nodeGroups: [{ name: 'workers', machineClass: 'c1.medium', count: 2, minCount: 1, maxCount: 10 }],
      features: {},
      lockedFeatures: [],
    },
  })

  const cpuStart = snapshot(stormWorker.pid)
  const standInCpuStart = procCpu(standIn.pid!)
  const simulatorCpuStart = procCpu(simulator.pid)
  const firstPostAt = Date.now()
  const ids: string[] = []
  let refused = 0
  await pump(clusters, CONFIG.postsInFlight, async (i) => {
    const res = await app.inject({
      method: 'POST',
      url: `/v1/projects/${CONFIG.project}/clusters`,
      payload: { name: capiClusterName(i), template: 'cloud-1.31' },
    })
    if (res.statusCode === 202) ids.push((res.json() as { id: string }).id)
    else refused++
  })
  const completed = await wait(ids, CONFIG.capiTimeoutMs)
  const cpu = cpuBetween(cpuStart, snapshot(stormWorker.pid))
  const standInCpuEnd = procCpu(standIn.pid!)
  const simulatorCpuEnd = procCpu(simulator.pid)
  const { rows: ops } = await pool.query<{ status: string; finishedAt: Date | null }>(
    `SELECT status, "finishedAt" FROM "Operation" WHERE id = ANY($1::uuid[])`,
    [ids],
  )
  const lastFinished = Math.max(...ops.filter((o) => o.finishedAt).map((o) => o.finishedAt!.getTime()))
  const succeeded = ops.filter((o) => o.status === 'succeeded').length

  // Books: each Kiln cluster's machine names are exactly its Cluster's slots, each on a Machine of its own.
  const capi = JSON.parse(
    await kubectl(kubeconfig, cache, ['get', 'clusters.cluster.x-k8s.io', '-n', capiNamespace, '-o', 'json']),
  ) as { items: { metadata: { labels: Record<string, string>; annotations: Record<string, string> } }[] }
  const machines = JSON.parse(
    await kubectl(kubeconfig, cache, ['get', 'machines.cluster.x-k8s.io', '-n', capiNamespace, '-o', 'json']),
  ) as { items: { metadata: { name: string } }[] }
  const { rows: kiln } = await pool.query<{ id: string; names: string[] }>(
    `SELECT c.id, array_agg(m.name ORDER BY m.name) AS names FROM "Cluster" c
     JOIN "ClusterTemplate" t ON t.id = c."templateId" JOIN "Backend" b ON b.id = t."backendId"
     JOIN "Machine" m ON m."clusterId" = c.id WHERE b.name = 'cloud' GROUP BY c.id`,
  )
  const slotsOf = new Map(
    capi.items.map((c) => [
      c.metadata.labels['kiln.dev/cluster-id'],
      JSON.parse(c.metadata.annotations['kiln.dev/machines'] ?? '{}') as Record<string, { m?: string }>,
    ]),
  )
  const boundMachines = new Set<string>()
  let slotMismatch = 0
  for (const k of kiln) {
    const slots = slotsOf.get(k.id) ?? {}
    if (Object.keys(slots).sort().join() !== k.names.join()) slotMismatch++
    for (const slot of Object.values(slots)) if (slot.m) boundMachines.add(slot.m)
  }
  const expectedNodes = clusters * CONFIG.nodesPerCluster
  const books = {
    expectedNodes,
    capiClusters: capi.items.length,
    capiMachines: machines.items.length,
    boundMachines: boundMachines.size,
    kilnClusters: kiln.length,
    slotMismatch,
    ok:
      capi.items.length === clusters &&
      machines.items.length === expectedNodes &&
      boundMachines.size === expectedNodes &&
      kiln.length === clusters &&
      slotMismatch === 0,
  }
  await stormWorker.stop()
  const standInMs = standInCpuStart && standInCpuEnd ? standInCpuEnd.self - standInCpuStart.self : Number.NaN
  const perNode = (ms: number) => ms / expectedNodes
  const simulatorMs =
    simulatorCpuStart && simulatorCpuEnd ? simulatorCpuEnd.self - simulatorCpuStart.self : Number.NaN
  return {
    clusters,
    completed,
    refused,
    succeeded,
    totalMs: lastFinished - firstPostAt,
    cpu: {
      ...cpu,
      standInMs,
      simulatorMs,
      workerMsPerNode: perNode(cpu.workerMs),
      apiMsPerNode: perNode(cpu.benchMs),
      platformMsPerNode: perNode(cpu.workerMs + cpu.benchMs),
      postgresMsPerNode: perNode(cpu.postgresMs),
    },
    books,
  }
}

async function main() {
  const started = Date.now()
  const demand = zoneDemand(CONFIG.clusters)
  if (!demand.fits)
    throw new Error(`data centre too small: needs ${JSON.stringify(demand.need)}, ${demand.perZone}/zone`)
  const profileOnly = args.has('--profile')
  const cpuProf = args.has('--cpu-prof')
  log(
    `run ${runId}: ${os.cpus().length} CPUs, node ${process.version}, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}${profileOnly ? ', query profile only' : ''}`,
  )

  const plain = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  plain.on('error', () => {})
  onCleanup('redis keys', async () => {
    const n = await deleteRunKeys(plain)
    log(`deleted ${n} Redis keys under ${keyBase}*`)
    plain.disconnect()
  })

  await createBenchDatabase()

  const db = createDatabase({ url: dbUrl, maxConnections: CONFIG.apiPoolSize })
  onCleanup('prisma (api)', () => db.$disconnect())
  const pool = new pg.Pool({ connectionString: dbUrl, max: 4 })
  pool.on('error', (e) => log(`pg pool: ${e.message}`))
  onCleanup('pg pool (bench)', () => pool.end())

  if (profileOnly) {
    const profile = await profileQueries(db, pool)
    process.stdout.write(
      `\nKiln cluster create, queries per operation (${profile.clusters} creates, one at a time)\n\n`,
    )
    process.stdout.write(`API POST /clusters: ${profile.apiQueriesPerCreate} queries\n`)
    process.stdout.write(
      `engine: ${profile.engineQueriesPerCreate} queries, CPU ${profile.engineCpuMsPerCreate.mean} ms (p50 ${profile.engineCpuMsPerCreate.p50}), wall ${profile.engineWallMsPerCreate.mean} ms per create\n`,
    )
    process.stdout.write(
      `postgres CPU per create (all postgres processes): mean ${profile.postgresCpuMsPerCreate.mean} ms, p50 ${profile.postgresCpuMsPerCreate.p50} ms\n`,
    )
    for (const [k, v] of Object.entries(profile.engineQueriesPerCreateByTag))
      process.stdout.write(`  ${String(v).padStart(6)}  ${k}\n`)
    process.stdout.write('\ntop statements (per create):\n')
    for (const s of profile.statements.slice(0, 20))
      process.stdout.write(
        `  ${String(s.perCreate).padStart(5)}  [${s.tags.join(', ')}]  ${s.sql.slice(0, 110)}\n`,
      )
    for (const [name, plan] of Object.entries(profile.simulatorPlans))
      process.stdout.write(`\nsimulator ${name}:\n    ${plan.join('\n    ')}\n`)
    await writeResults('provision-profile', started, {
      runId,
      startedAt: new Date(started).toISOString(),
      profile,
    })
    return
  }

  // P5.
  const t = performance.now()
  const enqueue = await measureEnqueue()
  const latency = await measureLatency()
  const p5Seconds = (performance.now() - t) / 1000

  // P6/P7.
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, keyPrefix: prefixes.apiRedis })
  redis.on('error', () => {})
  onCleanup('redis (api)', async () => redis.disconnect())
  // Profiles are large: they stay outside the repository.
  const profDir = cpuProf ? path.join(os.tmpdir(), `kiln-bench-cpuprof-${runId}`) : undefined
  if (profDir) await mkdir(profDir, { recursive: true })
  const s = await storm(db, pool, redis, profDir)
  const cpuProfile = profDir ? await summariseCpuProfile(profDir) : null
  const c = CONFIG.capiClusters > 0 ? await capiStorm(db, pool, redis) : undefined

  const enqueueRatio = enqueue.kilnPerSecond / enqueue.rawPerSecond
  const rows: Row[] = [
    {
      id: 'P5',
      figure: `enqueue jobs/s (${enqueue.inFlight} in flight)`,
      value: `${fmt(enqueue.kilnPerSecond)} JobProducer`,
      baseline: `${fmt(enqueue.rawPerSecond)} raw add`,
      ratio: `${fmt(enqueueRatio, 2)}x`,
      goal: '>= 0.50x',
      pass: enqueueRatio >= 0.5,
      postgres: '-',
      redis: '-',
    },
    {
      id: 'P5',
      figure: `add→start ms p50/p99 (${CONFIG.latencyRatePerSecond}/s)`,
      value: `${latency.addToStartMs.p50}/${latency.addToStartMs.p99}`,
      baseline: '-',
      ratio: '-',
      goal: 'p99 < 20 ms',
      pass: latency.addToStartMs.p99 < 20,
      postgres: '-',
      redis: '-',
    },
    {
      id: 'P7',
      figure: `storm: first POST → last finishedAt`,
      value: `${fmt(s.timeline.totalMs / 1000, 1)} s`,
      baseline: `posts ${fmt(s.timeline.postsMs / 1000, 1)} s`,
      ratio: '-',
      goal: '< 60 s',
      pass: s.completed && s.timeline.totalMs < 60_000,
      postgres: '-',
      redis: '-',
    },
    {
      // Whether provisioning slows down as the data centre and the tables fill: the time each
      // operation runs (startedAt → finishedAt), last 100 created vs first 100.
      id: 'P7',
      figure: 'per-cluster run ms: last 100 vs first 100',
      value: `${fmt(s.perClusterMs.run.last100Mean)} last`,
      baseline: `${fmt(s.perClusterMs.run.first100Mean)} first`,
      ratio: `${fmt(s.perClusterMs.run.last100Mean / s.perClusterMs.run.first100Mean, 2)}x`,
      goal: '<= 1.50x',
      pass: s.perClusterMs.run.last100Mean / s.perClusterMs.run.first100Mean <= 1.5,
      postgres: '-',
      redis: '-',
    },
    {
      // Information, not a goal: end to end (createdAt → finishedAt) includes queue wait, which grows
      // for as long as POSTs arrive faster than one worker on two shared cores completes them.
      id: 'P7*',
      figure: 'per-cluster end-to-end ms incl. queue',
      value: `${fmt(s.perClusterMs.last100Mean)} last`,
      baseline: `${fmt(s.perClusterMs.first100Mean)} first`,
      ratio: `${fmt(s.perClusterMs.ratio, 2)}x`,
      goal: 'info',
      pass: true,
      postgres: '-',
      redis: '-',
    },
    {
      id: 'P7',
      figure: 'operations succeeded',
      value: `${s.outcomes.succeeded ?? 0}/${s.clusters}`,
      baseline: `${s.failures} not succeeded`,
      ratio: '-',
      goal: '0 failures',
      pass: s.completed && s.failures === 0 && (s.outcomes.succeeded ?? 0) === s.clusters,
      postgres: '-',
      redis: '-',
    },
    {
      id: 'P6',
      figure: 'platform CPU ms per node (worker+API)',
      value: `${fmt(s.cpu.platformMsPerNode, 2)}`,
      baseline: `w ${fmt(s.cpu.workerMsPerNode, 2)} + api ${fmt(s.cpu.apiMsPerNode, 2)}`,
      ratio: '-',
      goal: '<= 20 ms',
      pass: s.cpu.platformMsPerNode <= 20,
      postgres: `${fmt(s.cpu.postgresMsPerNode, 2)} ms/node`,
      redis: `${fmt(s.cpu.redisMsPerNode, 2)} ms/node`,
    },
    {
      id: 'books',
      figure: 'simulator allocated == Machine rows',
      value: `${s.books.simulatorAllocated} == ${s.books.machineRows}`,
      baseline: `${s.books.expectedNodes} expected`,
      ratio: '-',
      goal: `== ${s.books.expectedNodes}, names agree`,
      pass: s.books.ok,
      postgres: '-',
      redis: '-',
    },
  ]
  if (c)
    rows.push(
      {
        id: 'P7c',
        figure: `capi storm: ${c.clusters} clusters, first POST → last finishedAt`,
        value: `${fmt(c.totalMs / 1000, 1)} s`,
        baseline: `sim ${fmt(s.timeline.totalMs / 1000, 1)} s`,
        ratio: `${fmt(c.totalMs / s.timeline.totalMs, 2)}x`,
        goal: 'info',
        pass: true,
        postgres: '-',
        redis: '-',
      },
      {
        id: 'P7c',
        figure: 'capi operations succeeded',
        value: `${c.succeeded}/${c.clusters}`,
        baseline: `${c.refused} refused`,
        ratio: '-',
        goal: '0 failures',
        pass: c.completed && c.succeeded === c.clusters,
        postgres: '-',
        redis: '-',
      },
      {
        id: 'P6c',
        figure: 'capi platform CPU ms per node (worker+API)',
        value: `${fmt(c.cpu.platformMsPerNode, 2)}`,
        baseline: `w ${fmt(c.cpu.workerMsPerNode, 2)} + api ${fmt(c.cpu.apiMsPerNode, 2)}`,
        ratio: '-',
        goal: 'info',
        pass: true,
        postgres: `${fmt(c.cpu.postgresMsPerNode, 2)} ms/node`,
        redis: '-',
      },
      {
        id: 'books',
        figure: 'capi: slots == Machine rows, one Machine each',
        value: `${c.books.boundMachines} bound of ${c.books.capiMachines}`,
        baseline: `${c.books.expectedNodes} expected`,
        ratio: '-',
        goal: `${c.books.expectedNodes}, ${c.clusters} Clusters, 0 mismatches`,
        pass: c.books.ok,
        postgres: '-',
        redis: '-',
      },
    )
  const printed = table(rows)
  const notes = [
    `P5: ${enqueue.jobsPerSide} adds per side after ${CONFIG.enqueueWarmup} discarded, slices A B C C B A; raw add with Kiln's job options (attempts, backoff, removeOn…): ${fmt(enqueue.rawWithKilnOptionsPerSecond)} jobs/s. Latency: ${latency.jobs} jobs at ${fmt(latency.achievedRatePerSecond)}/s to a ${latency.workerConcurrency}-concurrency Worker in this process; job.timestamp is taken by the producer before its add round trip (enqueue call p50/p99 ${latency.enqueueCallMs.p50}/${latency.enqueueCallMs.p99} ms).`,
    `P7: ${s.clusters} × ${CONFIG.nodesPerCluster} nodes, POSTs ${CONFIG.postsInFlight} in flight (${fmt(s.posts.perSecond)}/s, p50/p99 ${s.posts.latencyMs.p50}/${s.posts.latencyMs.p99} ms), one worker child with concurrency ${CONFIG.workerConcurrency}: ${fmt(s.timeline.workerOpsPerSecond, 1)} operations/s; queue wait (startedAt − createdAt) first/last 100 ${fmt(s.perClusterMs.queueWait.first100Mean)}/${fmt(s.perClusterMs.queueWait.last100Mean)} ms, run (finishedAt − startedAt) ${fmt(s.perClusterMs.run.first100Mean)}/${fmt(s.perClusterMs.run.last100Mean)} ms; ${s.retriedOperations} operations ran more than once; ${s.dispatcherTouched} were touched again by the dispatcher.`,
    `P6: CPU during the storm (${fmt(s.cpu.wallMs / 1000, 1)} s wall): worker ${fmt(s.cpu.workerMs)} ms (${fmt(s.cpu.cores.worker, 2)} cores, ${fmt((100 * s.cpu.workerSystemMs) / s.cpu.workerMs)}% in the kernel), API/bench process ${fmt(s.cpu.benchMs)} ms (${fmt(s.cpu.cores.api, 2)} cores, incl. app.inject and ${s.cpu.benchPolls} poll queries). NOT in P6: Postgres ${fmt(s.cpu.postgresMs)} ms (${fmt(s.cpu.cores.postgres, 2)} cores, all postgres processes incl. reaped backends; other databases' load on this server counts too), Redis ${fmt(s.cpu.redisMs)} ms. Machine: ${fmt(s.cpu.cores.machineBusy, 2)} of ${fmt(s.cpu.cores.machineAvailable, 1)} cores busy, ${fmt(s.cpu.cores.other, 2)} of them outside this stack (other processes on the machine). Postgres commits (statements + transactions) per cluster: ${fmt(s.postgresStats.commitsPerCluster, 1)}.`,
    `Postgres rows per cluster (storm): ${Object.entries(s.postgresStats.tablesPerCluster)
      .map(
        ([t, v]) =>
          `${t.replace(/^public\./, '')} +${v.inserted}/~${v.updated}/-${v.deleted}${v.seqScans >= 0.5 ? ` (${v.seqScans} seq scans)` : ''}`,
      )
      .join(', ')} (inserted/updated/deleted).`,
    ...(c
      ? [
          `P7c/P6c: the same storm on a capi backend (${c.clusters} clusters × ${CONFIG.nodesPerCluster} nodes) through a simulated management cluster with the official Cluster API CRDs and the stand-in for Cluster API's controllers in a child process of its own (${fmt(c.cpu.standInMs)} ms CPU, the "cloud's", not in P6c; the simulated API server serving the management and every workload cluster ${fmt(c.cpu.simulatorMs)} ms). Books: ${c.books.capiClusters} Clusters, ${c.books.capiMachines} Machines, ${c.books.boundMachines} bound to slots, ${c.books.slotMismatch} slot mismatches.`,
        ]
      : []),
    `Books: simulator ${s.books.simulatorAllocated} allocated over ${s.books.simulatorClusters} clusters, Machine rows ${s.books.machineRows} (${JSON.stringify(s.books.machinePhases)}), names ${s.books.namesAgree ? 'agree' : 'DIFFER'}; cluster phases ${JSON.stringify(s.books.clusterPhases)}.`,
  ]
  printReport('Kiln provisioning benchmark', printed, notes)
  if (s.failures > 0) process.stdout.write(`- failures: ${JSON.stringify(s.failureCodes)}\n`)
  if (cpuProfile) {
    process.stdout.write(`\nworker CPU profile (${cpuProfile.file}, busy ${cpuProfile.busyMs} ms):\n`)
    for (const c of cpuProfile.byCategory.slice(0, 12))
      process.stdout.write(`  ${String(c.percent).padStart(5)}%  ${c.name}\n`)
    process.stdout.write('  Kiln functions, inclusive:\n')
    for (const c of cpuProfile.kilnInclusive.slice(0, 15))
      process.stdout.write(`  ${String(c.percent).padStart(5)}%  ${c.name}\n`)
  }
  await writeResults('provision', started, {
    runId,
    startedAt: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    machine: { ...describeMachine(), loadAverageAtEnd: os.loadavg() },
    config: CONFIG,
    dataCentre: DATA_CENTRE,
    template: { controlPlane: CONTROL_PLANE, nodeGroups: NODE_GROUPS },
    p5: { seconds: p5Seconds, enqueue, latency },
    storm: s,
    capiStorm: c,
    cpuProfile,
    rows,
    notes,
    table: printed,
  })
}

await runBench(main, {
  cleanupTimeoutMs: 30_000,
  interrupting: `stopping, dropping ${dbName} and deleting ${keyBase}* keys`,
  cleanedUp: `${dbName} dropped, ${keyBase}* keys deleted`,
})
