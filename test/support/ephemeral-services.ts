import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import pg from 'pg'

// Throwaway PostgreSQL and Redis servers for tests that stop, kill, restart or flush them. The
// machine's shared servers (5432, 6379) serve other people's tests and are never touched here.
//
// Every server runs in its own process group (spawned detached). The group is SIGKILLed when the
// test process exits, and a tiny detached watchdog shell kills it (and removes its directory) if
// the test process dies without running exit handlers (SIGKILL, OOM).

const run = promisify(execFile)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const pgBin = process.env.KILN_TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin'
const pgUser = 'postgres'

// ---------------------------------------------------------------------------------------------
// Child tracking

const liveGroups = new Set<number>()
const liveDirs = new Set<string>()

function killGroupSync(pgid: number, signal: NodeJS.Signals = 'SIGKILL') {
  try {
    process.kill(-pgid, signal)
  } catch {
    // Already gone.
  }
}

function cleanupSync() {
  for (const pgid of liveGroups) killGroupSync(pgid)
  liveGroups.clear()
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true })
  liveDirs.clear()
}

let exitHooksInstalled = false
function installExitHooks() {
  if (exitHooksInstalled) return
  exitHooksInstalled = true
  process.once('exit', cleanupSync)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      cleanupSync()
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1))
    })
  }
}

/** Kills the group (and removes `dir`) once this process is gone; exits by itself when the group does. */
function watchdog(pgid: number, dir?: string) {
  const rm = dir ? `; rm -rf '${dir.replace(/'/g, '')}'` : ''
  const script = `while kill -0 ${process.pid} 2>/dev/null; do kill -0 -${pgid} 2>/dev/null || exit 0; sleep 1; done; kill -9 -${pgid} 2>/dev/null${rm}`
  const guard = spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' })
  guard.unref()
}

/**
 * Spawns a process in its own process group and tracks it: it is SIGKILLed (with everything it
 * started) when this process exits, even abnormally. Also used for worker processes.
 */
export function spawnTracked(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; dir?: string } = {},
): ChildProcess {
  installExitHooks()
  const child = spawn(command, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const pgid = child.pid
  if (pgid === undefined) throw new Error(`could not spawn ${command}`)
  liveGroups.add(pgid)
  child.once('exit', () => {
    // The leader is gone; stragglers of its group (postgres backends) go with it.
    killGroupSync(pgid)
    liveGroups.delete(pgid)
  })
  watchdog(pgid, options.dir)
  return child
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

/** Waits up to `ms` for the child to exit, then SIGKILLs its whole group. */
async function waitOrKill(child: ChildProcess, ms: number) {
  const done = await Promise.race([exited(child).then(() => true), sleep(ms).then(() => false)])
  if (!done && child.pid !== undefined) {
    killGroupSync(child.pid)
    await exited(child)
  }
}

/** A free TCP port on loopback (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port)
        else reject(new Error('no port'))
      })
    })
  })
}

/** Keeps the last lines a server printed, for failure reports. */
function tail(child: ChildProcess, lines: string[], label: string, max = 400) {
  const push = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue
      lines.push(`[${label}] ${line}`)
      if (lines.length > max) lines.splice(0, lines.length - max)
    }
  }
  child.stdout?.on('data', push)
  child.stderr?.on('data', push)
}

function mkTempDir(prefix: string) {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  liveDirs.add(dir)
  return dir
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

export interface EphemeralPostgres {
  port: number
  /** Connection string for a database on this server (default `kiln`, created at start). */
  url(db?: string): string
  /** Fast shutdown (SIGINT to the postmaster); data is kept, `start()` brings it back. */
  stop(): Promise<void>
  /** Starts the stopped (or killed) server again on the same port and waits until it accepts connections. */
  start(): Promise<void>
  /** `stop()`, wait `downMs`, `start()`. */
  restart(downMs?: number): Promise<void>
  /** SIGKILL to the postmaster and every backend: a crash; `start()` runs crash recovery. */
  kill(): Promise<void>
  running(): boolean
  /** The server's recent log lines. */
  logs(): string[]
  /** Stops the server for good and removes its directory. */
  close(): Promise<void>
}

function signalSync(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(pid, signal)
  } catch {
    // Gone already.
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .split('\n')
      .filter(Boolean)
      .map(Number)
  } catch {
    return []
  }
}

/** True while the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

function userIds(user: string) {
  const uid = Number(execFileSync('id', ['-u', user]).toString().trim())
  const gid = Number(execFileSync('id', ['-g', user]).toString().trim())
  return { uid, gid }
}

/**
 * initdb into a fresh temporary directory and start `postgres` on a free port, as the `postgres`
 * user (PostgreSQL refuses to run as root), with fsync off. Creates database `database`.
 */
export async function startEphemeralPostgres(
  options: { database?: string } = {},
): Promise<EphemeralPostgres> {
  installExitHooks()
  const database = options.database ?? 'kiln'
  const dir = mkTempDir('kiln-pg-')
  const data = join(dir, 'data')
  const { uid, gid } = userIds(pgUser)
  chownSync(dir, uid, gid)
  await run(
    'runuser',
    [
      '-u',
      pgUser,
      '--',
      join(pgBin, 'initdb'),
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '--encoding=UTF8',
      '--locale=C',
    ],
    { cwd: dir },
  )
  const port = await freePort()
  const lines: string[] = []
  let child: ChildProcess | null = null
  const url = (db = database) => `postgresql://postgres@127.0.0.1:${port}/${db}`

  const isReady = async () => {
    try {
      await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-t', '1'])
      return true
    } catch {
      return false
    }
  }

  const start = async () => {
    if (child) return
    const started = spawnTracked(
      'runuser',
      [
        '-u',
        pgUser,
        '--',
        join(pgBin, 'postgres'),
        '-D',
        data,
        '-p',
        String(port),
        '-k',
        dir,
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=200',
      ],
      { cwd: dir, dir },
    )
    child = started
    tail(started, lines, `postgres:${port}`)
    started.once('exit', () => {
      if (child === started) child = null
    })
    const deadline = Date.now() + 60_000
    while (!(await isReady())) {
      if (child !== started) {
        await sleep(200)
        throw new Error(`postgres exited during startup:\n${lines.slice(-30).join('\n')}`)
      }
      if (Date.now() > deadline) throw new Error(`postgres did not start:\n${lines.slice(-30).join('\n')}`)
      await sleep(100)
    }
  }

  const postmasterPid = (): number | null => {
    try {
      const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
      return Number.isInteger(pid) && pid > 0 ? pid : null
    } catch {
      return null
    }
  }

  const stop = async () => {
    const current = child
    if (!current) return
    // runuser does not forward SIGINT: signal the postmaster itself (fast shutdown).
    const pid = postmasterPid()
    if (pid) signalSync(pid, 'SIGINT')
    else if (current.pid !== undefined) {
      killGroupSync(current.pid, 'SIGTERM')
    }
    await waitOrKill(current, 30_000)
    child = null
  }

  const kill = async () => {
    const current = child
    if (!current || current.pid === undefined) return
    // Backends call setsid(), so they are not in the group: kill the postmaster's children by pid.
    const pm = postmasterPid()
    const victims = pm ? [pm, ...childrenOf(pm)] : []
    killGroupSync(current.pid, 'SIGKILL')
    for (const pid of victims) signalSync(pid, 'SIGKILL')
    await exited(current)
    child = null
    const deadline = Date.now() + 15_000
    while (victims.some(alive) && Date.now() < deadline) await sleep(50)
    // A dead postmaster not yet reaped still "exists" for kill(pid, 0): its lock files would make the
    // next start refuse. It is dead, so they are stale.
    if (!victims.some(alive)) {
      for (const file of [join(data, 'postmaster.pid'), join(dir, `.s.PGSQL.${port}.lock`)])
        rmSync(file, { force: true })
    }
  }

  await start()
  const admin = new pg.Client({ connectionString: url('postgres') })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${database}`)
  } finally {
    await admin.end()
  }

  return {
    port,
    url,
    stop,
    start,
    async restart(downMs = 0) {
      await stop()
      if (downMs > 0) await sleep(downMs)
      await start()
    },
    kill,
    running: () => child !== null,
    logs: () => [...lines],
    async close() {
      await stop().catch(() => kill())
      rmSync(dir, { recursive: true, force: true })
      liveDirs.delete(dir)
    },
  }
}

/** `npx prisma migrate deploy` against `databaseUrl`, the way test/support/global-setup.ts migrates. */
export async function migrate(databaseUrl: string): Promise<void> {
  await run('npx', ['prisma', 'migrate', 'deploy'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl,
      PRISMA_SCHEMA_ENGINE_BINARY: 'prisma/engine/schema-engine.mjs',
    },
    maxBuffer: 16 * 1024 * 1024,
  })
}

// ---------------------------------------------------------------------------------------------
// Redis

export interface EphemeralRedis {
  port: number
  url: string
  /** SHUTDOWN (SIGTERM); nothing is persisted, so a start after it is an empty Redis. */
  stop(): Promise<void>
  start(): Promise<void>
  /** `stop()`, wait `downMs`, `start()`: every key is gone afterwards. */
  restart(downMs?: number): Promise<void>
  flushAll(): Promise<void>
  running(): boolean
  logs(): string[]
  close(): Promise<void>
}

/** One command on a short-lived connection that never retries; undefined when nothing answers. */
export async function askRedis(url: string, ...command: string[]): Promise<unknown> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return await client.call(command[0]!, ...command.slice(1))
  } catch {
    return undefined
  } finally {
    client.disconnect()
  }
}

/** `redis-server` on a free loopback port, without persistence. */
export async function startEphemeralRedis(): Promise<EphemeralRedis> {
  installExitHooks()
  const dir = mkTempDir('kiln-redis-')
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  const lines: string[] = []
  let child: ChildProcess | null = null

  const ping = async () => (await askRedis(url, 'PING')) === 'PONG'

  const start = async () => {
    if (child) return
    const started = spawnTracked(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      { cwd: dir, dir },
    )
    child = started
    tail(started, lines, `redis:${port}`)
    started.once('exit', () => {
      if (child === started) child = null
    })
    const deadline = Date.now() + 20_000
    while (!(await ping())) {
      if (child !== started) throw new Error(`redis exited during startup:\n${lines.slice(-20).join('\n')}`)
      if (Date.now() > deadline) throw new Error(`redis did not start:\n${lines.slice(-20).join('\n')}`)
      await sleep(50)
    }
  }

  const stop = async () => {
    const current = child
    if (!current || current.pid === undefined) return
    killGroupSync(current.pid, 'SIGTERM')
    await waitOrKill(current, 10_000)
    child = null
  }

  await start()
  return {
    port,
    url,
    stop,
    start,
    async restart(downMs = 0) {
      await stop()
      if (downMs > 0) await sleep(downMs)
      await start()
    },
    async flushAll() {
      const client = new Redis(url, { maxRetriesPerRequest: 1 })
      try {
        await client.flushall()
      } finally {
        client.disconnect()
      }
    },
    running: () => child !== null,
    logs: () => [...lines],
    async close() {
      await stop()
      rmSync(dir, { recursive: true, force: true })
      liveDirs.delete(dir)
    },
  }
}
