import { type ChildProcess, execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { get } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { parse } from 'yaml'
import { entryPoints } from '../scripts/build.ts'
import { redisUrl } from './support/api.ts'
import { databaseUrl } from './support/database.ts'
import { exited, freePort, spawnTracked } from './support/ephemeral-services.ts'
import { eventually } from './support/eventually.ts'
import { scrape, sumOf } from './support/prometheus-text.ts'

// The production image without Docker: `npm run build`'s apps, a tree assembled like the Dockerfile's
// runtime stage (the workspaces' package files, `npm ci --omit=dev`, the bundles and prisma/), and
// the built migrate, seed, API (two processes on one port), worker, simulator and issuer started
// from THAT tree, outside the repository (so nothing resolves to the dev dependencies), against a
// fresh database on the real PostgreSQL and the real Redis.

const run = promisify(execFile)
const runId = inject('runId')
const workspaces = ['apps', 'packages'].flatMap((root) =>
  readdirSync(root)
    .filter((name) => existsSync(`${root}/${name}/package.json`))
    .map((name) => `${root}/${name}`),
)
const packageFiles = ['package.json', 'package-lock.json', ...workspaces.map((w) => `${w}/package.json`)]

/**
 * The runtime stage's `npm ci --omit=dev` in a directory of its own under the system's temporary
 * directory. Installing takes a minute on a busy machine, so a tree is kept for the same package
 * files (its name is their hash) and only the built files are copied in again on every run.
 */
async function runtimeTree(): Promise<string> {
  const hash = createHash('sha256')
  for (const file of packageFiles) hash.update(file).update(readFileSync(file))
  const tree = path.join(tmpdir(), `kiln-runtime-${hash.digest('hex').slice(0, 16)}`)
  const installed = path.join(tree, '.installed')
  if (!existsSync(installed)) {
    rmSync(tree, { recursive: true, force: true })
    for (const file of packageFiles) {
      mkdirSync(path.dirname(path.join(tree, file)), { recursive: true })
      cpSync(file, path.join(tree, file))
    }
    await run(
      'npm',
      ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
      {
        cwd: tree,
        maxBuffer: 16 << 20,
      },
    )
    writeFileSync(installed, new Date().toISOString())
  }
  // What the runtime stage copies from the build stage, fresh.
  for (const app of Object.keys(entryPoints)) {
    rmSync(path.join(tree, 'apps', app, 'dist'), { recursive: true, force: true })
    cpSync(path.join('apps', app, 'dist'), path.join(tree, 'apps', app, 'dist'), { recursive: true })
  }
  rmSync(path.join(tree, 'prisma'), { recursive: true, force: true })
  cpSync('prisma/schema.prisma', path.join(tree, 'prisma/schema.prisma'))
  cpSync('prisma/migrations', path.join(tree, 'prisma/migrations'), { recursive: true })
  return tree
}

interface Started {
  child: ChildProcess
  output: string[]
}
const processes: Record<string, Started> = {}
let tree: string
let env: NodeJS.ProcessEnv
let api: string
let apiMetricsPort: number
const database = `kiln_test_${runId}_image`
const prefix = `kiln-image-${runId}`
const migrations: { code: number; stdout: string }[] = []

function start(name: string, file: string, extra: NodeJS.ProcessEnv = {}): Started {
  const child = spawnTracked('node', ['--enable-source-maps', file], { env: { ...env, ...extra }, cwd: tree })
  const output: string[] = []
  const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean))
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  processes[name] = { child, output }
  return processes[name]
}

/** Runs one of the tree's scripts to its end. */
const runNode = (file: string) =>
  run('node', ['--enable-source-maps', file], { cwd: tree, env })
    .then((r) => ({ code: 0, stdout: r.stdout }))
    .catch((e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: e.code ?? -1,
      stdout: `${e.stdout ?? ''}${e.stderr ?? ''}`,
    }))

const logs = () =>
  Object.entries(processes)
    .map(([name, p]) => `--- ${name}\n${p.output.slice(-20).join('\n')}`)
    .join('\n')
const printed = (name: string, pattern: RegExp) => async () =>
  processes[name]!.output.some((line) => pattern.test(line)) ? true : undefined
const answers = (url: string) => async () => {
  try {
    return (await fetch(url)).ok ? true : undefined
  } catch {
    return undefined
  }
}
/** GET on a connection of its own (node:cluster hands out connections, not requests); the status. */
const statusOnNewConnection = (url: string) =>
  new Promise<number>((resolve, reject) => {
    get(url, { agent: false }, (response) => {
      response.resume()
      response.on('end', () => resolve(response.statusCode ?? 0))
    }).on('error', reject)
  })

/** The pids of a process's children, from the OS. */
async function childrenOf(pid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-o', 'pid=', '--ppid', String(pid)]).catch(() => ({ stdout: '' }))
  return stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0)
}
/** The pid of each request the API processes logged (pino puts the pid on every line). */
const requestPids = () =>
  processes['api']!.output.flatMap((line) => {
    const m = /"pid":(\d+).*"msg":"incoming request"/.exec(line)
    return m ? [Number(m[1])] : []
  })

beforeAll(async () => {
  await run('npx', ['tsx', 'scripts/build.ts'], { maxBuffer: 16 << 20 })
  tree = await runtimeTree()
  const [apiPort, simulatorPort, issuerPort] = [await freePort(), await freePort(), await freePort()]
  apiMetricsPort = await freePort()
  api = `http://127.0.0.1:${apiPort}`
  // Only what the image's environment would hold: nothing of this test process's own.
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl(database),
    REDIS_URL: redisUrl,
    KILN_QUEUE_PREFIX: prefix,
    KILN_DEV_MODE: 'true',
    LOG_LEVEL: 'info',
  }
  // The database does not exist yet: migrate creates it, like `prisma migrate deploy`.
  migrations.push(await runNode('apps/api/dist/migrate.js'))
  migrations.push(await runNode('apps/api/dist/migrate.js'))
  const seeded = await runNode('apps/api/dist/seed.main.js')
  expect(seeded, seeded.stdout).toMatchObject({ code: 0 })

  start('api', 'apps/api/dist/main.js', {
    PORT: String(apiPort),
    KILN_API_PROCESSES: '2',
    KILN_METRICS_PORT: String(apiMetricsPort),
  })
  start('worker', 'apps/worker/dist/main.js')
  start('simulator', 'apps/simulator/dist/main.js', { SIMULATOR_API_PORT: String(simulatorPort) })
  start('issuer', 'apps/issuer/dist/main.js', { KILN_ISSUER_PORT: String(issuerPort) })
  await Promise.all([
    eventually('the API', answers(`${api}/readyz`), 120_000, 250),
    // Every API process listening (/readyz answers as soon as the first one does).
    eventually('both API processes', printed('api', /"msg":"API listening"/), 120_000, 250),
    eventually('the worker', printed('worker', /"worker ready"/), 120_000, 250),
    eventually('the simulator', printed('simulator', /simulator API server ready/), 120_000, 250),
    eventually(
      'the issuer',
      answers(`http://127.0.0.1:${issuerPort}/.well-known/openid-configuration`),
      120_000,
      250,
    ),
  ]).catch((error) => {
    throw new Error(`${error}\n${logs()}`)
  })
}, 300_000)

afterAll(async () => {
  for (const p of Object.values(processes)) p.child.kill('SIGTERM')
  await Promise.race([Promise.all(Object.values(processes).map((p) => exited(p.child))), sleep(15_000)])
  for (const p of Object.values(processes)) p.child.kill('SIGKILL')
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const keys = await redis.keys(`${prefix}:*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
  // The database goes with the run's others (global teardown drops kiln_test_<runId>_*).
})

describe('the built image', () => {
  it('runs, in the Dockerfile and docker-compose.yml, files the build produced', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1]
    expect(JSON.parse(cmd ?? 'null')).toEqual(['node', '--enable-source-maps', 'apps/api/dist/main.js'])
    const compose = parse(readFileSync('docker-compose.yml', 'utf8').replace(/\$\{[^}]*\}/g, 'x')) as {
      services: Record<string, { command?: string[] }>
    }
    const files = Object.values(compose.services).flatMap(
      (service) => (service.command ?? []).join(' ').match(/apps\/\S+?\.js\b/g) ?? [],
    )
    expect(files.length).toBeGreaterThanOrEqual(4)
    for (const file of [...files, 'apps/api/dist/main.js']) {
      expect(existsSync(path.join(tree, file)), file).toBe(true)
      expect(existsSync(path.join(tree, `${file}.map`)), `${file}.map`).toBe(true)
    }
  })

  it('migrates a new database with apps/api/dist/migrate.js, and finds nothing to do the second time', () => {
    const count = readdirSync('prisma/migrations').filter((d) => !d.includes('.')).length
    expect(migrations[0]!.code, migrations[0]!.stdout).toBe(0)
    expect(migrations[0]!.stdout).toContain(`created database ${database}`)
    expect(migrations[0]!.stdout).toContain(`${count} migrations in prisma/migrations, ${count} applied now`)
    expect(migrations[1]!.code, migrations[1]!.stdout).toBe(0)
    expect(migrations[1]!.stdout).toContain(`${count} migrations in prisma/migrations, 0 applied now`)
  })

  it('answers /healthz, /readyz and lists the seeded templates', async () => {
    expect((await fetch(`${api}/healthz`)).status).toBe(200)
    const ready = await fetch(`${api}/readyz`)
    expect(ready.status, await ready.clone().text()).toBe(200)
    const templates = (await (await fetch(`${api}/v1/templates`)).json()) as { items: { name: string }[] }
    expect(templates.items.map((t) => t.name)).toContain('k8s-1.31')
  })

  it('has the built worker run the operation the built API queued', async () => {
    const created = await fetch(`${api}/v1/projects/demo/clusters`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `image-${runId}`, template: 'k8s-1.31' }),
    })
    expect(created.status, await created.clone().text()).toBe(202)
    const { id } = (await created.json()) as { id: string }
    // The worker claims it: no longer pending, a step under way or done.
    const status = await eventually(
      'the worker to take the operation',
      async () => {
        const op = (await (await fetch(`${api}/v1/operations/${id}`)).json()) as { status: string }
        return op.status === 'pending' ? undefined : op.status
      },
      60_000,
      250,
    ).catch((error) => {
      throw new Error(`${error}\n${logs()}`)
    })
    expect(['running', 'succeeded']).toContain(status)
  })
})

describe('the API on every core (KILN_API_PROCESSES=2)', () => {
  it('serves one port from two processes, replaces one that dies, and drains both on SIGTERM', async () => {
    const primary = processes['api']!.child.pid!
    const children = await childrenOf(primary)
    expect(children, logs()).toHaveLength(2)

    // Connections are handed out in turn: both processes answer (their log lines come through a pipe).
    for (let i = 0; i < 10; i++) expect(await statusOnNewConnection(`${api}/healthz`)).toBe(200)
    await eventually(
      'requests logged by both processes',
      async () => (children.every((pid) => requestPids().includes(pid)) ? true : undefined),
      10_000,
      50,
    )

    // The primary's /metrics sums both processes' series: all ten requests, whichever process served them.
    const templateRequests = async () =>
      sumOf(await scrape(`http://127.0.0.1:${apiMetricsPort}/metrics`), 'kiln_http_requests_total', {
        route: '/v1/templates',
        status: '200',
      })
    const counted = await templateRequests()
    for (let i = 0; i < 10; i++) expect(await statusOnNewConnection(`${api}/v1/templates`)).toBe(200)
    expect(await templateRequests()).toBe(counted + 10)

    // One dies: the other keeps answering while the primary starts a replacement.
    const [killed, survivor] = children as [number, number]
    process.kill(killed, 'SIGKILL')
    await eventually(
      'the primary to notice',
      printed('api', /an API process exited; replacing it/),
      20_000,
      50,
    )
    const before = requestPids().length
    for (let i = 0; i < 5; i++) expect(await statusOnNewConnection(`${api}/healthz`)).toBe(200)
    // The survivor served them.
    const served = await eventually(
      'the requests in the log',
      async () => (requestPids().length >= before + 5 ? requestPids().slice(before) : undefined),
      10_000,
      50,
    )
    expect(new Set(served)).toEqual(new Set([survivor]))
    const replacement = await eventually(
      'a replacement process',
      async () => (await childrenOf(primary)).find((pid) => pid !== survivor && pid !== killed),
      20_000,
      100,
    )
    await eventually(
      'the replacement to listen',
      async () =>
        processes['api']!.output.some(
          (l) => l.includes(`"pid":${replacement}`) && l.includes('Server listening'),
        )
          ? true
          : undefined,
      120_000,
      250,
    )

    // SIGTERM to the primary: every API process closes its server, then the primary exits 0.
    const api0 = processes['api']!.child
    api0.kill('SIGTERM')
    await Promise.race([exited(api0), sleep(30_000)])
    expect(api0.exitCode, logs()).toBe(0)
    expect(await childrenOf(primary)).toEqual([])
    expect(processes['api']!.output.some((l) => l.includes('"msg":"API stopped"'))).toBe(true)
  }, 180_000)
})
