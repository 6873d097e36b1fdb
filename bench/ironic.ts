/**
 * Bare metal through Ironic: `npx tsx bench/ironic.ts`.
 *
 *   P10 BENCH_P10_CLUSTERS (10) clusters of 1 control plane + 1 worker created at once through the
 *       API on the local Ironic's fake hardware, until every create succeeded; then all deleted.
 *       Baseline, measured in the same run against the same Ironic: a raw client doing only the
 *       Ironic calls that path needs (allocation, instance_info, deploy with a config drive, each
 *       polled), as many flows at once, and their undeploys.
 *       The ratio Kiln ÷ raw Ironic is what Kiln adds: its own steps (records, certificates, the
 *       kubeadm bootstrap material, add-ons against the simulated API server) and its polling.
 *
 * Ironic is started by scripts/ironic/start-ironic.sh (installed on first use), the nodes are
 * enrolled under a resource class of this run and deleted afterwards.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { createDatabase } from '@kiln/db'
import { IronicClient } from '@kiln/drivers'
import { eventually } from '../test/support/eventually.ts'
import { enrollNodes, ironicUrl, removeNodes, testIronicConfig, waitForNode } from '../test/support/ironic.ts'
import {
  createBenchDatabase,
  dbUrl,
  describeMachine,
  envInt,
  formatTable,
  log,
  median,
  onCleanup,
  printReport,
  round,
  runBench,
  runId,
  startKiln,
  startSimulatorChild,
  writeResults,
} from './harness.ts'

const run = promisify(execFile)
const clusters = envInt('BENCH_P10_CLUSTERS', 10)
const prefix = `kiln-bench-${runId}-p10`
/** How long one raw allocation, deploy or undeploy may take. */
const timeoutMs = 120_000

/** What the Kiln path asks of Ironic for one node, done directly: claim, describe, deploy, each polled. */
async function rawDeploy(ironic: IronicClient, name: string, resourceClass: string, candidates: string[]) {
  const allocation = await ironic.request<{ uuid: string }>('POST', 'v1/allocations', {
    name,
    resource_class: resourceClass,
    candidate_nodes: candidates,
  })
  const node = await eventually(
    `allocation ${name}`,
    async () => {
      const a = await ironic.request<{ state: string; node_uuid: string | null }>(
        'GET',
        `v1/allocations/${allocation.uuid}`,
      )
      if (a.state === 'error') throw new Error(`raw allocation ${name} failed`)
      return a.state === 'active' ? a.node_uuid! : undefined
    },
    timeoutMs,
    50,
  )
  await ironic.request('PATCH', `v1/nodes/${node}`, [
    { op: 'add', path: '/instance_info/image_source', value: 'http://images.example.org/k8s.qcow2' },
    { op: 'add', path: '/instance_info/image_os_hash_algo', value: 'sha256' },
    { op: 'add', path: '/instance_info/image_os_hash_value', value: 'a'.repeat(64) },
    { op: 'add', path: '/instance_info/root_gb', value: 50 },
  ])
  await ironic.request('PUT', `v1/nodes/${node}/states/provision`, {
    target: 'active',
    configdrive: { meta_data: { hostname: name }, user_data: '#cloud-config\n' },
  })
  await waitForNode(
    ironic,
    node,
    (n) => n.provision_state === 'active' && !n.target_provision_state,
    timeoutMs,
  )
  return node
}

async function rawUndeploy(ironic: IronicClient, node: string) {
  await ironic.request('PUT', `v1/nodes/${node}/states/provision`, { target: 'deleted' })
  await waitForNode(
    ironic,
    node,
    (n) => n.provision_state === 'available' && !n.target_provision_state,
    timeoutMs,
  )
}

async function main() {
  const started = Date.now()
  log('starting the local Ironic (scripts/ironic/start-ironic.sh)')
  await run('bash', ['scripts/ironic/start-ironic.sh'])
  const ironic = new IronicClient({ url: ironicUrl })
  onCleanup('ironic client', async () => ironic.close())
  const resourceClass = `bench-${runId}`
  const nodes = await enrollNodes(ironic, { resourceClass, count: 2 * clusters, zone: 'zone-a' })
  onCleanup('ironic nodes', () =>
    removeNodes(
      ironic,
      nodes.map((n) => n.uuid),
    ),
  )
  log(`enrolled ${nodes.length} fake-hardware nodes (${resourceClass})`)

  // Baseline: the raw Ironic calls, `clusters` flows at once, two nodes each.
  const candidates = nodes.map((n) => n.uuid)
  const r0 = performance.now()
  const rawNodes = (
    await Promise.all(
      Array.from({ length: clusters }, async (_, i) => [
        await rawDeploy(ironic, `raw-${runId}-${i}-a`, resourceClass, candidates),
        await rawDeploy(ironic, `raw-${runId}-${i}-b`, resourceClass, candidates),
      ]),
    )
  ).flat()
  const rawCreate = performance.now() - r0
  const u0 = performance.now()
  await Promise.all(rawNodes.map((n) => rawUndeploy(ironic, n)))
  const rawDelete = performance.now() - u0
  log(`raw Ironic: deploy ${round(rawCreate / 1000)} s, undeploy ${round(rawDelete / 1000)} s`)

  // Kiln: the API over HTTP, one engine, the simulated API server serving the clusters' Kubernetes.
  await createBenchDatabase()
  const db = createDatabase({ url: dbUrl, maxConnections: 10 })
  onCleanup('prisma', () => db.$disconnect())
  const simulator = await startSimulatorChild()
  const backend = await db.backend.create({
    data: {
      name: 'metal',
      kind: 'ironic',
      config: testIronicConfig({
        controlPlaneEndpoint: {
          server: simulator.url,
          tlsServerName: '{clusterId}.clusters.sim.kiln.internal',
        },
      }) as object,
    },
  })
  await db.kubernetesVersion.create({ data: { version: '1.31.4', lifecycle: 'supported' } })
  await db.project.create({ data: { name: 'bench', displayName: 'bench' } })
  const { base, engine } = await startKiln(db, prefix, { catalogueIntervalMs: 0, expiryIntervalMs: 0 })
  await engine.syncCatalogueOnce()
  await db.clusterTemplate.create({
    data: {
      name: 'metal',
      version: 1,
      kubernetesVersion: '1.31.4',
      backendId: backend.id,
      controlPlane: { count: 1, machineClass: resourceClass },
      nodeGroups: [{ name: 'workers', machineClass: resourceClass, count: 1, minCount: 0, maxCount: 10 }],
      features: {},
      lockedFeatures: [],
    },
  })

  const post = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      ...(body ? { body: JSON.stringify(body) } : {}),
    })
    if (res.status !== 202) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
    return ((await res.json()) as { id: string }).id
  }
  interface Op {
    status: string
    steps: { name: string; startedAt: string | null; finishedAt: string | null }[]
  }
  const finish = async (id: string) => {
    let op: Op = { status: 'pending', steps: [] }
    while (op.status === 'pending' || op.status === 'running')
      op = (await (await fetch(`${base}/v1/operations/${id}?wait=20s`)).json()) as Op
    if (op.status !== 'succeeded')
      throw new Error(`operation ${id} ${op.status}: ${JSON.stringify(op.steps)}`)
    return op
  }
  const stepMs = (op: Op, names: string[]) =>
    op.steps
      .filter((s) => names.includes(s.name) && s.startedAt && s.finishedAt)
      .reduce((sum, s) => sum + Date.parse(s.finishedAt!) - Date.parse(s.startedAt!), 0)

  const names = Array.from({ length: clusters }, (_, i) => `p10-${i}-${randomBytes(2).toString('hex')}`)
  const k0 = performance.now()
  const creates = await Promise.all(
    names.map(async (name) => {
      const t0 = performance.now()
      const op = await finish(await post('POST', '/v1/projects/bench/clusters', { name, template: 'metal' }))
      return { op, ms: performance.now() - t0 }
    }),
  )
  const kilnCreate = performance.now() - k0
  const d0 = performance.now()
  await Promise.all(
    names.map(async (name) => finish(await post('DELETE', `/v1/projects/bench/clusters/${name}`))),
  )
  const kilnDelete = performance.now() - d0
  const ironicSteps = median(
    creates.map((c) => stepMs(c.op, ['allocate-machines', 'bootstrap-control-plane', 'join-workers'])),
  )
  const addons = median(creates.map((c) => stepMs(c.op, ['install-addons'])))
  const left = (
    await ironic.request<{ allocations: { name: string | null }[] }>('GET', 'v1/allocations')
  ).allocations.filter((a) => a.name?.startsWith('k-')).length

  const table = formatTable(
    ['phase', 'Kiln (API → worker → Ironic)', `raw Ironic calls`, 'ratio'],
    [
      [
        `create ${clusters} × (1 + 1)`,
        `${round(kilnCreate / 1000)} s`,
        `${round(rawCreate / 1000)} s`,
        `${round(kilnCreate / rawCreate)}x`,
      ],
      [
        `delete ${clusters}`,
        `${round(kilnDelete / 1000)} s`,
        `${round(rawDelete / 1000)} s`,
        `${round(kilnDelete / rawDelete)}x`,
      ],
    ],
  )
  printReport(
    `P10: ${clusters} clusters on Ironic fake hardware at once, against the raw Ironic calls`,
    table,
    [
      `per cluster POST → Ready: median ${round(median(creates.map((c) => c.ms)) / 1000)} s; of it the Ironic steps (allocate, bootstrap, join) ${round(ironicSteps / 1000)} s and add-ons ${round(addons / 1000)} s`,
      `allocations left after the deletes: ${left} (want 0)`,
      'ratio = Kiln ÷ the raw client doing only the Ironic calls of that path, same concurrency, same run',
    ],
  )
  await writeResults('ironic', started, {
    machine: describeMachine(),
    clusters,
    kiln: { createMs: kilnCreate, deleteMs: kilnDelete, perClusterMs: creates.map((c) => c.ms) },
    raw: { createMs: rawCreate, deleteMs: rawDelete },
    medianIronicStepsMs: ironicSteps,
    medianAddonsMs: addons,
    allocationsLeft: left,
  })
}

void runBench(main, {
  cleanupTimeoutMs: 30_000,
  interrupting: 'stopping the engine and the simulator, removing the nodes and dropping the bench database',
  cleanedUp: 'engine, simulator, Ironic nodes, database and Redis keys',
})
