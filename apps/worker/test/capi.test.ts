import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { aKubernetesVersion, aTemplate } from '../../../test/support/builders.ts'
import type { TestStack } from '../../../test/support/engine.ts'
import {
  type ManagementCluster,
  simulatedCapiBackend,
  startManagementCluster,
} from '../../simulator/test/capi-support.ts'
import {
  clusterUrl,
  conditionOf,
  createReady,
  getCluster,
  machineRows,
  type OperationBody,
  startOperation,
  waitForOperation,
} from './support.ts'

// biome-ignore lint/suspicious/noExplicitAny: kubectl's JSON output, read field by field
type Json = any

// Clusters on a Cluster API backend through the API and the engine, as they run on the simulator
// and on Ironic: create → the real kubectl with the issued kubeconfig → resize → node groups →
// features → upgrade → delete, with nothing left on the management cluster. The management cluster
// is a simulated cluster of the same stack holding the official CRDs, with the stand-in for Cluster
// API's controllers; the workload clusters answer at the same simulated API server.

const namespace = 'kiln-clusters'
let management: ManagementCluster
let stack: TestStack

const kubectlJson = async (args: string[]) => {
  const result = await management.mgmt.kubectl([...args, '-n', namespace, '-o', 'json'])
  expect(result.code, result.stderr).toBe(0)
  return JSON.parse(result.stdout) as Json
}

const run = async (method: 'POST' | 'PATCH' | 'DELETE', url: string, payload?: Record<string, unknown>) => {
  const op = await waitForOperation(
    stack.app,
    (await startOperation(stack.app, method, url, payload)).id,
    90_000,
  )
  expect(op.status, JSON.stringify(op.steps)).toBe('succeeded')
  return op as OperationBody
}

beforeAll(async () => {
  management = await startManagementCluster({ name: 'capi-engine', standIn: { namespaces: [namespace] } })
  stack = management.mgmt.stack
  await management.namespace(namespace)
  const res = await stack.app.inject({
    method: 'POST',
    url: '/v1/backends',
    payload: {
      name: 'cloud',
      kind: 'capi',
      config: simulatedCapiBackend(
        management.kubeconfigPath,
        `https://127.0.0.1:${management.mgmt.server.port}`,
        {
          namespace,
          waitSeconds: 10,
        },
      ),
    },
  })
  expect(res.statusCode, res.body).toBe(201)
  const synced = await stack.engine!.syncCatalogueOnce()
  const cloud = synced.find((s) => s.backend === 'cloud')
  expect(cloud?.error).toBeUndefined()
  expect(cloud?.conflicts).toEqual([])
  const backend = await stack.db.backend.findUniqueOrThrow({ where: { name: 'cloud' } })
  await aKubernetesVersion(stack.db, '1.32.1')
  const shape = {
    controlPlane: { count: 1, machineClass: 'c1.medium' },
    nodeGroups: [{ name: 'workers', machineClass: 'c1.medium', count: 2, minCount: 1, maxCount: 5 }],
  }
  await aTemplate(stack.db, backend.id, { name: 'cloud-1.31', ...shape })
  await aTemplate(stack.db, backend.id, { name: 'cloud-1.32', kubernetesVersion: '1.32.1', ...shape })
}, 240_000)

afterAll(async () => {
  await management?.close()
})

describe('clusters on a Cluster API backend', { timeout: 180_000 }, () => {
  it('lists the machine classes discovered from the ClusterClass like any other backend', async () => {
    const res = await stack.app.inject({ method: 'GET', url: '/v1/machine-classes?backend=cloud' })
    expect(res.statusCode, res.body).toBe(200)
    const items = (res.json() as { items: Record<string, unknown>[] }).items
    expect(items).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ name: 'c1.medium', cpu: 2, memoryMiB: 4096, zones: ['az-1', 'az-2'] }),
        expect.objectContaining({ name: 'g1.xlarge', gpuModel: 'nvidia-a100', gpuCount: 1 }),
      ]),
    )
  })

  it('creates a cluster whose kubeconfig works with the real kubectl, then changes and deletes it leaving nothing behind', async () => {
    await createReady(stack.app, 'web', 'cloud-1.31', 120_000)
    const cluster = await getCluster(stack.app, 'web')
    expect(cluster.status.phase).toBe('Ready')
    const [capiCluster] = (
      await kubectlJson(['get', 'clusters.cluster.x-k8s.io', '-l', `kiln.dev/cluster-id=${cluster.id}`])
    ).items
    expect(capiCluster!.spec.paused).toBe(false)
    expect(capiCluster!.spec.topology.controlPlane.replicas).toBe(1)
    const mds = capiCluster!.spec.topology.workers.machineDeployments
    expect(mds.reduce((n: number, md: { replicas: number }) => n + md.replicas, 0)).toBe(2)

    // The user's path: a kubeconfig from Kiln, the real kubectl, every node Ready.
    const issued = await stack.app.inject({
      method: 'POST',
      url: `${clusterUrl('web')}/kubeconfig`,
      payload: {},
    })
    expect(issued.statusCode, issued.body).toBe(201)
    const kubeconfig = join(management.mgmt.dir, 'web.kubeconfig')
    await writeFile(kubeconfig, issued.json<{ kubeconfig: string }>().kubeconfig, { mode: 0o600 })
    const nodes = await management.mgmt.kubectl(['--kubeconfig', kubeconfig, 'get', 'nodes', '--no-headers'])
    expect(nodes.code, nodes.stderr).toBe(0)
    const lines = nodes.stdout.trim().split('\n')
    expect(lines).toHaveLength(3)
    for (const line of lines) expect(line).toMatch(/\sReady\s/)

    // Resize: up to 3 workers, then down to 2 removing a named one.
    await run('POST', `${clusterUrl('web')}/nodegroups/workers/resize`, { count: 3 })
    const workers = async () =>
      (await machineRows(stack.db, cluster.id)).filter((m) => m.role === 'worker').map((m) => m.name)
    const three = await workers()
    expect(three).toHaveLength(3)
    const replicas = async () =>
      (
        await kubectlJson([
          'get',
          'machinedeployments.cluster.x-k8s.io',
          '-l',
          `cluster.x-k8s.io/cluster-name=${capiCluster!.metadata.name}`,
        ])
      ).items.reduce((n: number, md: Json) => n + md.spec.replicas, 0)
    await expect.poll(replicas, { timeout: 10_000 }).toBe(3)
    await run('POST', `${clusterUrl('web')}/nodegroups/workers/resize`, {
      count: 2,
      machinesToRemove: [three[1]],
    })
    expect(await workers()).toEqual(three.filter((n) => n !== three[1]))
    await expect.poll(replicas, { timeout: 10_000 }).toBe(2)

    // A node group added becomes a MachineDeployment with its MachineHealthCheck; removed, both go.
    await run('POST', `${clusterUrl('web')}/nodegroups`, {
      name: 'batch',
      machineClass: 'c1.large',
      count: 1,
      minCount: 0,
      maxCount: 3,
    })
    const topology = async () =>
      (await kubectlJson(['get', 'clusters.cluster.x-k8s.io', capiCluster!.metadata.name])).spec.topology
    expect((await topology()).workers.machineDeployments.map((md: { class: string }) => md.class)).toContain(
      'm1.large',
    )
    const checks = async () =>
      (
        await kubectlJson([
          'get',
          'machinehealthchecks.cluster.x-k8s.io',
          '-l',
          `kiln.dev/cluster-id=${cluster.id}`,
        ])
      ).items.map((m: Json) => m.metadata.name as string)
    expect((await checks()).some((n: string) => n.includes('batch'))).toBe(true)
    await run('DELETE', `${clusterUrl('web')}/nodegroups/batch`)
    expect(
      (await topology()).workers.machineDeployments.map((md: { class: string }) => md.class),
    ).not.toContain('m1.large')
    expect((await checks()).some((n: string) => n.includes('batch'))).toBe(false)

    // Features: add-ons are applied to the workload cluster as on any backend.
    const features = await stack.app.inject({
      method: 'PATCH',
      url: clusterUrl('web'),
      payload: { features: { metricsServer: { enabled: true } } },
    })
    expect(features.statusCode, features.body).toBe(202)
    expect((await waitForOperation(stack.app, features.json<OperationBody>().id, 90_000)).status).toBe(
      'succeeded',
    )

    // Upgrade: Cluster API rolls the control plane, then the workers; Kiln follows.
    const upgrade = await run('POST', `${clusterUrl('web')}/upgrade`, { template: 'cloud-1.32' })
    const steps = Object.fromEntries(upgrade.steps.map((s) => [s.name, s.message]))
    expect(steps['upgrade-control-plane']).toMatch(/^Control plane on 1\.32\.1; the backend rolled it/)
    const machines = (
      await kubectlJson([
        'get',
        'machines.cluster.x-k8s.io',
        '-l',
        `cluster.x-k8s.io/cluster-name=${capiCluster!.metadata.name}`,
      ])
    ).items
    expect(machines).toHaveLength(3)
    expect(new Set(machines.map((m: Json) => m.spec.version))).toEqual(new Set(['v1.32.1']))
    expect(new Set((await machineRows(stack.db, cluster.id)).map((m) => m.kubernetesVersion))).toEqual(
      new Set(['1.32.1']),
    )
    expect((await getCluster(stack.app, 'web')).status.phase).toBe('Ready')

    // Delete: the Cluster goes through Cluster API's finalizers; nothing Kiln wrote is left.
    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('web'))).id,
      90_000,
    )
    expect(deleted.status, JSON.stringify(deleted.steps)).toBe('succeeded')
    for (const kind of [
      'clusters.cluster.x-k8s.io',
      'machinedeployments.cluster.x-k8s.io',
      'machines.cluster.x-k8s.io',
      'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io',
      'openstackmachines.infrastructure.cluster.x-k8s.io',
      'openstackclusters.infrastructure.cluster.x-k8s.io',
      'kubeadmconfigs.bootstrap.cluster.x-k8s.io',
      'machinehealthchecks.cluster.x-k8s.io',
    ])
      expect(
        (await kubectlJson(['get', kind])).items.map((o: Json) => o.metadata.name),
        kind,
      ).toEqual([])
    for (const selector of [
      'app.kubernetes.io/managed-by=kiln',
      `cluster.x-k8s.io/cluster-name=${capiCluster!.metadata.name}`,
    ])
      expect(
        (await kubectlJson(['get', 'secrets', '-l', selector])).items.map((o: Json) => o.metadata.name),
        selector,
      ).toEqual([])
  })

  it("leaves a machine the provider failed to Cluster API's MachineHealthCheck: Kiln reports it and repairs nothing", async () => {
    await createReady(stack.app, 'mhc', 'cloud-1.31', 120_000)
    const cluster = await getCluster(stack.app, 'mhc')
    const [capi] = (
      await kubectlJson(['get', 'clusters.cluster.x-k8s.io', '-l', `kiln.dev/cluster-id=${cluster.id}`])
    ).items
    const slots = JSON.parse(capi.metadata.annotations['kiln.dev/machines']) as Record<
      string,
      { g: string; m: string }
    >
    const [victim, slot] = Object.entries(slots).find(([, s]) => s.g !== 'control-plane')!
    management.standIn.failMachine(slot.m, 'InstanceError', 'the hypervisor lost the server')
    // A definite failure: on a backend that does not remediate, Kiln would replace it at once.
    await expect
      .poll(
        async () => {
          expect(await stack.engine!.observeOnce()).toBe(0)
          return conditionOf(await getCluster(stack.app, 'mhc'), 'MachinesReady')
        },
        { timeout: 15_000 },
      )
      .toMatchObject({ status: 'False', message: expect.stringContaining(`${victim}: ProviderFailed`) })
    expect(await stack.db.operation.count({ where: { clusterId: cluster.id, kind: 'cluster.repair' } })).toBe(
      0,
    )
    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('mhc'))).id,
      90_000,
    )
    expect(deleted.status, JSON.stringify(deleted.steps)).toBe('succeeded')
  })
})
