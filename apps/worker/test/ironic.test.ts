import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { caCertHashes, IronicClient, type IronicNode } from '../../../packages/drivers/src/index.ts'
import { redisUrl } from '../../../test/support/api.ts'
import { startTestStack, type TestStack, testMasterKey } from '../../../test/support/engine.ts'
import {
  allocationsNamed,
  configDriveOf,
  ironicUrl,
  removeNodes,
  testIronicConfig,
} from '../../../test/support/ironic.ts'
import { anIronicBackend, anIronicTemplate, type IronicRack } from '../../../test/support/ironic-stack.ts'
import { startEngine } from '../src/engine.ts'
import {
  clusterUrl,
  createCluster,
  createReady,
  getCluster,
  machineRows,
  PROJECT,
  startOperation,
  waitForOperation,
} from './support.ts'

// Clusters on bare metal through the API and the engine, against the real Ironic scripts/test.sh
// starts. Control planes are served by the stack's simulated API server, as fake hardware runs no
// kubelet; everything between Kiln and Ironic is real.

const run = promisify(execFile)
const templateImage = {
  source: 'https://images.example.org/kiln-node-k8s-1.31.4.qcow2',
  checksum: 'b'.repeat(128),
  checksumAlgorithm: 'sha512',
  diskFormat: 'raw',
}
const admin = new IronicClient({ url: ironicUrl })
let stack: TestStack
let rack: IronicRack

const nodesOf = async (r: IronicRack) =>
  (await Promise.all(r.nodes.map((n) => admin.request<IronicNode>('GET', `v1/nodes/${n.uuid}`)))).sort(
    (a, b) => (a.name ?? '').localeCompare(b.name ?? ''),
  )

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  // Registered as a platform admin would: POST /v1/backends; the worker's catalogue sync does the rest.
  rack = await anIronicBackend(stack.db, admin, { name: 'metal', cpuNodes: 5, gpuNodes: 1, api: stack.app })
  await stack.engine!.syncCatalogueOnce()
  await anIronicTemplate(stack.db, rack, { name: 'metal-1.31', controlPlane: 1, workers: 2 })
  // This template names its own image; the others use the backend's for their Kubernetes version.
  await stack.db.clusterTemplate.updateMany({ where: { name: 'metal-1.31' }, data: { image: templateImage } })
  await anIronicTemplate(stack.db, rack, { name: 'metal-small', controlPlane: 1, workers: 1 })
  await anIronicTemplate(stack.db, rack, { name: 'metal-gpu', controlPlane: 1, workers: 1, gpu: 3 })
})

afterAll(async () => {
  await stack?.close()
  if (rack)
    await removeNodes(
      admin,
      rack.nodes.map((n) => n.uuid),
    )
  admin.close()
})

// Every node a cluster takes walks Ironic's deploy and every release its cleaning: seconds alone, and
// minutes when the shared Ironic serves many test runs at once.
describe('clusters on Ironic', { timeout: 180_000 }, () => {
  it('lists the discovered machine classes like any other backend', async () => {
    const res = await stack.app.inject({ method: 'GET', url: '/v1/machine-classes?backend=metal' })
    expect(res.statusCode, res.body).toBe(200)
    const items = (res.json() as { items: Record<string, unknown>[] }).items
    expect(items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: rack.cpuClass,
          cpu: 32,
          memoryMiB: 131072,
          gpuCount: 0,
          zones: ['zone-a'],
        }),
        expect.objectContaining({
          name: rack.gpuClass,
          gpuModel: 'nvidia-a100',
          gpuCount: 4,
          zones: ['zone-a'],
        }),
      ]),
    )
  })

  it('keeps syncing the other backends when one Ironic cannot be reached', async () => {
    const down = await stack.app.inject({
      method: 'POST',
      url: '/v1/backends',
      payload: {
        name: 'metal-down',
        kind: 'ironic',
        config: testIronicConfig({ url: 'http://127.0.0.1:1', requestTimeoutMs: 2000 }),
      },
    })
    expect(down.statusCode, down.body).toBe(201)
    try {
      const results = await stack.engine!.syncCatalogueOnce()
      const byName = Object.fromEntries(results.map((r) => [r.backend, r]))
      expect(byName['metal-down']?.error).toMatch(/127\.0\.0\.1:1/)
      expect(byName.metal?.error).toBeUndefined()
      expect(byName.metal?.synced).toEqual(expect.arrayContaining([rack.cpuClass, rack.gpuClass]))
    } finally {
      const removed = await stack.app.inject({ method: 'DELETE', url: '/v1/backends/metal-down' })
      expect(removed.statusCode, removed.body).toBe(204)
    }
  })

  it('refuses more GPU nodes than exist with a capacity error before any node is touched', async () => {
    const op = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name: 'too-many-gpus', template: 'metal-gpu' })).id,
    )
    expect(op.status).toBe('failed')
    expect(op.error).toMatchObject({ code: 'ERR_CAPACITY', reason: 'platform', step: 'reserve-capacity' })
    expect(op.error!.detail).toContain(`3 × ${rack.gpuClass} in zone-a (1 free)`)
    const cluster = await getCluster(stack.app, 'too-many-gpus')
    expect(await allocationsNamed(admin, `k-${cluster.id.slice(0, 8)}`)).toEqual([])
    expect((await nodesOf(rack)).map((n) => [n.provision_state, n.instance_uuid])).toEqual(
      rack.nodes.map(() => ['available', null]),
    )
    await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('too-many-gpus'))).id,
    )
  })

  it('creates, resizes and deletes a cluster: nodes active with kubeadm join config, then back to available', async () => {
    const cluster = await createReady(stack.app, 'metal-one', 'metal-1.31', 60_000)
    expect(cluster.status.phase).toBe('Ready')
    const prefix = `k-${cluster.id.slice(0, 8)}`

    // Kiln's books and Ironic's agree: one active node per machine, claimed by an allocation of its name.
    const rows = await machineRows(stack.db, cluster.id)
    expect(rows).toHaveLength(3)
    const allocations = await allocationsNamed(admin, prefix)
    expect(allocations.map((a) => [a.name, a.node_uuid, a.state]).sort()).toEqual(
      rows.map((m) => [m.name, m.externalId, 'active']).sort(),
    )
    for (const m of rows) {
      const node = await admin.request<IronicNode>('GET', `v1/nodes/${m.externalId}`)
      expect(node.provision_state).toBe('active')
      // Deployed with the template's image, as the template says.
      expect(node.instance_info).toMatchObject({
        image_source: templateImage.source,
        image_os_hash_algo: 'sha512',
        image_os_hash_value: templateImage.checksum,
        image_disk_format: 'raw',
      })
    }

    // A worker's config drive joins the cluster with a token the cluster knows and the CA Kiln issued.
    const worker = rows.find((m) => m.role === 'worker')!
    const userData = parseYaml((await configDriveOf(admin, worker.externalId!))!.user_data!) as {
      write_files: { path: string; content: string }[]
    }
    const [joinConfig] = parseAllDocuments(userData.write_files[0]!.content).map((d) => d.toJSON())
    expect(joinConfig.kind).toBe('JoinConfiguration')
    expect(joinConfig.discovery.bootstrapToken.apiServerEndpoint).toBe(
      `${cluster.id}.clusters.sim.kiln.internal:${new URL(cluster.status.endpoint!).port}`,
    )
    const ca = await stack.app.inject({ method: 'GET', url: `${clusterUrl('metal-one')}/ca` })
    expect(ca.statusCode, ca.body).toBe(200)
    const clusterCa = (ca.json() as { items: { purpose: string; certificatePem: string }[] }).items.find(
      (i) => i.purpose === 'cluster-ca',
    )!
    expect(joinConfig.discovery.bootstrapToken.caCertHashes).toEqual(caCertHashes(clusterCa.certificatePem))
    const [tokenId, tokenSecret] = String(joinConfig.discovery.bootstrapToken.token).split('.')
    const secrets = await stack.db.$queryRaw<
      { body: { stringData?: Record<string, string>; data?: Record<string, string> } }[]
    >`
      SELECT body FROM simulator.kube_objects
      WHERE cluster_id = ${cluster.id}::uuid AND resource = 'secrets' AND namespace = 'kube-system'
        AND name = ${`bootstrap-token-${tokenId}`} AND NOT deleted`
    expect(secrets).toHaveLength(1)
    const stored = secrets[0]!.body
    const secretValue =
      stored.stringData?.['token-secret'] ??
      Buffer.from(stored.data?.['token-secret'] ?? '', 'base64').toString('utf8')
    expect(secretValue).toBe(tokenSecret)
    expect(joinConfig.nodeRegistration.kubeletExtraArgs).toEqual([
      {
        name: 'node-labels',
        value: `kiln.dev/node-group=workers,kiln.dev/role=worker,topology.kubernetes.io/zone=zone-a,node.kubernetes.io/instance-type=${rack.cpuClass}`,
      },
    ])

    // The kubeconfig Kiln issues works with the real kubectl: one Ready node per Ironic node.
    const issued = await stack.app.inject({
      method: 'POST',
      url: `${clusterUrl('metal-one')}/kubeconfig`,
      payload: { ttlSeconds: 600 },
    })
    expect(issued.statusCode, issued.body).toBe(201)
    const dir = await mkdtemp(join(tmpdir(), 'kiln-metal-'))
    try {
      const file = join(dir, 'kubeconfig')
      await writeFile(file, (issued.json() as { kubeconfig: string }).kubeconfig, { mode: 0o600 })
      const { stdout } = await run('kubectl', [
        '--kubeconfig',
        file,
        '--cache-dir',
        join(dir, 'cache'),
        'get',
        'nodes',
        '-o',
        'jsonpath={range .items[*]}{.metadata.name} {.spec.providerID} {.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
      ])
      expect(stdout.trim().split('\n').sort()).toEqual(
        rows.map((m) => `${m.name} ironic://${m.externalId} True`).sort(),
      )
    } finally {
      await rm(dir, { recursive: true, force: true })
    }

    // Resize up, then down: released nodes go back to the pool and their allocations go.
    const workers = cluster.spec.nodeGroups.find((g) => g.name === 'workers')!
    const nodeGroupUrl = `/v1/projects/${PROJECT}/clusters/metal-one/nodegroups/workers`
    const up = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'POST', `${nodeGroupUrl}/resize`, { count: workers.count + 1 })).id,
      60_000,
    )
    expect(up.status, JSON.stringify(up.steps)).toBe('succeeded')
    expect(await allocationsNamed(admin, prefix)).toHaveLength(4)
    const down = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'POST', `${nodeGroupUrl}/resize`, { count: 1 })).id,
      60_000,
    )
    expect(down.status, JSON.stringify(down.steps)).toBe('succeeded')
    expect(await allocationsNamed(admin, prefix)).toHaveLength(2)
    const kept = new Set((await machineRows(stack.db, cluster.id)).map((m) => m.externalId))
    for (const node of await nodesOf(rack)) {
      expect(node.provision_state, node.name!).toBe(kept.has(node.uuid) ? 'active' : 'available')
    }

    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('metal-one'))).id,
      60_000,
    )
    expect(deleted.status, JSON.stringify(deleted.steps)).toBe('succeeded')
    expect(await allocationsNamed(admin, prefix)).toEqual([])
    for (const node of await nodesOf(rack)) {
      expect([node.name, node.provision_state, node.instance_uuid]).toEqual([node.name, 'available', null])
    }
  })

  it('never gives one node to two clusters when two workers create at once', async () => {
    // Two engines of one operation slot each: the creates are run by both at the same time.
    await stack.stopEngine()
    const ranBy = new Map<string, string>()
    const engines = await Promise.all(
      ['worker-one', 'worker-two'].map((workerId) =>
        startEngine({
          db: stack.db,
          masterKey: testMasterKey,
          databaseUrl: stack.databaseUrl,
          connection: { url: redisUrl, maxRetriesPerRequest: null },
          prefix: stack.prefix,
          workerId,
          concurrency: 1,
          leaseMs: 3000,
          dispatchIntervalMs: 200,
          healthIntervalMs: 0,
          catalogueIntervalMs: 0,
          log: (event) => {
            if (event.msg === 'operation finished') ranBy.set(String(event.operationId), workerId)
          },
        }),
      ),
    )
    try {
      // 5 free CPU nodes, 2 per cluster: three creates at once, so one of them must come up short.
      const names = ['race-a', 'race-b', 'race-c']
      const ops = await Promise.all(
        names.map(async (name) => (await createCluster(stack.app, { name, template: 'metal-small' })).id),
      )
      const results = await Promise.all(ops.map((id) => waitForOperation(stack.app, id, 60_000)))
      const succeeded = results.filter((r) => r.status === 'succeeded')
      expect(succeeded.length).toBe(2)
      const failed = results.filter((r) => r.status !== 'succeeded')
      expect(failed.map((r) => r.error?.code)).toEqual(['ERR_CAPACITY'])

      const nodeIds: string[] = []
      for (const name of names) {
        const cluster = await getCluster(stack.app, name)
        nodeIds.push(...(await machineRows(stack.db, cluster.id)).map((m) => m.externalId!).filter(Boolean))
      }
      expect(new Set(nodeIds).size).toBe(nodeIds.length)
      const active = (await nodesOf(rack)).filter((n) => n.provision_state === 'active')
      expect(active.map((n) => n.uuid).sort()).toEqual(
        [...new Set(nodeIds)].filter((id) => active.some((n) => n.uuid === id)).sort(),
      )
      for (const name of names) {
        await waitForOperation(
          stack.app,
          (await startOperation(stack.app, 'DELETE', clusterUrl(name))).id,
          60_000,
        )
      }
      expect(new Set(ranBy.values())).toEqual(new Set(['worker-one', 'worker-two']))
    } finally {
      await Promise.all(engines.map((e) => e.stop()))
      await stack.startEngine()
    }
  })

  it('repairs a machine whose node went into maintenance: another node takes its place', async () => {
    const cluster = await createReady(stack.app, 'metal-repair', 'metal-small', 60_000)
    const worker = (await machineRows(stack.db, cluster.id)).find((m) => m.role === 'worker')!
    await admin.request('PUT', `v1/nodes/${worker.externalId}/maintenance`, { reason: 'ECC errors' })

    expect(await stack.engine!.observeOnce()).toBe(1)
    const sick = await getCluster(stack.app, 'metal-repair')
    const machinesReady = sick.status.conditions.find((c) => c.type === 'MachinesReady')!
    expect(machinesReady.message).toContain('Maintenance: ECC errors')
    const repair = await waitForOperation(stack.app, sick.activeOperationId!, 60_000)
    expect(repair.kind).toBe('cluster.repair')
    expect(repair.status, JSON.stringify(repair.steps)).toBe('succeeded')

    const rows = await machineRows(stack.db, cluster.id)
    expect(rows).toHaveLength(2)
    expect(rows.map((m) => m.externalId)).not.toContain(worker.externalId)
    const broken = await admin.request<IronicNode>('GET', `v1/nodes/${worker.externalId}`)
    // Released back to Ironic undeployed, and still in maintenance for the platform team.
    expect([broken.provision_state, broken.maintenance, broken.instance_uuid]).toEqual([
      'available',
      true,
      null,
    ])
    expect((await getCluster(stack.app, 'metal-repair')).status.phase).toBe('Ready')
    await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('metal-repair'))).id,
      60_000,
    )
  })
})
