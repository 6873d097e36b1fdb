/**
 * What every bench in this folder runs inside: one run id, a throw-away database `kiln_bench_<run id>`
 * (created and migrated with the real `prisma migrate deploy`, dropped again), a registry of cleanups
 * that runs on every exit path (normal end, error, SIGINT/SIGTERM), and the shared shape of the report
 * (a plain-text table on stdout, `bench/results/<kind>-<timestamp>.json`).
 *
 * Env: KILN_BENCH_POSTGRES (postgresql://postgres@127.0.0.1:5432), KILN_BENCH_REDIS (redis://127.0.0.1:6379).
 */
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Database } from '@kiln/db'
import { PrismaPg } from '@prisma/adapter-pg'
import { Redis } from 'ioredis'
import pg from 'pg'
import { buildApp } from '../apps/api/src/app.ts'
import { type EngineOptions, startEngine } from '../apps/worker/src/engine.ts'
import { type Prisma, PrismaClient } from '../packages/db/src/generated/prisma/client.ts'
import { masterKeyFromSettings } from '../packages/pki/src/index.ts'

/** The repository root. */
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

export const envInt = (name: string, fallback: number) => {
  const v = process.env[name]
  return v ? Number.parseInt(v, 10) : fallback
}

export const pgServer = process.env.KILN_BENCH_POSTGRES ?? 'postgresql://postgres@127.0.0.1:5432'
export const redisUrl = process.env.KILN_BENCH_REDIS ?? 'redis://127.0.0.1:6379'
export const runId = randomBytes(4).toString('hex')
export const dbName = `kiln_bench_${runId}`
export const dbUrl = `${pgServer}/${dbName}`

/** Progress goes to stderr, so stdout carries the report alone. */
export const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`)
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
export const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
export const round = (v: number, digits = 2) => Math.round(v * 10 ** digits) / 10 ** digits
export function fmt(n: number, digits = 0) {
  return Number.isFinite(n) ? n.toFixed(digits) : '-'
}

export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every resource registers its own release; run once, newest first, on any exit path.

const cleanups: { name: string; run: () => Promise<unknown> }[] = []
let cleanupTimeoutMs = 15_000
let cleaningUp: Promise<void> | undefined

export const onCleanup = (name: string, run: () => Promise<unknown>) => cleanups.push({ name, run })

/** True once cleanup has begun (a signal, an error, or the end of the run). */
export const isCleaningUp = () => cleaningUp !== undefined

function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    for (const { name, run } of cleanups.reverse()) {
      try {
        await withTimeout(run(), cleanupTimeoutMs, name)
      } catch (e) {
        log(`cleanup '${name}' failed: ${(e as Error).message}`)
      }
    }
  })()
  return cleaningUp
}

/**
 * Runs a bench's `main`: SIGINT/SIGTERM stop it and clean up (exit 130); an error is logged (exit 1);
 * either way every registered cleanup runs, each given `cleanupTimeoutMs`. `interrupting` and
 * `cleanedUp` complete the log lines that say what the cleanup releases.
 */
export async function runBench(
  main: () => Promise<void>,
  options: { cleanupTimeoutMs: number; interrupting: string; cleanedUp: string },
) {
  cleanupTimeoutMs = options.cleanupTimeoutMs
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log(`${signal}: ${options.interrupting}`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  let exitCode = 0
  try {
    await main()
  } catch (e) {
    exitCode = 1
    log(`failed: ${(e as Error).stack ?? e}`)
  } finally {
    await cleanup()
    log(`cleaned up (${options.cleanedUp})`)
  }
  process.exitCode = exitCode
  // Everything above is closed; if a stray handle keeps the loop alive, say so and leave anyway.
  setTimeout(() => {
    log('a handle is still open after cleanup; exiting')
    process.exit(exitCode)
  }, 5_000).unref()
}

// ---------------------------------------------------------------------------------------------
// The run's database.

/**
 * Creates `dbName` on the server and migrates it with `prisma migrate deploy`; registers the admin
 * connection's end and the database's drop. Returns the milliseconds it took (connecting excluded).
 */
export async function createBenchDatabase(): Promise<number> {
  const admin = new pg.Client({ connectionString: `${pgServer}/postgres` })
  await admin.connect()
  onCleanup('admin connection', () => admin.end())

  const t = performance.now()
  await admin.query(`CREATE DATABASE ${dbName}`)
  onCleanup(`drop database ${dbName}`, async () => {
    // Pools resolve end() before their sockets have closed; give them a moment, then force.
    for (let i = 0; i < 20; i++) {
      const { rows } = await admin.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1',
        [dbName],
      )
      if (rows[0]!.n === 0) break
      await sleep(100)
    }
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  })
  execFileSync('npx', ['prisma', 'migrate', 'deploy'], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      PRISMA_SCHEMA_ENGINE_BINARY: 'prisma/engine/schema-engine.mjs',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  const ms = performance.now() - t
  log(`created and migrated ${dbName} in ${fmt(ms)} ms`)
  return ms
}

/** A Prisma client on the run's database that hands every query it sends to `onQuery`. */
export function openTracedDatabase(maxConnections: number, onQuery: (e: Prisma.QueryEvent) => void) {
  const traced = new PrismaClient({
    adapter: new PrismaPg({ connectionString: dbUrl, max: maxConnections }),
    log: [{ emit: 'event', level: 'query' }],
  })
  onCleanup('prisma (traced)', () => traced.$disconnect())
  traced.$on('query', onQuery)
  return traced as unknown as Database
}

/** The plan lines of EXPLAIN (ANALYZE, BUFFERS, COSTS OFF): the statement runs. */
export async function explainAnalyze(pool: pg.Pool, sql: string, params: unknown[]) {
  const { rows } = await pool.query<{ 'QUERY PLAN': string }>(
    `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql}`,
    params,
  )
  return rows.map((r) => r['QUERY PLAN'])
}

// ---------------------------------------------------------------------------------------------
// Report.

/** Columns padded to their widest cell, ` | ` between them, a rule under the header. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')
  const rule = widths.map((w) => '-'.repeat(w)).join('-+-')
  return [line(header), rule, ...rows.map(line)].join('\n')
}

/** The report on stdout: a title with the time, the table, one `- ` line per note. */
export function printReport(title: string, table: string, notes: string[]) {
  process.stdout.write(`\n${title} (${new Date().toISOString()})\n\n${table}\n\n`)
  for (const n of notes) process.stdout.write(`- ${n}\n`)
}

export function describeMachine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: os.totalmem() / 2 ** 30,
    node: process.version,
  }
}

/** Writes `bench/results/<kind>-<start time>.json` and names it on stdout. */
export async function writeResults(kind: string, started: number, results: unknown) {
  const dir = path.join(root, 'bench', 'results')
  await mkdir(dir, { recursive: true })
  const file = path.join(dir, `${kind}-${new Date(started).toISOString().replace(/[:.]/g, '-')}.json`)
  await writeFile(file, `${JSON.stringify(results, null, 2)}\n`)
  process.stdout.write(`\nresults: ${path.relative(root, file)}\n`)
}

// ---------------------------------------------------------------------------------------------
// The simulated clusters' API server, as `scripts/up.sh` runs it: its own process (so its CPU is
// not counted as Kiln's), on the run's database, with the development master key the benches'
// workers use.

export interface SimulatorChild {
  /** https://127.0.0.1:<port>, for the backend's apiServerUrl. */
  url: string
  pid: number
  stop(): Promise<void>
}

export async function startSimulatorChild(): Promise<SimulatorChild> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/simulator/src/main.ts'], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: dbUrl, KILN_DEV_MODE: 'true', SIMULATOR_API_PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  onCleanup('simulator child', stop)
  let tail = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    tail = (tail + chunk).slice(-2000)
  })
  const url = await withTimeout(
    new Promise<string>((resolve, reject) => {
      let buffer = ''
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk
        // A JSON line; its fields in any order (pino writes `msg` last).
        const line = /^.*"msg":"simulator API server ready".*$/m.exec(buffer)?.[0]
        const address = line ? (JSON.parse(line) as { address?: string }).address : undefined
        if (address) resolve(address)
        if (buffer.length > 100_000) buffer = buffer.slice(-10_000)
      })
      void exited.then(() => reject(new Error(`simulator exited before it was ready: ${tail}`)))
    }),
    60_000,
    'simulator start',
  )
  return { url, pid: child.pid!, stop }
}

// ---------------------------------------------------------------------------------------------
// Kiln as `scripts/up.sh` runs it, on the bench database: the API over real HTTP (dev master key,
// local authentication) and one engine, both on the queue prefix `prefix`, whose keys go at cleanup.

export async function startKiln(db: Database, prefix: string, engineOptions: Partial<EngineOptions> = {}) {
  const { masterKey } = masterKeyFromSettings({ devMode: true })
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  onCleanup('redis', async () => {
    const keys = await redis.keys(`${prefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  })
  const app = await buildApp({
    db,
    redis,
    masterKey,
    queue: { connection: { url: redisUrl, maxRetriesPerRequest: 1 }, prefix },
  })
  onCleanup('api', () => app.close())
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const engine = await startEngine({
    db,
    masterKey,
    databaseUrl: dbUrl,
    connection: { url: redisUrl, maxRetriesPerRequest: null },
    prefix,
    healthIntervalMs: 0,
    ...engineOptions,
  })
  onCleanup('engine', () => engine.stop())
  return { base, engine }
}
