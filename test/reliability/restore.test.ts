// Proves: a PostgreSQL backup is all Kiln needs (with its master keys). While cluster creates are in
// flight, the real pg_dump takes a backup; the old site is then lost (worker SIGKILLed, its
// PostgreSQL and Redis gone). A new PostgreSQL gets the dump through the real pg_restore, and a new
// API and worker start on it with a new, EMPTY Redis: the dispatcher re-creates the jobs of the
// operations that were in flight from PostgreSQL, every one finishes, the clusters built before the
// backup are intact, and the restored CAs still issue kubeconfigs the real kubectl uses and sign CSRs.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  clusterPhases,
  dataCentre,
  describeUnsucceeded,
  isTerminal,
  project,
  type Stack,
  slowMachineCalls,
  startStack,
} from './harness.ts'

const run = promisify(execFile)
const machinesPerCluster = 3
const built = 3
const inFlight = 6

describe('backup and restore', () => {
  let old: Stack | undefined
  let restored: Stack | undefined
  let work: string

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'kiln-restore-'))
  })

  afterAll(async () => {
    await old?.close()
    await restored?.close()
    await rm(work, { recursive: true, force: true })
  })

  async function expectKubectlWorks(stack: Stack, cluster: string) {
    const res = await stack.app.inject({
      method: 'POST',
      url: `/v1/projects/${project}/clusters/${cluster}/kubeconfig`,
      payload: { ttlSeconds: 600 },
    })
    expect(res.statusCode, res.body).toBe(201)
    const file = join(work, `${cluster}.kubeconfig`)
    await writeFile(file, (res.json() as { kubeconfig: string }).kubeconfig)
    const { stdout } = await run('kubectl', ['--kubeconfig', file, 'get', 'nodes', '-o', 'name'])
    expect(stdout.trim().split('\n')).toHaveLength(machinesPerCluster)
  }

  async function expectCsrSigned(stack: Stack, cluster: string) {
    const csr = join(work, `${cluster}.csr`)
    await run('openssl', [
      ...['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'],
      ...['-keyout', join(work, `${cluster}.key`), '-subj', '/CN=restorer', '-out', csr],
    ])
    const res = await stack.app.inject({
      method: 'POST',
      url: `/v1/projects/${project}/clusters/${cluster}/csr`,
      payload: { csrPem: await readFile(csr, 'utf8') },
    })
    expect(res.statusCode, res.body).toBe(201)
    const crt = join(work, `${cluster}.crt`)
    await writeFile(crt, (res.json() as { certificatePem: string }).certificatePem)
    const { stdout } = await run('openssl', ['x509', '-in', crt, '-noout', '-subject'])
    expect(stdout).toMatch(/CN\s*=\s*restorer/)
    // Signed by a CA the restored cluster publishes.
    const cas = await stack.app.inject({
      method: 'GET',
      url: `/v1/projects/${project}/clusters/${cluster}/ca`,
    })
    expect(cas.statusCode, cas.body).toBe(200)
    const bundle = join(work, `${cluster}-ca.crt`)
    const items = (cas.json() as { items: { certificatePem: string }[] }).items
    await writeFile(bundle, items.map((ca) => ca.certificatePem).join(''))
    expect((await run('openssl', ['verify', '-CAfile', bundle, crt])).stdout).toContain(': OK')
  }

  it('restores a pg_dump taken mid-flight into a new stack with an empty Redis, and everything finishes', async () => {
    onTestFailed(() => {
      old?.dumpLogs(200)
      restored?.dumpLogs(300)
    })
    const simulator = dataCentre({ latency: slowMachineCalls(300, 900) })
    old = await startStack({ simulator, controlPlane: 1, workers: 2 })
    const oldWorker = old.startWorker()
    await oldWorker.ready

    const before: string[] = []
    for (let i = 0; i < built; i++) before.push(await old.createCluster(`built-${i}`))
    await old.waitTerminal(before, 120_000)
    const flying: string[] = []
    for (let i = 0; i < inFlight; i++) flying.push(await old.createCluster(`flying-${i}`))
    // Back up once some of them are well under way (a step done) and none has finished.
    await old
      .waitTerminal(flying, 60_000, async () => {
        const rows = await old!.db.operation.findMany({
          where: { id: { in: flying } },
          select: { steps: true },
        })
        const started = rows.filter((r) =>
          (r.steps as { status: string }[]).some((s) => s.status === 'succeeded'),
        ).length
        if (started >= 2) throw new Backup()
      })
      .catch((e) => {
        if (!(e instanceof Backup)) throw e
      })
    const dump = join(work, 'kiln.dump')
    const dumpStarted = Date.now()
    await run('pg_dump', ['--format=custom', '--file', dump, old.databaseUrl])
    const dumpMs = Date.now() - dumpStarted

    // The old site is lost: the worker dies mid-step, PostgreSQL and Redis go with the stack. The
    // simulated data centre's API server is the backend, outside Kiln: the new one listens where it did.
    await oldWorker.kill9()
    const apiServerPort = old.apiServerPort
    await old.close()
    old = undefined

    let restoreMs = 0
    restored = await startStack({
      simulator,
      apiServerPort,
      restore: async (databaseUrl) => {
        const started = Date.now()
        await run('pg_restore', ['--no-owner', '--exit-on-error', '--dbname', databaseUrl, dump])
        restoreMs = Date.now() - started
      },
    })
    const stack = restored
    const all = [...before, ...flying]
    const atRestore = await stack.statuses(all)
    const unfinished = flying.filter((id) => !isTerminal(atRestore.get(id)!))
    expect(unfinished.length, 'operations were in flight in the backup').toBeGreaterThan(0)
    expect(before.map((id) => atRestore.get(id))).toEqual(before.map(() => 'succeeded'))

    const worker = stack.startWorker()
    await worker.ready
    const started = Date.now()
    await stack.waitTerminal(all, 180_000)
    const finishMs = Date.now() - started
    expect(await describeUnsucceeded(stack.db, all)).toEqual([])
    const phases = await clusterPhases(stack.app)
    expect(phases.size).toBe(built + inFlight)
    expect([...phases.values()].filter((p) => p !== 'Ready')).toEqual([])
    await worker.stop()
    await stack.expectNoOrphans((built + inFlight) * machinesPerCluster)

    await expectKubectlWorks(stack, 'built-0')
    await expectKubectlWorks(stack, 'flying-0')
    await expectCsrSigned(stack, 'built-1')

    const requeued = stack
      .logs()
      .map((l) =>
        l.includes('"msg":"dispatcher queued operations"') ? /"queued":(\d+)/.exec(l)?.[1] : undefined,
      )
      .reduce((sum, n) => sum + (n ? Number(n) : 0), 0)
    expect(requeued).toBeGreaterThanOrEqual(unfinished.length)
    console.log(
      `[restore] pg_dump ${dumpMs} ms, pg_restore ${restoreMs} ms; ${unfinished.length} of ${inFlight} creates in flight in the backup, ` +
        `re-queued from PostgreSQL (${requeued} jobs) into an empty Redis, all finished ${(finishMs / 1000).toFixed(1)} s after the new worker started; ` +
        `${built + inFlight} clusters Ready, kubeconfig + kubectl and CSR signing work on the restored CAs`,
    )
  }, 480_000)
})

/** Stops waitTerminal once the backup moment has come. */
class Backup extends Error {}
