import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { type FaultProxy, startFaultProxy } from '../../../test/support/fault-proxy.ts'
import {
  allocationsNamed,
  configDriveOf,
  enrollNodes,
  ironicUrl,
  removeNodes,
  testBootstrapMaterial,
  testIronicConfig,
  waitForNode,
} from '../../../test/support/ironic.ts'
import { describeDriverConformance } from '../src/conformance.ts'
import { type BootstrapMaterial, type ClusterRef, DriverError } from '../src/contract.ts'
import { IronicClient } from '../src/ironic/client.ts'
import type { IronicConfig } from '../src/ironic/config.ts'
import { IronicDriver } from '../src/ironic/ironic.ts'
import { caCertHashes } from '../src/ironic/user-data.ts'

// Against the real Ironic scripts/test.sh starts (fake-hardware nodes). Each test enrolls nodes under
// a resource class of its own and deletes them afterwards.

const admin = new IronicClient({ url: ironicUrl })
let material: BootstrapMaterial
/** In front of the same Ironic, for tests that need it not to answer. */
let proxy: FaultProxy
beforeAll(async () => {
  material = await testBootstrapMaterial()
  proxy = await startFaultProxy({ target: ironicUrl })
  await admin.request('GET', 'v1').catch((error: unknown) => {
    throw new Error(`No Ironic at ${ironicUrl} (run scripts/ironic/start-ironic.sh): ${String(error)}`)
  })
})
afterAll(async () => {
  admin.close()
  await proxy?.close()
})

const uniqueClass = (tag: string) => `kiln-${tag}-${randomBytes(3).toString('hex')}`

/** Nodes of a class of the test's own, a driver and a cluster; all gone when the test finishes. */
async function rack(tag: string, count: number, zone: string) {
  const resourceClass = uniqueClass(tag)
  const nodes = await enrollNodes(admin, { resourceClass, count, zone })
  const driver = new IronicDriver('metal', testIronicConfig())
  onTestFinished(async () => {
    await driver.close()
    await removeNodes(
      admin,
      nodes.map((n) => n.uuid),
    )
  })
  const id = `c${randomBytes(4).toString('hex')}`
  const cluster: ClusterRef = { id, name: tag, bootstrapMaterial: async () => material }
  return { resourceClass, nodes, driver, id, cluster }
}

describeDriverConformance('ironic', async () => {
  const resourceClass = uniqueClass('conf')
  const nodes = await enrollNodes(admin, { resourceClass, count: 3, zone: 'zone-a' })
  const drivers: IronicDriver[] = []
  // Through the fault proxy (it passes everything until told otherwise), so an outage can be staged.
  proxy.reset()
  await proxy.refuse(false)
  const make = () => {
    const driver = new IronicDriver('metal', testIronicConfig({ url: proxy.url }))
    drivers.push(driver)
    return driver
  }
  return {
    driver: make(),
    machineClass: resourceClass,
    zone: 'zone-a',
    capacity: 3,
    makeDriver: make,
    bootstrapMaterial: async () => material,
    async startOutage() {
      await proxy.refuse(true)
      return () => proxy.refuse(false)
    },
    async teardown() {
      await proxy.refuse(false)
      await removeNodes(
        admin,
        nodes.map((n) => n.uuid),
      )
      await Promise.all(drivers.map((d) => d.close()))
    },
  }
})

describe('Ironic driver', () => {
  it('maps resource classes and traits to machine classes with zones, sizes and GPUs', async () => {
    const gpuClass = uniqueClass('gpu')
    const nodes = [
      ...(await enrollNodes(admin, {
        resourceClass: gpuClass,
        count: 2,
        zone: 'zone-a',
        traits: ['CUSTOM_GPU_A100'],
        properties: { gpu_count: 4, cpus: 64, memory_mb: 524288 },
      })),
      ...(await enrollNodes(admin, { resourceClass: gpuClass, count: 1, properties: { gpu_count: 4 } })),
    ]
    const driver = new IronicDriver('metal', testIronicConfig())
    try {
      const caps = await driver.capabilities()
      const mc = caps.machineClasses.find((c) => c.name === gpuClass)
      // The node without a zone property lands in its conductor group, '' here: zone 'default'.
      expect(mc).toMatchObject({
        gpuModel: 'nvidia-a100',
        gpuCount: 4,
        available: { 'zone-a': 2, default: 1 },
      })
      expect(mc?.cpu).toBe(32)
      expect(caps.zones).toEqual(expect.arrayContaining(['zone-a', 'default']))

      // An explicit class: the resource class narrowed by a required trait.
      await admin.request('PUT', `v1/nodes/${nodes[2]!.uuid}/traits`, { traits: ['CUSTOM_GPU_H100'] })
      const explicit = new IronicDriver(
        'metal',
        testIronicConfig({
          machineClasses: [{ name: 'bm.h100', resourceClass: gpuClass, traits: ['CUSTOM_GPU_H100'] }],
        }),
      )
      const h100 = (await explicit.capabilities()).machineClasses
      expect(h100).toEqual([
        expect.objectContaining({ name: 'bm.h100', gpuModel: 'nvidia-h100', available: { default: 1 } }),
      ])
      await explicit.close()
    } finally {
      await driver.close()
      await removeNodes(
        admin,
        nodes.map((n) => n.uuid),
      )
    }
  })

  it('deploys with a config drive whose user-data is kubeadm join configuration for the group', async () => {
    const { resourceClass, nodes, driver, id, cluster } = await rack('deploy', 2, 'zone-b')
    const [cp, worker] = await driver.ensureMachines(cluster, [
      { ...specOf(`${id}-cp0`, resourceClass, 'zone-b'), role: 'control-plane' },
      {
        ...specOf(`${id}-w0`, resourceClass, 'zone-b'),
        labels: { 'kiln.dev/node-group': 'gpu', 'node-role.kubernetes.io/gpu': '' },
        taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
      },
    ])
    const endpoint = await driver.bootstrap(cluster, [cp!])
    expect(endpoint).toEqual({ server: `https://${id}.k8s.test:6443` })
    await driver.joinMachines(cluster, [worker!])

    const node = await waitForNode(admin, worker!.externalId, (n) => n.provision_state === 'active')
    expect(node.instance_info).toMatchObject({
      image_source: 'http://images.example.org/kiln-node-k8s.qcow2',
      image_os_hash_algo: 'sha256',
      kiln_machine: worker!.name,
    })
    const drive = await configDriveOf(admin, worker!.externalId)
    expect(drive?.meta_data).toMatchObject({ hostname: worker!.name })
    const userData = drive!.user_data!
    expect(userData.startsWith('#cloud-config\n')).toBe(true)
    const cloudConfig = parseYaml(userData) as {
      write_files: { path: string; content: string }[]
      runcmd: string[][]
    }
    // A worker gets no private key, only its join configuration.
    expect(cloudConfig.write_files.map((f) => f.path)).toEqual(['/run/kubeadm/kubeadm.yaml'])
    expect(cloudConfig.runcmd).toEqual([['kubeadm', 'join', '--config', '/run/kubeadm/kubeadm.yaml']])
    const [join] = parseAllDocuments(cloudConfig.write_files[0]!.content).map((d) => d.toJSON())
    expect(join).toEqual({
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'JoinConfiguration',
      discovery: {
        bootstrapToken: {
          apiServerEndpoint: `${id}.k8s.test:6443`,
          token: material.joinToken,
          caCertHashes: caCertHashes(material.clusterCaBundlePem),
        },
      },
      nodeRegistration: {
        name: worker!.name,
        // node-role.kubernetes.io/* is refused by NodeRestriction when a kubelet sets it: left out.
        kubeletExtraArgs: [
          {
            name: 'node-labels',
            value: `kiln.dev/node-group=gpu,topology.kubernetes.io/zone=zone-b,node.kubernetes.io/instance-type=${resourceClass}`,
          },
        ],
        taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
      },
    })
    expect(caCertHashes(material.clusterCaBundlePem)[0]).toMatch(/^sha256:[0-9a-f]{64}$/)

    // The first control plane initialises: the authorities and an InitConfiguration with the token.
    const cpConfig = parseYaml((await configDriveOf(admin, cp!.externalId))!.user_data!) as {
      write_files: { path: string; content: string }[]
      runcmd: string[][]
    }
    expect(cpConfig.runcmd[0]).toEqual(['kubeadm', 'init', '--config', '/run/kubeadm/kubeadm.yaml'])
    const files = Object.fromEntries(cpConfig.write_files.map((f) => [f.path, f.content]))
    expect(files['/etc/kubernetes/pki/ca.key']).toBe(material.clusterCa.keyPem)
    const [init, clusterConfig] = parseAllDocuments(files['/run/kubeadm/kubeadm.yaml']!).map((d) =>
      d.toJSON(),
    )
    expect(init.bootstrapTokens[0].token).toBe(material.joinToken)
    expect(clusterConfig).toMatchObject({
      kind: 'ClusterConfiguration',
      kubernetesVersion: 'v1.31.4',
      controlPlaneEndpoint: `${id}.k8s.test:6443`,
    })

    expect((await driver.observe(cluster, [cp!.name, worker!.name])).machines.map((m) => m.health)).toEqual([
      'Healthy',
      'Healthy',
    ])
    await driver.releaseMachines(cluster, [cp!.name, worker!.name])
    for (const n of nodes) {
      const after = await waitForNode(admin, n.uuid, (x) => x.provision_state === 'available')
      expect(after.instance_uuid).toBeNull()
    }
    expect(await allocationsNamed(admin, id)).toEqual([])
  })

  it('reports a node in maintenance as unhealthy and keeps a failed node out of the pool on release', async () => {
    const { resourceClass, driver, id, cluster } = await rack('maint', 2, 'zone-a')
    const [m] = await driver.ensureMachines(cluster, [specOf(`${id}-w0`, resourceClass, 'zone-a')])
    await driver.joinMachines(cluster, [m!])
    await admin.request('PUT', `v1/nodes/${m!.externalId}/maintenance`, { reason: 'fan failure' })
    const observed = await driver.observe(cluster, [m!.name])
    expect(observed.machines[0]).toMatchObject({ health: 'Unhealthy', reason: 'Maintenance: fan failure' })

    await driver.releaseMachines(cluster, [m!.name])
    expect(await allocationsNamed(admin, id)).toEqual([])
    const caps = await driver.capabilities()
    // One node left in the pool: the broken one stays in maintenance for the platform team.
    expect(caps.machineClasses.find((c) => c.name === resourceClass)?.available).toEqual({ 'zone-a': 1 })
  })

  it('reports an unreachable Ironic as ERR_UNAVAILABLE, retryable', async () => {
    const driver = new IronicDriver('metal', testIronicConfig({ url: 'http://127.0.0.1:9' }))
    const error = await driver.capabilities().catch((e: unknown) => e)
    expect(error).toBeInstanceOf(DriverError)
    expect((error as DriverError).code).toBe('ERR_UNAVAILABLE')
    expect((error as DriverError).errorClass).toBe('retryable')
    await driver.close()
  })
})

describe('Ironic driver when Ironic does not answer', () => {
  /** A deployed control plane and worker, observed through the fault proxy. */
  async function deployedBehindProxy(tag: string, config: Partial<IronicConfig> = {}) {
    const { resourceClass, driver, id, cluster } = await rack(tag, 2, 'zone-a')
    const [cp, worker] = await driver.ensureMachines(cluster, [
      { ...specOf(`${id}-cp0`, resourceClass, 'zone-a'), role: 'control-plane' },
      specOf(`${id}-w0`, resourceClass, 'zone-a'),
    ])
    await driver.bootstrap(cluster, [cp!])
    await driver.joinMachines(cluster, [worker!])
    proxy.reset()
    const observer = new IronicDriver('metal', testIronicConfig({ url: proxy.url, ...config }))
    onTestFinished(async () => {
      proxy.reset()
      await proxy.refuse(false)
      await observer.close()
    })
    return { observer, cluster, names: [cp!.name, worker!.name] }
  }

  it('failed allocation lookups (503) make the machines Unknown, not Unhealthy; the next answers count again', async () => {
    const { observer, cluster, names } = await deployedBehindProxy('unknown')
    proxy.failNext(2, { match: /^GET \/v1\/allocations\// })
    const observed = await observer.observe(cluster, names)
    expect(proxy.faultedCount()).toBe(2)
    expect(observed.machines.map((m) => m.health)).toEqual(['Unknown', 'Unknown'])
    for (const m of observed.machines) expect(m.reason).toMatch(/^Unobservable: .*503/)
    expect(observed.backendReachable).toBe(false)
    expect(observed.unreachableReason).toMatch(/503/)
    // No answer is no evidence that the control plane is down.
    expect(observed.controlPlaneReachable).toBe(true)

    const again = await observer.observe(cluster, names)
    expect(again).toEqual({
      controlPlaneReachable: true,
      backendReachable: true,
      machines: [
        { name: names[0], health: 'Healthy', reason: 'Active' },
        { name: names[1], health: 'Healthy', reason: 'Active' },
      ],
    })
  })

  it('only the machine whose lookup failed is Unknown; a name Ironic says is gone stays Missing', async () => {
    const { observer, cluster, names } = await deployedBehindProxy('partial')
    const gone = `${names[1]}-never-allocated`
    proxy.failNext(1, {
      match: (method, path) => method === 'GET' && path === `/v1/allocations/${names[1]}`,
    })
    const observed = await observer.observe(cluster, [...names, gone])
    expect(observed.machines.map((m) => [m.name, m.health])).toEqual([
      [names[0], 'Healthy'],
      [names[1], 'Unknown'],
      [gone, 'Missing'],
    ])
    expect(observed.backendReachable).toBe(false)
  })

  it('a node lookup that times out is Unknown', async () => {
    const { observer, cluster, names } = await deployedBehindProxy('slow', { requestTimeoutMs: 300 })
    proxy.delay(2000, /^GET \/v1\/nodes\//)
    const observed = await observer.observe(cluster, names)
    expect(observed.machines.map((m) => m.health)).toEqual(['Unknown', 'Unknown'])
    expect(observed.machines[0]!.reason).toContain('no answer within 300 ms')
    expect(observed.backendReachable).toBe(false)
  })

  it('refused connections: every machine Unknown and the backend unreachable, without throwing', async () => {
    const { observer, cluster, names } = await deployedBehindProxy('refused')
    await proxy.refuse(true)
    const observed = await observer.observe(cluster, names)
    expect(observed.machines).toEqual(
      names.map((name) => ({ name, health: 'Unknown', reason: expect.stringMatching(/^Unobservable: /) })),
    )
    expect(observed.backendReachable).toBe(false)
    expect(observed.unreachableReason).toMatch(/Ironic at http:\/\/127\.0\.0\.1:\d+ is unreachable/)
    expect(observed.controlPlaneReachable).toBe(true)
    // The other calls fail as the contract says: retryable, not a verdict on the machines.
    const error = await observer.capabilities().catch((e: unknown) => e)
    expect((error as DriverError).code).toBe('ERR_UNAVAILABLE')

    await proxy.refuse(false)
    expect((await observer.observe(cluster, names)).machines.map((m) => m.health)).toEqual([
      'Healthy',
      'Healthy',
    ])
  })
})

function specOf(name: string, machineClass: string, zone: string) {
  return {
    name,
    machineClass,
    zone,
    role: 'worker' as const,
    kubernetesVersion: '1.31.4',
    labels: {},
    taints: [],
  }
}
