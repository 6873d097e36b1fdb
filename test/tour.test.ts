import { type ChildProcess, execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { seedDemo } from '../apps/api/src/seed.ts'
import { createDatabase } from '../packages/db/src/index.ts'
import { redisUrl } from './support/api.ts'
import { createTestDatabase } from './support/database.ts'
import { exited, freePort, spawnTracked } from './support/ephemeral-services.ts'
import { eventually } from './support/eventually.ts'

// The README's tour is scripts/tour.sh, shown verbatim; here it runs as a reader would run it against
// `scripts/up.sh`: the real API, worker, simulated Kubernetes API servers and development OIDC issuer
// as processes of their own (on free ports, a database and queue prefix of this file's own), driven by
// the real curl, jq, kubectl and openssl.

const run = promisify(execFile)
const tour = fileURLToPath(new URL('../scripts/tour.sh', import.meta.url))
const processes: { name: string; child: ChildProcess; output: string[] }[] = []
let drop: (() => Promise<void>) | undefined
let env: NodeJS.ProcessEnv
let api: string
const prefix = `kiln-tour-${inject('runId')}`

function start(name: string, main: string) {
  const child = spawnTracked('node', ['--import', 'tsx', main], { env })
  const output: string[] = []
  const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean))
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  processes.push({ name, child, output })
}

const answers = (url: string) => async () => {
  try {
    return (await fetch(url)).ok ? true : undefined
  } catch {
    return undefined
  }
}

/** The last lines each process printed, for a failure that needs them. */
const logs = () => processes.map((p) => `--- ${p.name}\n${p.output.slice(-30).join('\n')}`).join('\n')

beforeAll(async () => {
  const database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  drop = database.drop
  const [apiPort, issuerPort, simulatorPort] = [await freePort(), await freePort(), await freePort()]
  api = `http://127.0.0.1:${apiPort}`
  const db = createDatabase({ url: database.url })
  try {
    await seedDemo(db)
    // The seeded data centre, served by this file's simulator, with short latencies: the demo's
    // 0.5–2.5 s per backend call is for watching progress, not for a test's time budget.
    await db.$executeRaw`UPDATE "Backend" SET config = config || ${JSON.stringify({
      apiServerUrl: `https://127.0.0.1:${simulatorPort}`,
      latency: { default: { minMs: 10, maxMs: 40 } },
    })}::jsonb WHERE name = 'sim'`
  } finally {
    await db.$disconnect()
  }
  // What scripts/up.sh sets in dev mode, on this file's ports.
  env = {
    ...process.env,
    DATABASE_URL: database.url,
    REDIS_URL: redisUrl,
    KILN_QUEUE_PREFIX: prefix,
    KILN_DEV_MODE: 'true',
    PORT: String(apiPort),
    KILN_PUBLIC_URL: api,
    SIMULATOR_API_PORT: String(simulatorPort),
    KILN_ISSUER_PORT: String(issuerPort),
    KILN_OIDC_ISSUER: `http://127.0.0.1:${issuerPort}`,
    KILN_OIDC_AUDIENCE: 'urn:kiln:api',
    KILN_OIDC_CLIENT_ID: 'kiln-portal',
    KILN_OIDC_CLIENT_SECRET: 'kiln-portal-dev-secret',
    KILN_OIDC_CLI_CLIENT_ID: 'kiln-cli',
    KILN_OIDC_SCOPES: 'openid profile email groups',
    KILN_PLATFORM_ADMIN_GROUPS: 'kiln:platform-admins',
  }
  delete env.KILN_MASTER_KEY
  delete env.KILN_MASTER_KEYS
  delete env.KILN_TOKEN
  start('worker', 'apps/worker/src/main.ts')
  start('simulator', 'apps/simulator/src/main.ts')
  start('issuer', 'apps/issuer/src/main.ts')
  // The API discovers the issuer when it starts.
  await eventually(
    'the issuer',
    answers(`${env.KILN_OIDC_ISSUER}/.well-known/openid-configuration`),
    90_000,
    250,
  ).catch((error) => {
    throw new Error(`${error}\n${logs()}`)
  })
  start('api', 'apps/api/src/main.ts')
  await eventually('the API', answers(`${api}/readyz`), 90_000, 250).catch((error) => {
    throw new Error(`${error}\n${logs()}`)
  })
}, 240_000)

afterAll(async () => {
  for (const p of processes) p.child.kill('SIGTERM')
  await Promise.race([Promise.all(processes.map((p) => exited(p.child))), sleep(10_000)])
  for (const p of processes) p.child.kill('SIGKILL')
  await drop?.()
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const keys = await redis.keys(`${prefix}:*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
})

describe('the README tour', () => {
  it('is scripts/tour.sh, word for word', () => {
    const readme = readFileSync('README.md', 'utf8')
    const shown = /<!-- scripts\/tour\.sh -->\n```sh\n([\s\S]*?)```\n/.exec(readme)?.[1]
    expect(shown, 'README.md shows scripts/tour.sh after <!-- scripts/tour.sh -->').toBeDefined()
    expect(shown).toBe(readFileSync(tour, 'utf8'))
  })

  /** Runs the tour from outside the repository, as a reader might; never throws. */
  const runTour = (over: NodeJS.ProcessEnv = {}) =>
    run('bash', [tour], {
      env: { ...env, KILN_API: api, ...over },
      cwd: '/',
      timeout: 150_000,
      maxBuffer: 32 << 20,
    })
      .then((r) => ({ code: 0, ...r }))
      .catch((error: { code?: number; stdout?: string; stderr?: string }) => ({
        code: error.code ?? -1,
        stdout: error.stdout ?? '',
        stderr: error.stderr ?? '',
      }))

  it('runs as written, from start to end', async () => {
    const result = await runTour()
    const output = `${result.stdout}\n${result.stderr}`.slice(-8000)
    expect(result.code, `${output}\n${logs()}`).toBe(0)
    expect(result.stdout).toMatch(/tour done\n$/)
  }, 180_000)

  it('stops at once, saying why, when it cannot get a token', async () => {
    const result = await runTour({ KILN_OIDC_ISSUER: `http://127.0.0.1:${await freePort()}` })
    expect(result.code).not.toBe(0)
    expect(result.stderr).toMatch(/Could not get a token|no token/)
    expect(result.stdout).toBe('')
  }, 60_000)
})
