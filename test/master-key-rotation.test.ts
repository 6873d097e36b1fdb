import { type ChildProcess, execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { seedDemo } from '../apps/api/src/seed.ts'
import { createDatabase, type Database } from '../packages/db/src/index.ts'
import { parseMasterKey } from '../packages/pki/src/index.ts'
import { redisUrl } from './support/api.ts'
import { createTestDatabase } from './support/database.ts'
import { exited, freePort, spawnTracked } from './support/ephemeral-services.ts'
import { eventually } from './support/eventually.ts'

// Master-key rotation end to end, as an operator does it: the real API, worker and simulated
// Kubernetes API servers as processes of their own (production entry points, keys from the
// environment), the real PostgreSQL, the CLI, kubectl and openssl. Clusters are built under key A;
// every process restarts with KILN_MASTER_KEYS=B,A; `kiln admin rotate-master-key` re-seals; every
// process restarts with B alone, and kubeconfigs, CSRs and new clusters all still work.

const run = promisify(execFile)
const keyA = randomBytes(32).toString('base64')
const keyB = randomBytes(32).toString('base64')
const prefix = `kiln-keys-${inject('runId')}`

interface Running {
  name: string
  child: ChildProcess
  output: string[]
}
let processes: Running[] = []
let drop: (() => Promise<void>) | undefined
let db: Database
let baseEnv: NodeJS.ProcessEnv
let api: string
let work: string

function start(name: string, main: string, env: NodeJS.ProcessEnv) {
  const child = spawnTracked('node', ['--import', 'tsx', main], { env })
  const output: string[] = []
  const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter(Boolean))
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  processes.push({ name, child, output })
}

const logs = () => processes.map((p) => `--- ${p.name}\n${p.output.slice(-30).join('\n')}`).join('\n')

/** API, worker and simulator, all with `masterKeys`, as a deployment restarted with new settings. */
async function startKiln(masterKeys: string) {
  const env = { ...baseEnv, KILN_MASTER_KEYS: masterKeys }
  start('worker', 'apps/worker/src/main.ts', env)
  start('simulator', 'apps/simulator/src/main.ts', env)
  start('api', 'apps/api/src/main.ts', env)
  await eventually(
    'the API',
    async () => {
      try {
        return (await fetch(`${api}/readyz`)).ok ? true : undefined
      } catch {
        return undefined
      }
    },
    90_000,
    250,
  ).catch((error) => {
    throw new Error(`${error}\n${logs()}`)
  })
}

async function stopKiln() {
  for (const p of processes) p.child.kill('SIGTERM')
  await Promise.race([Promise.all(processes.map((p) => exited(p.child))), sleep(15_000)])
  for (const p of processes) p.child.kill('SIGKILL')
  await Promise.all(processes.map((p) => exited(p.child)))
  processes = []
}

async function request(method: string, path: string, body?: unknown) {
  const res = await fetch(`${api}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined, text }
}

async function createCluster(name: string): Promise<void> {
  const created = await request('POST', '/v1/projects/demo/clusters', { name, template: 'k8s-1.31' })
  expect(created.status, created.text).toBe(202)
  const id = created.body.id as string
  for (let i = 0; i < 8; i++) {
    const op = await request('GET', `/v1/operations/${id}?wait=30s`)
    if (op.body.status !== 'pending' && op.body.status !== 'running') {
      expect(op.body.status, `${name}: ${op.text}\n${logs()}`).toBe('succeeded')
      return
    }
  }
  throw new Error(`${name}: create did not finish\n${logs()}`)
}

/** A kubeconfig from the API that the real kubectl uses against the cluster's simulated API server. */
async function expectKubectlWorks(cluster: string) {
  const issued = await request('POST', `/v1/projects/demo/clusters/${cluster}/kubeconfig`, {
    ttlSeconds: 600,
  })
  expect(issued.status, issued.text).toBe(201)
  const file = join(work, `${cluster}.kubeconfig`)
  await writeFile(file, issued.body.kubeconfig)
  const { stdout } = await run('kubectl', ['--kubeconfig', file, 'get', 'nodes', '-o', 'name'])
  expect(stdout.trim().split('\n').length).toBeGreaterThan(0)
  expect(stdout).toMatch(/^node\//m)
}

/** A CSR made with openssl, signed by the cluster CA, and verified against the CA the API publishes. */
async function expectCsrSigned(cluster: string) {
  const key = join(work, `${cluster}.key`)
  const csr = join(work, `${cluster}.csr`)
  await run('openssl', [
    ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
    ...['-keyout', key, '-subj', '/CN=alice', '-out', csr],
  ])
  const signed = await request('POST', `/v1/projects/demo/clusters/${cluster}/csr`, {
    csrPem: await readFile(csr, 'utf8'),
  })
  expect(signed.status, signed.text).toBe(201)
  const crt = join(work, `${cluster}.crt`)
  await writeFile(crt, signed.body.certificatePem)
  const ca = await request('GET', `/v1/projects/demo/clusters/${cluster}/ca`)
  expect(ca.status, ca.text).toBe(200)
  const bundle = join(work, `${cluster}-ca.crt`)
  await writeFile(bundle, ca.body.items.map((c: { certificatePem: string }) => c.certificatePem).join(''))
  const { stdout } = await run('openssl', ['verify', '-CAfile', bundle, crt])
  expect(stdout).toContain(': OK')
}

async function kids(): Promise<Map<string, number>> {
  const rows = await db.$queryRaw<{ kid: string; n: bigint }[]>`
    SELECT "sealedKey"->>'kid' AS kid, count(*) AS n FROM "ClusterSecret" GROUP BY 1`
  return new Map(rows.map((r) => [r.kid, Number(r.n)]))
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'kiln-keys-'))
  const database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  drop = database.drop
  const [apiPort, simulatorPort] = [await freePort(), await freePort()]
  api = `http://127.0.0.1:${apiPort}`
  db = createDatabase({ url: database.url })
  await seedDemo(db)
  await db.$executeRaw`UPDATE "Backend" SET config = config || ${JSON.stringify({
    apiServerUrl: `https://127.0.0.1:${simulatorPort}`,
    latency: { default: { minMs: 10, maxMs: 40 } },
  })}::jsonb WHERE name = 'sim'`
  // Dev mode only for the local operator (no OIDC issuer here); the keys come from KILN_MASTER_KEYS.
  baseEnv = {
    ...process.env,
    DATABASE_URL: database.url,
    REDIS_URL: redisUrl,
    KILN_QUEUE_PREFIX: prefix,
    KILN_DEV_MODE: 'true',
    PORT: String(apiPort),
    KILN_PUBLIC_URL: api,
    SIMULATOR_API_PORT: String(simulatorPort),
    HEALTH_INTERVAL_MS: '0',
  }
  delete baseEnv.KILN_MASTER_KEY
  delete baseEnv.KILN_OIDC_ISSUER
}, 120_000)

afterAll(async () => {
  await stopKiln()
  await db?.$disconnect()
  await drop?.()
  await rm(work, { recursive: true, force: true })
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const keys = await redis.keys(`${prefix}:*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
})

describe('master-key rotation across restarts', () => {
  const [kidA, kidB] = [parseMasterKey(keyA).kid, parseMasterKey(keyB).kid]

  it('moves every sealed key from A to B, after which B alone serves old and new clusters', async () => {
    await startKiln(keyA)
    await createCluster('before-1')
    await createCluster('before-2')
    const sealedUnderA = (await kids()).get(kidA) ?? 0
    expect(sealedUnderA).toBeGreaterThanOrEqual(8)
    expect(await kids()).toEqual(new Map([[kidA, sealedUnderA]]))
    await stopKiln()

    // Step 1: every process learns B (newest, seals) and keeps A (opens what it sealed).
    await startKiln(`${keyB},${keyA}`)
    await expectKubectlWorks('before-1')

    // Step 2: re-seal, with the CLI as an operator would.
    const cli = await run(
      'node',
      ['--import', 'tsx', 'apps/cli/src/main.ts', 'admin', 'rotate-master-key', '-o', 'json'],
      {
        env: { ...baseEnv, KILN_URL: api, KILN_CONFIG: join(work, 'cli.yaml') },
      },
    )
    expect(JSON.parse(cli.stdout)).toEqual({
      keyId: kidB,
      keyIds: [kidB, kidA],
      resealed: sealedUnderA,
      alreadyCurrent: 0,
      remaining: 0,
      total: sealedUnderA,
    })
    expect(await kids()).toEqual(new Map([[kidB, sealedUnderA]]))
    const again = await request('POST', '/v1/master-key-rotations')
    expect(again.status, again.text).toBe(200)
    expect(again.body).toMatchObject({ resealed: 0, alreadyCurrent: sealedUnderA, remaining: 0 })
    await stopKiln()

    // Step 3: A is retired.
    await startKiln(keyB)
    await expectKubectlWorks('before-1')
    await expectKubectlWorks('before-2')
    await expectCsrSigned('before-2')
    await createCluster('after-1')
    await expectKubectlWorks('after-1')
    await expectCsrSigned('after-1')
    expect([...(await kids()).keys()]).toEqual([kidB])
  }, 400_000)
})
