// Proves: on a Cluster API backend, worker processes killed with SIGKILL at random moments and a
// Redis FLUSHALL mid-run lose and duplicate nothing. A management cluster (a Kiln cluster on the
// simulated data centre, holding the official Cluster API CRDs, with the stand-in for Cluster API's
// controllers) serves a capi backend; 12 clusters (1 control plane + 2 workers) are created and then
// deleted through the API while real workers die every 2–5 s. Every operation succeeds, and the
// books agree exactly: each Kiln cluster has one Cluster whose slots are its machine names, each
// bound to its own running Machine; after the deletes nothing of Kiln's is left on the management
// cluster.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { startClusterApiStandIn } from '../../apps/simulator/src/capi/controller.ts'
import {
  clusterApiCrdDirs,
  simulatedCapiBackend,
  simulatedClusterClass,
} from '../../apps/simulator/test/capi-support.ts'
import { aTemplate } from '../support/builders.ts'
import {
  between,
  dataCentre,
  describeUnsucceeded,
  project,
  type Stack,
  startStack,
  type WorkerProcess,
} from './harness.ts'

const clusters = 12
const namespace = 'kiln-clusters'
const timeoutMs = 5 * 60_000

// biome-ignore lint/suspicious/noExplicitAny: kubectl's JSON output, read field by field
type Json = any

describe('capi faults', () => {
  let stack: Stack
  let dir: string
  let kubeconfig: string
  let standIn: ReturnType<typeof startClusterApiStandIn> | undefined

  const kubectl = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        'kubectl',
        ['--kubeconfig', kubeconfig, '--cache-dir', join(dir, 'cache'), '--request-timeout', '20s', ...args],
        { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      )
    })
  const must = async (args: string[]) => {
    const result = await kubectl(args)
    if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`)
    return result.stdout
  }
  const list = async (kind: string): Promise<Json[]> =>
    JSON.parse(await must(['get', kind, '-n', namespace, '-o', 'json'])).items

  /** Starts a worker, and keeps killing workers every 2–5 s of their life, replacing them. */
  const chaos = () => {
    const killAt = new Map<WorkerProcess, number>()
    let kills = 0
    return {
      kills: () => kills,
      async tick() {
        const now = Date.now()
        for (const w of stack.liveWorkers())
          if (w.readyAt && !killAt.has(w)) killAt.set(w, w.readyAt + between(2000, 5000))
        for (const w of stack
          .liveWorkers()
          .filter((x) => (killAt.get(x) ?? Number.POSITIVE_INFINITY) <= now)) {
          await w.kill9()
          kills++
          stack.log(`[test] SIGKILL ${w.name}`)
        }
        if (stack.liveWorkers().length === 0) stack.startWorker()
      },
    }
  }

  beforeAll(async () => {
    stack = await startStack({ simulator: dataCentre(), controlPlane: 1, workers: 2 })
    dir = await mkdtemp(join(tmpdir(), 'kiln-capi-faults-'))
    kubeconfig = join(dir, 'management.kubeconfig')
    const worker = stack.startWorker()
    await worker.ready
    // The management cluster: a Kiln cluster on the simulated data centre, as a platform team would run one.
    const created = await stack.createCluster('capi-management')
    await stack.waitTerminal([created], 120_000)
    const issued = await stack.app.inject({
      method: 'POST',
      url: `/v1/projects/${project}/clusters/capi-management/kubeconfig`,
      payload: {},
    })
    expect(issued.statusCode, issued.body).toBe(201)
    await writeFile(kubeconfig, issued.json<{ kubeconfig: string }>().kubeconfig, { mode: 0o600 })
    await must(['apply', '--server-side', ...clusterApiCrdDirs.flatMap((d) => ['-f', d])])
    await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=30s'])
    await must(['create', 'namespace', namespace])
    await must(['apply', '--server-side', '-n', namespace, '-f', simulatedClusterClass])
    // Room for every cluster here: the platform's quota share, raised for this test.
    for (const template of ['kiln-simulated-control-plane', 'kiln-simulated-m1-medium'])
      await must([
        'annotate',
        '-n',
        namespace,
        `openstackmachinetemplate/${template}`,
        'kiln.dev/max-per-failure-domain=100',
        '--overwrite',
      ])
    standIn = startClusterApiStandIn({ kubeconfig, namespaces: [namespace], intervalMs: 100 })
    const registered = await stack.app.inject({
      method: 'POST',
      url: '/v1/backends',
      payload: {
        name: 'cloud',
        kind: 'capi',
        config: simulatedCapiBackend(kubeconfig, `https://127.0.0.1:${stack.apiServerPort}`, {
          namespace,
          waitSeconds: 5,
        }),
      },
    })
    expect(registered.statusCode, registered.body).toBe(201)
    // A worker copies the ClusterClass's machine classes into the catalogue when it starts.
    await worker.stop()
    await stack.startWorker().ready
    const deadline = Date.now() + 60_000
    while (!(await stack.db.machineClass.findUnique({ where: { name: 'c1.medium' } }))) {
      if (Date.now() > deadline) throw new Error('the capi machine classes never reached the catalogue')
      await new Promise((r) => setTimeout(r, 500))
    }
    const backend = await stack.db.backend.findUniqueOrThrow({ where: { name: 'cloud' } })
    await aTemplate(stack.db, backend.id, {
      name: 'cloud-1.31',
      controlPlane: { count: 1, machineClass: 'c1.medium' },
      nodeGroups: [{ name: 'workers', machineClass: 'c1.medium', count: 2, minCount: 1, maxCount: 5 }],
    })
  }, 300_000)

  afterAll(async () => {
    await standIn?.stop()
    await stack?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('creates and deletes 12 clusters with no lost, duplicated or orphaned Cluster API object while workers are SIGKILLed and Redis is flushed', async () => {
    onTestFailed(() => stack.dumpLogs(400))
    const started = Date.now()
    const creates: string[] = []
    for (let i = 0; i < clusters; i++) {
      const res = await stack.app.inject({
        method: 'POST',
        url: `/v1/projects/${project}/clusters`,
        payload: { name: `cloud-${String(i).padStart(2, '0')}`, template: 'cloud-1.31' },
      })
      expect(res.statusCode, res.body).toBe(202)
      creates.push(res.json<{ id: string }>().id)
    }
    const killing = chaos()
    let flushed = false
    await stack.waitTerminal(creates, timeoutMs, async () => {
      await killing.tick()
      if (
        !flushed &&
        [...(await stack.statuses(creates)).values()].filter((s) => s === 'succeeded').length >= 3
      ) {
        await stack.redis.flushAll()
        flushed = true
        stack.log('[test] FLUSHALL')
      }
    })
    expect(await describeUnsucceeded(stack.db, creates), 'creates').toEqual([])
    expect(flushed).toBe(true)

    // The books: Kiln's machines and Cluster API's objects agree exactly.
    const kilnClusters = await stack.db.cluster.findMany({
      where: { template: { backend: { name: 'cloud' } } },
      include: { machines: true },
    })
    expect(kilnClusters).toHaveLength(clusters)
    for (const c of kilnClusters) expect(c.status).toMatchObject({ phase: 'Ready' })
    const capiClusters = await list('clusters.cluster.x-k8s.io')
    expect(capiClusters).toHaveLength(clusters)
    const machines = new Map<string, Json>(
      (await list('machines.cluster.x-k8s.io')).map((m) => [m.metadata.name, m]),
    )
    const bound = new Set<string>()
    for (const c of kilnClusters) {
      const [capi] = capiClusters.filter((x) => x.metadata.labels['kiln.dev/cluster-id'] === c.id)
      expect(capi, `the Cluster of ${c.name}`).toBeDefined()
      const slots = JSON.parse(capi.metadata.annotations['kiln.dev/machines']) as Record<
        string,
        { m?: string }
      >
      expect(Object.keys(slots).sort()).toEqual(c.machines.map((m) => m.name).sort())
      for (const slot of Object.values(slots)) {
        expect(slot.m, `a Machine for every slot of ${c.name}`).toBeDefined()
        expect(bound.has(slot.m!), `${slot.m} bound twice`).toBe(false)
        bound.add(slot.m!)
        expect(machines.get(slot.m!)?.status?.phase).toBe('Running')
      }
    }
    expect(machines.size).toBe(clusters * 3)

    const deletes: string[] = []
    for (const c of kilnClusters) {
      const res = await stack.app.inject({
        method: 'DELETE',
        url: `/v1/projects/${project}/clusters/${c.name}`,
      })
      expect(res.statusCode, res.body).toBe(202)
      deletes.push(res.json<{ id: string }>().id)
    }
    await stack.waitTerminal(deletes, timeoutMs, () => killing.tick())
    expect(await describeUnsucceeded(stack.db, deletes), 'deletes').toEqual([])
    for (const kind of [
      'clusters.cluster.x-k8s.io',
      'machines.cluster.x-k8s.io',
      'machinedeployments.cluster.x-k8s.io',
      'machinehealthchecks.cluster.x-k8s.io',
      'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io',
    ])
      expect(
        (await list(kind)).map((o) => o.metadata.name),
        kind,
      ).toEqual([])
    expect(
      JSON.parse(
        await must([
          'get',
          'secrets',
          '-n',
          namespace,
          '-l',
          'app.kubernetes.io/managed-by=kiln',
          '-o',
          'json',
        ]),
      ).items,
    ).toEqual([])
    console.log(
      `[capi-faults] ${clusters} creates and ${clusters} deletes on capi succeeded in ${((Date.now() - started) / 1000).toFixed(1)} s; ` +
        `${killing.kills()} SIGKILLs, 1 FLUSHALL; ${clusters * 3} Machines bound one to one, nothing left after the deletes`,
    )
    // The run must actually have been chaotic, or it proves nothing.
    expect(killing.kills()).toBeGreaterThanOrEqual(3)
  })
})
