import { randomUUID } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { type ManagementCluster, startManagementCluster } from '../../../apps/simulator/test/capi-support.ts'
import { testBootstrapMaterial } from '../../../test/support/ironic.ts'
import { startTcpProxy, type TcpProxy } from '../../../test/support/tcp-proxy.ts'
import { CapiDriver } from '../src/capi/capi.ts'
import type { CapiConfig } from '../src/capi/config.ts'
import { describeDriverConformance } from '../src/conformance.ts'
import type { BootstrapMaterial, ClusterRef, MachineSpec } from '../src/contract.ts'
import { DriverError } from '../src/contract.ts'

// biome-ignore lint/suspicious/noExplicitAny: kubectl's JSON output, read field by field
type Json = any

// The capi driver against a Cluster API management cluster: a simulated API server holding the
// official CRDs (every object the driver writes is validated against them) and the stand-in for
// Cluster API's controllers, reached over TLS through a TCP proxy that can refuse (an outage).

let management: ManagementCluster
let proxy: TcpProxy
let kubeconfigFile: string
let material: BootstrapMaterial

beforeAll(async () => {
  management = await startManagementCluster({ name: 'capi-drivers' })
  const kubeconfig = parse(await readFile(management.kubeconfigPath, 'utf8')) as {
    clusters: { cluster: { server: string } }[]
  }
  const server = new URL(kubeconfig.clusters[0]!.cluster.server)
  proxy = await startTcpProxy({ host: server.hostname, port: Number(server.port) })
  kubeconfig.clusters[0]!.cluster.server = `https://127.0.0.1:${proxy.port}`
  kubeconfigFile = join(management.mgmt.dir, 'through-proxy.kubeconfig')
  await writeFile(kubeconfigFile, stringify(kubeconfig), { mode: 0o600 })
  material = await testBootstrapMaterial('1.31.0')
}, 180_000)

afterAll(async () => {
  await proxy?.close()
  await management?.close()
})

const capacity = 3

/** A namespace of its own, with the simulated ClusterClass and a quota share of `capacity` c1.medium per zone. */
async function freshBackend(): Promise<CapiConfig> {
  const namespace = `capi-${randomUUID().slice(0, 8)}`
  await management.namespace(namespace)
  const annotated = await management.mgmt.kubectl([
    'annotate',
    '-n',
    namespace,
    'openstackmachinetemplate/kiln-simulated-m1-medium',
    `kiln.dev/max-per-failure-domain=${capacity}`,
    '--overwrite',
  ])
  expect(annotated.code, annotated.stderr).toBe(0)
  return { kubeconfig: { file: kubeconfigFile }, namespace, clusterClass: 'kiln-simulated', waitSeconds: 15 }
}

describeDriverConformance('capi', async () => {
  const config = await freshBackend()
  const drivers: CapiDriver[] = []
  const make = () => {
    const driver = new CapiDriver(`capi-${config.namespace}`, config)
    drivers.push(driver)
    return driver
  }
  return {
    driver: make(),
    makeDriver: make,
    machineClass: 'c1.medium',
    zone: 'az-1',
    capacity,
    bootstrapMaterial: async () => material,
    startOutage: async () => {
      await proxy.refuse(true)
      return () => proxy.refuse(false)
    },
    teardown: async () => {
      for (const driver of drivers) await driver.close()
      await management.mgmt.kubectl(['delete', 'namespace', config.namespace, '--wait=false'])
    },
  }
})

describe('capi driver: what it writes on the management cluster', () => {
  const kubectlJson = async (args: string[]) => {
    const result = await management.mgmt.kubectl([...args, '-o', 'json'])
    expect(result.code, result.stderr).toBe(0)
    return JSON.parse(result.stdout) as Json
  }

  const spec = (name: string, overrides: Partial<MachineSpec> = {}): MachineSpec => ({
    name,
    machineClass: 'c1.medium',
    zone: 'az-1',
    role: 'worker',
    kubernetesVersion: '1.31.0',
    labels: { 'kiln.dev/node-group': 'web', team: 'a' },
    taints: [{ key: 'dedicated', value: 'web', effect: 'NoSchedule' }],
    nodeGroup: { name: 'web', autoscaling: { minCount: 1, maxCount: 5 } },
    ...overrides,
  })

  it("creates a paused Cluster with a topology, writes Kiln's CAs, unpauses, and runs machines as nodes", async () => {
    const config = await freshBackend()
    const driver = new CapiDriver(`capi-${config.namespace}`, config)
    const cluster: ClusterRef = {
      id: randomUUID(),
      name: 'shop',
      bootstrapMaterial: async () => material,
    }
    const name = driver.clusterName(cluster)
    const ns = ['-n', config.namespace]
    try {
      const [cp, w0, w1] = await driver.ensureMachines(cluster, [
        spec('cp-0', { role: 'control-plane', labels: {}, taints: [] }),
        spec('w-0'),
        spec('w-1'),
      ])
      const paused = await kubectlJson([
        'get',
        'clusters.cluster.x-k8s.io',
        name,
        '--show-managed-fields',
        ...ns,
      ])
      expect(paused.spec.paused).toBe(true)
      expect(paused.metadata.labels).toMatchObject({
        'app.kubernetes.io/managed-by': 'kiln',
        'kiln.dev/cluster-id': cluster.id,
      })
      expect(paused.metadata.managedFields.map((f: { manager: string }) => f.manager)).toContain('kiln')
      expect(paused.spec.topology).toMatchObject({
        classRef: { name: 'kiln-simulated' },
        version: 'v1.31.0',
        controlPlane: { replicas: 1 },
        workers: {
          machineDeployments: [
            {
              class: 'm1.medium',
              name: 'web-az-1',
              replicas: 2,
              failureDomain: 'az-1',
              metadata: {
                labels: { 'kiln.dev/node-group': 'web', team: 'a' },
                annotations: {
                  'cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size': '1',
                  'cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size': '5',
                },
              },
              taints: [{ key: 'dedicated', value: 'web', effect: 'NoSchedule', propagation: 'Always' }],
            },
          ],
        },
      })
      // Paused: Cluster API built nothing, so it cannot have generated certificates of its own.
      expect((await kubectlJson(['get', 'machines.cluster.x-k8s.io', ...ns])).items).toEqual([])

      const endpoint = await driver.bootstrap(cluster, [cp!])
      expect(endpoint.server).toMatch(/^https:\/\//)
      for (const [suffix, crt] of [
        ['ca', material.clusterCa.certPem],
        ['etcd', material.etcdCa.certPem],
        ['proxy', material.frontProxyCa.certPem],
        ['sa', material.serviceAccount.publicKeyPem],
      ] as const) {
        const secret = await kubectlJson(['get', 'secret', `${name}-${suffix}`, ...ns])
        expect(secret.type).toBe('cluster.x-k8s.io/secret')
        expect(secret.metadata.labels['cluster.x-k8s.io/cluster-name']).toBe(name)
        expect(Buffer.from(secret.data['tls.crt'], 'base64').toString()).toBe(crt)
      }
      await driver.joinMachines(cluster, [w0!, w1!])
      const observed = await driver.observe(cluster, ['cp-0', 'w-0', 'w-1'])
      expect(observed.controlPlaneReachable).toBe(true)
      expect(observed.machines.map((m) => m.health)).toEqual(['Healthy', 'Healthy', 'Healthy'])

      const mhc = await kubectlJson([
        'get',
        'machinehealthchecks.cluster.x-k8s.io',
        `${name}-web-az-1`,
        ...ns,
      ])
      expect(mhc.spec).toMatchObject({
        clusterName: name,
        selector: { matchLabels: { 'topology.cluster.x-k8s.io/deployment-name': 'web-az-1' } },
        remediation: { triggerIf: { unhealthyLessThanOrEqualTo: '40%' } },
      })

      // Targeted removal: the released name's Machine carries delete-machine and is the one that goes.
      const slots = JSON.parse(
        (await kubectlJson(['get', 'clusters.cluster.x-k8s.io', name, ...ns])).metadata.annotations[
          'kiln.dev/machines'
        ],
      )
      const doomed = slots['w-0'].m as string
      const kept = slots['w-1'].m as string
      await driver.releaseMachines(cluster, ['w-0'])
      await expect
        .poll(
          async () =>
            (await kubectlJson(['get', 'machines.cluster.x-k8s.io', ...ns])).items.map(
              (m: Json) => m.metadata.name,
            ),
          {
            timeout: 15_000,
          },
        )
        .not.toContain(doomed)
      expect(
        (await kubectlJson(['get', 'machines.cluster.x-k8s.io', ...ns])).items.map(
          (m: Json) => m.metadata.name,
        ),
      ).toContain(kept)

      // The last name released: the Cluster goes through Cluster API's finalizers, then Kiln's secrets and checks.
      await driver.releaseMachines(cluster, ['cp-0', 'w-1'])
      for (const kind of [
        'clusters.cluster.x-k8s.io',
        'machines.cluster.x-k8s.io',
        'machinehealthchecks.cluster.x-k8s.io',
        'secrets',
      ])
        expect((await kubectlJson(['get', kind, '-l', 'kiln.dev/cluster-id', ...ns])).items, kind).toEqual([])
      expect((await kubectlJson(['get', 'machines.cluster.x-k8s.io', ...ns])).items).toEqual([])
    } finally {
      await driver.close()
    }
  }, 120_000)

  it('rolls a version out through Cluster API, control plane first, reporting progress', async () => {
    const config = await freshBackend()
    const driver = new CapiDriver(`capi-${config.namespace}`, config)
    const cluster: ClusterRef = { id: randomUUID(), name: 'roll', bootstrapMaterial: async () => material }
    try {
      const [cp, w0] = await driver.ensureMachines(cluster, [
        spec('cp-0', { role: 'control-plane', labels: {}, taints: [], nodeGroup: undefined }),
        spec('w-0', { nodeGroup: { name: 'web' } }),
      ])
      await driver.bootstrap(cluster, [cp!])
      await driver.joinMachines(cluster, [w0!])
      let progress = await driver.rollOut(cluster, '1.32.0', 'control-plane')
      while (!progress.done) progress = await driver.rollOut(cluster, '1.32.0', 'control-plane')
      expect(progress.message).toBe('control plane 1/1 on v1.32.0')
      progress = await driver.rollOut(cluster, '1.32.0', 'workers')
      while (!progress.done) progress = await driver.rollOut(cluster, '1.32.0', 'workers')
      expect(progress.message).toBe('web-az-1 1/1 on v1.32.0')
      const machines = (await kubectlJson(['get', 'machines.cluster.x-k8s.io', '-n', config.namespace])).items
      expect(machines.map((m: Json) => m.spec.version)).toEqual(['v1.32.0', 'v1.32.0'])
      // The slots followed the replacements: both names are healthy nodes again.
      const observed = await driver.observe(cluster, ['cp-0', 'w-0'])
      expect(observed.machines.map((m) => m.health)).toEqual(['Healthy', 'Healthy'])
      await driver.releaseMachines(cluster, ['cp-0', 'w-0'])
    } finally {
      await driver.close()
    }
  }, 120_000)

  it("maps a provider's quota refusal to ERR_CAPACITY and a failed machine to ERR_PROVISION_FAILED naming it", async () => {
    const config = await freshBackend()
    const driver = new CapiDriver(`capi-${config.namespace}`, config)
    const cluster: ClusterRef = { id: randomUUID(), name: 'quota', bootstrapMaterial: async () => material }
    try {
      const [cp] = await driver.ensureMachines(cluster, [
        spec('cp-0', { role: 'control-plane', labels: {}, taints: [] }),
      ])
      await driver.bootstrap(cluster, [cp!])
      management.standIn.setQuota('m1.large', 'az-2', 0)
      const [big] = await driver.ensureMachines(cluster, [
        spec('big-0', { machineClass: 'c1.large', zone: 'az-2' }),
      ])
      const quota = await driver.joinMachines(cluster, [big!]).catch((e: unknown) => e)
      expect(quota).toBeInstanceOf(DriverError)
      expect((quota as DriverError).code).toBe('ERR_CAPACITY')
      expect((quota as DriverError).message).toMatch(/c1\.large.*az-2.*Quota exceeded/s)
      await driver.releaseMachines(cluster, ['big-0'])

      const [w] = await driver.ensureMachines(cluster, [spec('w-0')])
      await driver.joinMachines(cluster, [w!])
      const slots = JSON.parse(
        (
          await kubectlJson([
            'get',
            'clusters.cluster.x-k8s.io',
            driver.clusterName(cluster),
            '-n',
            config.namespace,
          ])
        ).metadata.annotations['kiln.dev/machines'],
      )
      management.standIn.failMachine(slots['w-0'].m, 'InstanceError', 'the server went into ERROR state')
      await expect
        .poll(async () => (await driver.observe(cluster, ['w-0'])).machines[0], { timeout: 10_000 })
        .toMatchObject({ health: 'Unhealthy', definite: true, reason: expect.stringMatching(/ERROR state/) })
      const failed = await driver.joinMachines(cluster, [w!]).catch((e: unknown) => e)
      expect((failed as DriverError).code).toBe('ERR_PROVISION_FAILED')
      expect((failed as DriverError).failedMachines).toEqual(['w-0'])
      expect((failed as DriverError).message).toMatch(
        /w-0: ProviderFailed: InstanceError: the server went into ERROR state/,
      )
      await driver.releaseMachines(cluster, ['cp-0', 'w-0'])
    } finally {
      management.standIn.setQuota('m1.large', 'az-2', -1)
      await driver.close()
    }
  }, 120_000)

  it('never touches a Cluster it did not create', async () => {
    const config = await freshBackend()
    const driver = new CapiDriver(`capi-${config.namespace}`, config)
    const cluster: ClusterRef = { id: randomUUID(), name: 'theirs' }
    const foreign = {
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Cluster',
      metadata: { name: driver.clusterName(cluster), namespace: config.namespace },
      spec: { paused: true, topology: { classRef: { name: 'kiln-simulated' }, version: 'v1.31.0' } },
    }
    const created = await management.mgmt.kubectl(['apply', '-f', '-'], JSON.stringify(foreign))
    expect(created.code, created.stderr).toBe(0)
    const error = await driver.ensureMachines(cluster, [spec('w-0')]).catch((e: unknown) => e)
    expect((error as DriverError).code).toBe('ERR_INVALID_REQUEST')
    expect((error as DriverError).message).toMatch(/Kiln did not create it/)
    await driver.releaseMachines(cluster, ['w-0']).catch(() => undefined)
    const still = await kubectlJson([
      'get',
      'clusters.cluster.x-k8s.io',
      driver.clusterName(cluster),
      '-n',
      config.namespace,
    ])
    expect(still.metadata.annotations?.['kiln.dev/machines']).toBeUndefined()
    await driver.close()
  }, 60_000)
})
