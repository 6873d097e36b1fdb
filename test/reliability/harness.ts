import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import pg from 'pg'
import { expect } from 'vitest'
import { buildApp, type KilnApp } from '../../apps/api/src/app.ts'
import { startApiServer } from '../../apps/simulator/src/server.ts'
import { createDatabase, type Database } from '../../packages/db/src/index.ts'
import { type SimulatorConfig, SimulatorDriver } from '../../packages/drivers/src/index.ts'
import { masterKeyFromSettings } from '../../packages/pki/src/index.ts'
import { aKubernetesVersion, aMachineClass, aProject, aTemplate } from '../support/builders.ts'
import {
  type EphemeralPostgres,
  type EphemeralRedis,
  exited,
  migrate,
  spawnTracked,
  startEphemeralPostgres,
  startEphemeralRedis,
} from '../support/ephemeral-services.ts'

// The reliability harness: a throwaway PostgreSQL and Redis, the real API in this process, and the
// real worker as child processes (`node --import tsx apps/worker/src/main.ts`), all on a simulated
// data centre. Nothing here touches the machine's shared PostgreSQL or Redis.

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url))
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
export const between = (min: number, max: number) => min + Math.random() * (max - min)

export const project = 'team-a'
export const templateName = 'k8s-1.31'
const backendName = 'sim'
const machineClass = 'm1.large'

/** One CPU class in two zones, with room for every test here (control planes all land in zone-a). */
export const dataCentre = (over: Partial<SimulatorConfig> = {}): SimulatorConfig => ({
  zones: ['zone-a', 'zone-b'],
  racksPerZone: 2,
  machineClasses: [
    { name: machineClass, cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, perRack: 60 },
  ],
  ...over,
})

/**
 * Latency that keeps operations in flight long enough to be interrupted: the calls that change
 * machines take `minMs`–`maxMs`, everything else 20–80 ms.
 */
export function slowMachineCalls(minMs: number, maxMs: number): SimulatorConfig['latency'] {
  const slow = { minMs, maxMs }
  return { default: { minMs: 20, maxMs: 80 }, ensureMachines: slow, bootstrap: slow, joinMachines: slow }
}

export type OperationStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled'
const terminal = new Set<OperationStatus>(['succeeded', 'failed', 'cancelled'])
export const isTerminal = (status: OperationStatus) => terminal.has(status)

export interface WorkerProcess {
  name: string
  pid: number
  child: ChildProcess
  startedAt: number
  /** When it logged `worker ready` (undefined before). */
  readyAt: number | undefined
  /** The engine's worker id (its lease owner name), from the `worker ready` line. */
  workerId: string | undefined
  ready: Promise<void>
  alive(): boolean
  /** SIGKILL: no shutdown hook runs, leases and BullMQ locks are left to expire. */
  kill9(): Promise<void>
  /** SIGTERM (graceful), SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>
}

/** An API server as a child process (`node --import tsx apps/api/src/main.ts`) on an ephemeral port. */
export interface ApiProcess {
  name: string
  child: ChildProcess
  /** `http://127.0.0.1:<port>`, once it listens. */
  url: string
  alive(): boolean
  /** SIGTERM: the API finishes in-flight requests and exits; SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>
}

/** Environment overrides for a child process; `undefined` removes a variable. */
export type EnvOverrides = Record<string, string | undefined>

function childEnv(base: EnvOverrides, overrides: EnvOverrides = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...base, ...overrides }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k]
  return env
}

/** The two books of the data centre side by side: the simulator's and Kiln's. */
export interface Books {
  /** Simulator machines with an `allocated_to`. */
  simulatorAllocated: number
  /** `SimulatorDriver.inventory().allocated`, the driver's own count. */
  inventoryAllocated: number
  machineRows: number
  clusters: number
  /** Kiln machine names holding more than one simulator machine. */
  allocatedTwice: string[]
  /** Simulator machines referenced by more than one Kiln Machine row. */
  sharedExternalIds: string[]
  /** Simulator allocations no Machine row accounts for (name, id and cluster must all match). */
  allocationsWithoutMachine: string[]
  /** Machine rows with no matching simulator allocation. */
  machinesWithoutAllocation: string[]
  /** Machine rows whose cluster does not exist (cannot happen with the FK; checked anyway). */
  machinesWithoutCluster: string[]
}

export interface Stack {
  pg: EphemeralPostgres
  redis: EphemeralRedis
  databaseUrl: string
  prefix: string
  db: Database
  app: KilnApp
  simulator: SimulatorConfig
  /** Where the simulated API server (every cluster's, routed by TLS server name) listens. */
  apiServerPort: number
  workers: WorkerProcess[]
  /** Starts a worker process; `env` overrides its environment (another Redis topology, say). */
  startWorker(env?: EnvOverrides): WorkerProcess
  /** Starts an API process on the stack's database and queue; resolves once it listens. */
  startApi(env?: EnvOverrides): Promise<ApiProcess>
  liveWorkers(): WorkerProcess[]
  createCluster(name: string): Promise<string>
  deleteCluster(name: string): Promise<string>
  /** POST /v1/operations/{id}/retry; returns the HTTP status. */
  retryOperation(id: string): Promise<number>
  /** Operation statuses by id, read from PostgreSQL. */
  statuses(ids: string[]): Promise<Map<string, OperationStatus>>
  /** Polls until every operation is terminal; throws (with a status summary) after `timeoutMs`. */
  waitTerminal(ids: string[], timeoutMs: number, onTick?: () => Promise<void> | void): Promise<void>
  books(): Promise<Books>
  /** Asserts that the simulator and Kiln agree exactly, and returns the books. */
  expectNoOrphans(expectedAllocated: number): Promise<Books>
  /**
   * Waits for the operations, then asserts that every one succeeded, every cluster is Ready and the
   * books hold `machinesPerCluster` machines for each operation's cluster.
   */
  expectAllReady(ids: string[], machinesPerCluster: number, timeoutMs: number): Promise<Books>
  /** A server started beside the stack (Sentinel, PgBouncer…): closed after Kiln's processes, its logs in dumpLogs. */
  adopt<T extends { logs(): string[]; close(): Promise<unknown> }>(server: T): T
  log(line: string): void
  logs(): string[]
  /** The last `n` lines of worker and server output, for failure reports. */
  dumpLogs(n?: number): void
  close(): Promise<void>
}

export interface StackOptions {
  simulator: SimulatorConfig
  /** Control-plane machines per cluster. */
  controlPlane?: number
  /** Worker machines per cluster (one node group). */
  workers?: number
  workerConcurrency?: number
  /**
   * Fills the new, empty database instead of migrating and seeding it (a backup restore): the
   * catalogue, projects and clusters are whatever it brings.
   */
  restore?: (databaseUrl: string) => Promise<void>
  /** The simulated API server's port (default: a free one); a restored stack reuses the old one. */
  apiServerPort?: number
}

/** The simulated data centre, its catalogue and the project, in a freshly migrated database. */
async function seedDataCentre(db: Database, options: StackOptions, apiServerPort: number) {
  const backend = await db.backend.create({
    data: {
      name: backendName,
      kind: 'simulator',
      config: { ...options.simulator, apiServerUrl: `https://127.0.0.1:${apiServerPort}` } as object,
      capabilities: { zones: options.simulator.zones },
    },
  })
  await aMachineClass(db, backend.id, { name: machineClass, zones: options.simulator.zones })
  await aKubernetesVersion(db, '1.31.4')
  await aTemplate(db, backend.id, {
    name: templateName,
    controlPlane: { count: options.controlPlane ?? 1, machineClass },
    nodeGroups: [{ name: 'workers', machineClass, count: options.workers ?? 2, minCount: 1, maxCount: 10 }],
  })
  await aProject(db, project)
}

/** Starts PostgreSQL and Redis of its own, migrates and seeds (or restores), and builds the API. */
export async function startStack(options: StackOptions): Promise<Stack> {
  const lines: string[] = []
  const log = (line: string) => {
    lines.push(`${new Date().toISOString()} ${line}`)
    if (lines.length > 20_000) lines.splice(0, lines.length - 20_000)
  }
  const pgServer = await startEphemeralPostgres()
  let redisServer: EphemeralRedis | undefined
  const cleanup: (() => Promise<unknown>)[] = [() => pgServer.close()]
  const closeAll = async () => {
    for (const fn of cleanup.reverse()) await fn().catch((e) => log(`cleanup failed: ${e}`))
    cleanup.length = 0
  }
  try {
    redisServer = await startEphemeralRedis()
    const redisFixed = redisServer
    cleanup.push(() => redisFixed.close())
    const databaseUrl = pgServer.url()
    const started = Date.now()
    await (options.restore ?? migrate)(databaseUrl)
    log(`${options.restore ? 'restored' : 'migrated'} in ${Date.now() - started} ms`)

    const db = createDatabase({ url: databaseUrl, maxConnections: 10 })
    cleanup.push(() => db.$disconnect())
    // The clusters' simulated API server, for the add-on step; workers run in dev mode, so it opens
    // their CAs with the development key too.
    const apiServer = await startApiServer({
      db,
      masterKey: masterKeyFromSettings({ devMode: true }).masterKey,
      port: options.apiServerPort ?? 0,
    })
    cleanup.push(() => apiServer.close())
    if (!options.restore) await seedDataCentre(db, options, apiServer.port)

    const prefix = 'kiln-reliability'
    const appRedis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 })
    appRedis.on('error', () => {})
    cleanup.push(async () => appRedis.disconnect())
    const app = await buildApp({
      db,
      redis: appRedis,
      // The workers' development key: the API signs kubeconfigs with the CAs they sealed.
      masterKey: masterKeyFromSettings({ devMode: true }).masterKey,
      queue: { connection: { url: redisServer.url, maxRetriesPerRequest: 1 }, prefix },
      operationPollMs: 100,
    })
    cleanup.push(() => app.close())

    const adopted: { logs(): string[]; close(): Promise<unknown> }[] = []
    cleanup.push(() => Promise.all(adopted.map((s) => s.close())))
    const workers: WorkerProcess[] = []
    cleanup.push(async () => {
      await Promise.all(workers.filter((w) => w.alive()).map((w) => w.stop(10_000)))
    })
    let workerCount = 0
    /** A Kiln process (`node --import tsx <entry>`) on the stack's database and queue, in dev mode. */
    const spawnKiln = (entry: string, own: EnvOverrides, overrides: EnvOverrides = {}) =>
      spawnTracked(process.execPath, ['--import', 'tsx', entry], {
        cwd: repoRoot,
        env: childEnv(
          {
            DATABASE_URL: databaseUrl,
            REDIS_URL: redisFixed.url,
            KILN_DEV_MODE: 'true',
            KILN_QUEUE_PREFIX: prefix,
            ...own,
          },
          overrides,
        ),
      })

    const startWorker = (env?: EnvOverrides): WorkerProcess => {
      const name = `w${++workerCount}`
      const child = spawnKiln(
        'apps/worker/src/main.ts',
        {
          WORKER_CONCURRENCY: String(options.workerConcurrency ?? 8),
          OPERATION_LEASE_MS: '3000',
          HEALTH_INTERVAL_MS: '0',
          // Faults pass in seconds here; production's 30 s between attempts would only slow the runs.
          KILN_RETRY_MAX_DELAY_SECONDS: '2',
        },
        env,
      )
      let markReady: () => void = () => {}
      const worker: WorkerProcess = {
        name,
        pid: child.pid!,
        child,
        startedAt: Date.now(),
        readyAt: undefined,
        workerId: undefined,
        ready: new Promise<void>((resolve) => {
          markReady = resolve
        }),
        alive: () => child.exitCode === null && child.signalCode === null,
        async kill9() {
          if (!worker.alive()) return
          child.kill('SIGKILL')
          await exited(child)
        },
        async stop(graceMs = 15_000) {
          if (!worker.alive()) return
          child.kill('SIGTERM')
          const done = await Promise.race([exited(child).then(() => true), sleep(graceMs).then(() => false)])
          if (!done) await worker.kill9()
        },
      }
      const onData = (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n')) {
          if (line.trim() === '') continue
          log(`[${name} pid ${child.pid}] ${line}`)
          if (worker.readyAt === undefined && line.includes('"worker ready"')) {
            worker.readyAt = Date.now()
            worker.workerId = /"workerId":"([^"]+)"/.exec(line)?.[1]
            markReady()
          }
        }
      }
      child.stdout?.on('data', onData)
      child.stderr?.on('data', onData)
      child.once('exit', (code, signal) =>
        log(`[${name} pid ${child.pid}] exited code=${code} signal=${signal}`),
      )
      workers.push(worker)
      return worker
    }

    const apis: ApiProcess[] = []
    cleanup.push(async () => {
      await Promise.all(apis.filter((a) => a.alive()).map((a) => a.stop(10_000)))
    })
    const startApi = async (env?: EnvOverrides): Promise<ApiProcess> => {
      const name = `api${apis.length + 1}`
      const child = spawnKiln(
        'apps/api/src/main.ts',
        {
          HOST: '127.0.0.1',
          PORT: '0',
          KILN_API_PROCESSES: '1',
          LOG_LEVEL: 'info',
        },
        env,
      )
      const alive = () => child.exitCode === null && child.signalCode === null
      // Settles once: the listening line, the process's exit, or 90 s of silence.
      const listening = new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${name} did not listen within 90 s`)), 90_000)
        child.once('exit', (code, signal) => {
          clearTimeout(timer)
          reject(new Error(`${name} exited (${code ?? signal}) before listening`))
        })
        const onData = (chunk: Buffer) => {
          for (const line of chunk.toString().split('\n')) {
            if (line.trim() === '') continue
            log(`[${name} pid ${child.pid}] ${line}`)
            const url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)?.[1]
            if (url) {
              clearTimeout(timer)
              resolve(url)
            }
          }
        }
        child.stdout?.on('data', onData)
        child.stderr?.on('data', onData)
      })
      child.once('exit', (code, signal) =>
        log(`[${name} pid ${child.pid}] exited code=${code} signal=${signal}`),
      )
      const api: ApiProcess = {
        name,
        child,
        url: '',
        alive,
        async stop(graceMs = 15_000) {
          if (!alive()) return
          child.kill('SIGTERM')
          const done = await Promise.race([exited(child).then(() => true), sleep(graceMs).then(() => false)])
          if (!done) {
            child.kill('SIGKILL')
            await exited(child)
          }
        },
      }
      apis.push(api)
      api.url = await listening
      return api
    }

    const statuses = async (ids: string[]) => {
      const rows = await db.operation.findMany({
        where: { id: { in: ids } },
        select: { id: true, status: true },
      })
      return new Map(rows.map((r) => [r.id, r.status as OperationStatus]))
    }

    const summary = (map: Map<string, OperationStatus>) => {
      const counts: Record<string, number> = {}
      for (const s of map.values()) counts[s] = (counts[s] ?? 0) + 1
      return counts
    }

    const books = async (): Promise<Books> => {
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect()
      try {
        const sim = await client.query<{ id: string; allocated_to: string; cluster_id: string | null }>(
          `SELECT id, allocated_to, cluster_id FROM simulator.machines
           WHERE backend = $1 AND allocated_to IS NOT NULL`,
          [backendName],
        )
        const machines = await client.query<{
          name: string
          clusterId: string
          externalId: string | null
          clusterExists: boolean
        }>(
          `SELECT m.name, m."clusterId", m."externalId", (c.id IS NOT NULL) AS "clusterExists"
           FROM "Machine" m LEFT JOIN "Cluster" c ON c.id = m."clusterId"`,
        )
        const clusters = await client.query<{ n: string }>('SELECT count(*) AS n FROM "Cluster"')
        const twice = await client.query<{ allocated_to: string }>(
          `SELECT allocated_to FROM simulator.machines WHERE allocated_to IS NOT NULL
           GROUP BY allocated_to HAVING count(*) > 1`,
        )
        const shared = await client.query<{ externalId: string }>(
          `SELECT "externalId" FROM "Machine" WHERE "externalId" IS NOT NULL
           GROUP BY "externalId" HAVING count(*) > 1`,
        )
        const byName = new Map(machines.rows.map((m) => [m.name, m]))
        const simByName = new Map(sim.rows.map((s) => [s.allocated_to, s]))
        const driver = new SimulatorDriver(backendName, options.simulator, databaseUrl)
        let inventoryAllocated: number
        try {
          inventoryAllocated = (await driver.inventory()).allocated
        } finally {
          await driver.close()
        }
        return {
          simulatorAllocated: sim.rows.length,
          inventoryAllocated,
          machineRows: machines.rows.length,
          clusters: Number(clusters.rows[0]!.n),
          allocatedTwice: twice.rows.map((r) => r.allocated_to),
          sharedExternalIds: shared.rows.map((r) => r.externalId),
          allocationsWithoutMachine: sim.rows
            .filter((s) => {
              const m = byName.get(s.allocated_to)
              return !m || m.externalId !== s.id || m.clusterId !== s.cluster_id
            })
            .map((s) => `${s.allocated_to} (${s.id}, cluster ${s.cluster_id})`),
          machinesWithoutAllocation: machines.rows
            .filter((m) => simByName.get(m.name)?.id !== m.externalId || m.externalId === null)
            .map((m) => `${m.name} (externalId ${m.externalId})`),
          machinesWithoutCluster: machines.rows.filter((m) => !m.clusterExists).map((m) => m.name),
        }
      } finally {
        await client.end()
      }
    }

    const stack: Stack = {
      pg: pgServer,
      redis: redisFixed,
      databaseUrl,
      prefix,
      db,
      app,
      simulator: options.simulator,
      apiServerPort: apiServer.port,
      workers,
      startWorker,
      startApi,
      liveWorkers: () => workers.filter((w) => w.alive()),
      async createCluster(name) {
        const res = await app.inject({
          method: 'POST',
          url: `/v1/projects/${project}/clusters`,
          payload: { name, template: templateName },
        })
        expect(res.statusCode, `create ${name}: ${res.body}`).toBe(202)
        return (res.json() as { id: string }).id
      },
      async deleteCluster(name) {
        const res = await app.inject({ method: 'DELETE', url: `/v1/projects/${project}/clusters/${name}` })
        expect(res.statusCode, `delete ${name}: ${res.body}`).toBe(202)
        return (res.json() as { id: string }).id
      },
      async retryOperation(id) {
        const res = await app.inject({ method: 'POST', url: `/v1/operations/${id}/retry` })
        log(`[test] retry ${id}: ${res.statusCode}`)
        return res.statusCode
      },
      statuses,
      async waitTerminal(ids, timeoutMs, onTick) {
        const deadline = Date.now() + timeoutMs
        let last = new Map<string, OperationStatus>()
        for (;;) {
          try {
            last = await statuses(ids)
            if (last.size === ids.length && [...last.values()].every(isTerminal)) return
          } catch (error) {
            // PostgreSQL may be down on purpose; keep polling.
            log(`[test] status poll failed: ${String(error).slice(0, 200)}`)
          }
          if (Date.now() > deadline) {
            throw new Error(
              `operations not terminal after ${timeoutMs} ms: ${JSON.stringify(summary(last))} of ${ids.length}`,
            )
          }
          await onTick?.()
          await sleep(250)
        }
      },
      books,
      async expectNoOrphans(expectedAllocated) {
        const b = await books()
        log(`[test] books: ${JSON.stringify(b)}`)
        expect(b.allocatedTwice, 'Kiln machine names holding two simulator machines').toEqual([])
        expect(b.sharedExternalIds, 'simulator machines recorded by two Machine rows').toEqual([])
        expect(b.allocationsWithoutMachine, 'simulator allocations without a Machine row').toEqual([])
        expect(b.machinesWithoutAllocation, 'Machine rows without a simulator allocation').toEqual([])
        expect(b.machinesWithoutCluster, 'Machine rows without a cluster').toEqual([])
        expect(b.simulatorAllocated).toBe(expectedAllocated)
        expect(b.inventoryAllocated).toBe(expectedAllocated)
        expect(b.machineRows).toBe(expectedAllocated)
        return b
      },
      log,
      logs: () => [...lines],
      async expectAllReady(ids, machinesPerCluster, timeoutMs) {
        await stack.waitTerminal(ids, timeoutMs)
        const unsucceeded = await describeUnsucceeded(db, ids)
        expect(unsucceeded, JSON.stringify(unsucceeded, null, 2)).toEqual([])
        const phases = await clusterPhases(app)
        expect([...phases.entries()].filter(([, phase]) => phase !== 'Ready')).toEqual([])
        return stack.expectNoOrphans(ids.length * machinesPerCluster)
      },
      adopt(server) {
        adopted.push(server)
        return server
      },
      dumpLogs(n = 300) {
        const server = [
          ...pgServer.logs().slice(-40),
          ...redisFixed.logs().slice(-20),
          ...adopted.flatMap((s) => s.logs().slice(-40)),
        ]
        console.log(
          `---- last ${n} harness/worker log lines ----\n${lines.slice(-n).join('\n')}\n---- servers ----\n${server.join('\n')}`,
        )
      },
      close: closeAll,
    }
    return stack
  } catch (error) {
    await closeAll()
    throw error
  }
}

/** POST a cluster create (the harness template) to an API process, with an Idempotency-Key. */
export async function postCluster(apiUrl: string, name: string, key: string) {
  const res = await fetch(`${apiUrl}/v1/projects/${project}/clusters`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ name, template: templateName }),
    signal: AbortSignal.timeout(20_000),
  })
  return {
    status: res.status,
    body: (await res.json()) as Record<string, unknown>,
    replayed: res.headers.get('idempotent-replayed') === 'true',
  }
}

/** GET the cluster list and return each cluster's phase by name. */
export async function clusterPhases(app: KilnApp): Promise<Map<string, string>> {
  const res = await app.inject({ method: 'GET', url: `/v1/projects/${project}/clusters?limit=500` })
  expect(res.statusCode, res.body).toBe(200)
  const body = res.json() as { items: { name: string; status: { phase: string } }[] }
  return new Map(body.items.map((c) => [c.name, c.status.phase]))
}

/** Sums retries: `attempts` counts an operation's retryable failures, each followed by one retry. */
export async function retryFigures(db: Database, ids: string[]) {
  const rows = await db.operation.findMany({
    where: { id: { in: ids } },
    select: { id: true, kind: true, status: true, attempts: true, error: true },
  })
  const retriedRuns = rows.reduce((sum, r) => sum + r.attempts, 0)
  const opsWithRetries = rows.filter((r) => r.attempts > 0).length
  const maxAttempts = rows.reduce((max, r) => Math.max(max, r.attempts), 0)
  return { rows, retriedRuns, opsWithRetries, maxAttempts }
}

/** A compact view of non-succeeded operations for failure messages. */
export async function describeUnsucceeded(db: Database, ids: string[]) {
  const rows = await db.operation.findMany({ where: { id: { in: ids }, status: { not: 'succeeded' } } })
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    status: r.status,
    attempts: r.attempts,
    resource: (r.resource as { name: string }).name,
    error: r.error,
    steps: (r.steps as { name: string; status: string; message: string }[])
      .filter((s) => s.status !== 'succeeded' && s.status !== 'skipped')
      .map((s) => `${s.name}:${s.status}:${s.message}`),
  }))
}
