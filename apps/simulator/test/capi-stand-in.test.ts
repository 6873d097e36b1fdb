import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type ManagementCluster, startManagementCluster } from './capi-support.ts'

// The stand-in for Cluster API's controllers, against a simulated management cluster with the
// official CRDs: what Kiln's capi driver writes (a Cluster with a topology, MachineHealthChecks,
// delete-machine annotations) moves forward as Cluster API moves it, seen with the real kubectl.

let m: ManagementCluster
const ns = 'kiln-clusters'
const name = 'web-0a1b2c3d'

interface Condition {
  type: string
  status: string
  reason: string
  message: string
}
interface Obj {
  metadata: {
    name: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    finalizers?: string[]
    ownerReferences?: { kind: string; name: string }[]
  }
  spec: {
    version?: string
    failureDomain?: string
    providerID?: string
    flavor?: string
    controlPlaneEndpoint?: unknown
    infrastructureRef?: unknown
    controlPlaneRef?: unknown
  }
  status?: {
    phase?: string
    nodeRef?: unknown
    ready?: boolean
    instanceState?: string
    version?: string
    initialization?: unknown
    controlPlane?: unknown
    workers?: unknown
    failureDomains?: unknown
    currentHealthy?: number
    expectedMachines?: number
    conditions?: Condition[]
  }
}

beforeAll(async () => {
  // The in-process stand-in keeps to its namespace: the process test runs its own elsewhere.
  m = await startManagementCluster({ standIn: { namespaces: [ns] } })
  await m.namespace(ns)
}, 120_000)
afterAll(async () => {
  await m?.close()
})

const kubectl = async (args: string[], input?: string) => {
  const result = await m.mgmt.kubectl(args, input)
  if (result.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${result.stderr}`)
  return result.stdout
}
const list = async (kind: string, selector = `cluster.x-k8s.io/cluster-name=${name}`) =>
  (JSON.parse(await kubectl(['get', kind, '-n', ns, '-l', selector, '-o', 'json'])) as { items: Obj[] }).items
const get = async (kind: string, object: string) =>
  JSON.parse(await kubectl(['get', kind, object, '-n', ns, '-o', 'json'])) as Obj
const conditionOf = (o: Obj | undefined, type: string) => o?.status?.conditions?.find((c) => c.type === type)

/** Polls until `check` returns something (not undefined/false), failing with the last value seen. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined && value !== false) return value
      last = value
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${String(last)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** A Cluster as Kiln's driver applies it (field manager kiln). */
const applyCluster = (topology: Record<string, unknown>, clusterName = name, paused = false) =>
  kubectl(
    ['apply', '--server-side', '--field-manager', 'kiln', '-f', '-'],
    stringify({
      apiVersion: 'cluster.x-k8s.io/v1beta2',
      kind: 'Cluster',
      metadata: {
        name: clusterName,
        namespace: ns,
        labels: { 'app.kubernetes.io/managed-by': 'kiln', 'kiln.dev/cluster-id': '0a1b2c3d-0000' },
      },
      spec: { paused, topology },
    }),
  )

const topology = (version: string, workers: number) => ({
  classRef: { name: 'kiln-simulated' },
  version,
  controlPlane: { replicas: 1 },
  workers: {
    machineDeployments: [
      {
        class: 'm1.medium',
        name: 'workers-az-1',
        replicas: workers,
        failureDomain: 'az-1',
        metadata: { labels: { 'kiln.dev/node-group': 'workers' } as Record<string, string> },
      },
    ],
  },
})

const workerSelector = `cluster.x-k8s.io/cluster-name=${name},topology.cluster.x-k8s.io/deployment-name=workers-az-1`
const running = async (selector = `cluster.x-k8s.io/cluster-name=${name}`) =>
  (await list('machines.cluster.x-k8s.io', selector)).filter((x) => x.status?.phase === 'Running')

describe('the Cluster API stand-in', () => {
  it('leaves a paused Cluster alone, saying so', async () => {
    // Kiln applies its Cluster paused until it has written the cluster's certificates.
    await applyCluster(topology('v1.31.0', 2), name, true)
    const cluster = await until('the Cluster Paused', async () => {
      const c = await get('clusters.cluster.x-k8s.io', name)
      return conditionOf(c, 'Paused')?.status === 'True' && c
    })
    expect(conditionOf(cluster, 'Paused')?.reason).toBe('Paused')
    await m.standIn.reconcileOnce()
    expect(await list('kubeadmcontrolplanes.controlplane.cluster.x-k8s.io')).toEqual([])
    expect(cluster.metadata.finalizers ?? []).toEqual([])
  })

  it('provisions a Cluster with a topology: infrastructure, control plane, workers, Machines Running', async () => {
    await applyCluster(topology('v1.31.0', 2))

    const machines = await until('three Running Machines', async () => {
      const all = await running()
      return all.length === 3 && all
    })
    for (const machine of machines) {
      expect(machine.status?.nodeRef).toEqual({ name: machine.metadata.name })
      expect(machine.spec.version).toBe('v1.31.0')
      expect(machine.metadata.finalizers).toEqual(['machine.cluster.x-k8s.io'])
      expect(machine.spec.providerID).toMatch(/^openstack:\/\/\//)
      for (const type of [
        'BootstrapConfigReady',
        'InfrastructureReady',
        'NodeReady',
        'NodeHealthy',
        'Ready',
        'Available',
        'UpToDate',
      ])
        expect(conditionOf(machine, type)?.status, `${machine.metadata.name} ${type}`).toBe('True')
      expect(conditionOf(machine, 'Deleting')).toMatchObject({ status: 'False', reason: 'NotDeleting' })
    }
    const controlPlane = machines.filter((x) => x.metadata.labels?.['cluster.x-k8s.io/control-plane'] === '')
    expect(controlPlane).toHaveLength(1)
    const [kcp] = await list('kubeadmcontrolplanes.controlplane.cluster.x-k8s.io')
    expect(controlPlane[0]!.metadata.name).toMatch(new RegExp(`^${kcp!.metadata.name}-[a-z0-9]{5}$`))
    expect(controlPlane[0]!.metadata.labels?.['cluster.x-k8s.io/control-plane-name']).toBe(kcp!.metadata.name)
    expect(['az-1', 'az-2']).toContain(controlPlane[0]!.spec.failureDomain)
    const [md] = await list('machinedeployments.cluster.x-k8s.io')
    expect(md!.metadata.name).toMatch(new RegExp(`^${name}-workers-az-1-[a-z0-9]{5}$`))
    expect(md!.metadata.labels).toMatchObject({
      'topology.cluster.x-k8s.io/owned': '',
      'topology.cluster.x-k8s.io/deployment-name': 'workers-az-1',
    })
    const workers = machines.filter((x) => x.metadata.labels?.['cluster.x-k8s.io/deployment-name'])
    expect(workers).toHaveLength(2)
    for (const worker of workers) {
      expect(worker.metadata.name).toMatch(new RegExp(`^${md!.metadata.name}-[a-z0-9]{5}$`))
      expect(worker.metadata.labels).toMatchObject({
        'cluster.x-k8s.io/deployment-name': md!.metadata.name,
        'topology.cluster.x-k8s.io/deployment-name': 'workers-az-1',
        'kiln.dev/node-group': 'workers',
      })
      expect(worker.spec.failureDomain).toBe('az-1')
    }
    // Bootstrap and infrastructure objects, one per Machine, ready.
    const configs = await list('kubeadmconfigs.bootstrap.cluster.x-k8s.io')
    expect(configs.map((c) => c.metadata.name).sort()).toEqual(machines.map((x) => x.metadata.name).sort())
    const servers = await list('openstackmachines.infrastructure.cluster.x-k8s.io')
    expect(servers.every((s) => s.status?.ready === true && s.status?.instanceState === 'ACTIVE')).toBe(true)
    expect(workers.map((w) => servers.find((s) => s.metadata.name === w.metadata.name)?.spec.flavor)).toEqual(
      ['m1.medium', 'm1.medium'],
    )

    const cluster = await until('the Cluster Available', async () => {
      const c = await get('clusters.cluster.x-k8s.io', name)
      return conditionOf(c, 'Available')?.status === 'True' && c
    })
    expect(cluster.status?.phase).toBe('Provisioned')
    expect(cluster.metadata.finalizers).toContain('cluster.cluster.x-k8s.io')
    expect(cluster.spec.controlPlaneEndpoint).toEqual({ host: '127.0.0.1', port: 6443 })
    expect(cluster.spec.infrastructureRef).toMatchObject({ kind: 'OpenStackCluster' })
    expect(cluster.spec.controlPlaneRef).toEqual({
      apiGroup: 'controlplane.cluster.x-k8s.io',
      kind: 'KubeadmControlPlane',
      name: kcp!.metadata.name,
    })
    expect(cluster.status?.initialization).toEqual({
      infrastructureProvisioned: true,
      controlPlaneInitialized: true,
    })
    expect(cluster.status?.failureDomains).toEqual([
      { name: 'az-1', controlPlane: true },
      { name: 'az-2', controlPlane: true },
    ])
    for (const type of [
      'InfrastructureReady',
      'ControlPlaneInitialized',
      'ControlPlaneAvailable',
      'WorkersAvailable',
      'TopologyReconciled',
    ])
      expect(conditionOf(cluster, type)?.status, type).toBe('True')
    expect(conditionOf(cluster, 'RollingOut')).toMatchObject({ status: 'False', reason: 'NotRollingOut' })
    expect(cluster.status?.controlPlane).toMatchObject({ desiredReplicas: 1, replicas: 1, readyReplicas: 1 })
    expect(cluster.status?.workers).toMatchObject({ desiredReplicas: 2, replicas: 2, availableReplicas: 2 })
    // The spec fields Kiln applies stay Kiln's; the stand-in's are its own.
    const managers = JSON.parse(
      await kubectl([
        'get',
        'clusters.cluster.x-k8s.io',
        name,
        '-n',
        ns,
        '-o',
        'json',
        '--show-managed-fields',
      ]),
    ).metadata.managedFields.map((f: { manager: string }) => f.manager)
    expect(managers).toEqual(expect.arrayContaining(['kiln', 'capi-controller-stand-in']))

    // Settled, it writes nothing more: no resourceVersion churn for watchers.
    const version = async () =>
      (
        JSON.parse(await kubectl(['get', 'machines.cluster.x-k8s.io', '-n', ns, '-o', 'json'])) as {
          metadata: { resourceVersion: string }
        }
      ).metadata.resourceVersion
    const settled = await version()
    await new Promise((r) => setTimeout(r, 1_500))
    expect(await version()).toBe(settled)
  }, 40_000)

  it('scales down by deleting the Machine annotated cluster.x-k8s.io/delete-machine first', async () => {
    const [keep, victim] = (await running(workerSelector)).sort((a, b) =>
      a.metadata.name.localeCompare(b.metadata.name),
    )
    // The newest would go first without the annotation: annotate the other one if needed.
    await kubectl([
      'annotate',
      'machines.cluster.x-k8s.io',
      victim!.metadata.name,
      '-n',
      ns,
      'cluster.x-k8s.io/delete-machine=',
    ])
    await applyCluster(topology('v1.31.0', 1))
    await until('the annotated Machine gone', async () => {
      const names = (await list('machines.cluster.x-k8s.io', workerSelector)).map((x) => x.metadata.name)
      return names.length === 1 && names[0] === keep!.metadata.name
    })
    // Its bootstrap and infrastructure objects go with it.
    await until('its KubeadmConfig and OpenStackMachine gone', async () => {
      const configs = await list('kubeadmconfigs.bootstrap.cluster.x-k8s.io')
      const servers = await list('openstackmachines.infrastructure.cluster.x-k8s.io')
      return ![...configs, ...servers].some((o) => o.metadata.name === victim!.metadata.name)
    })
  }, 20_000)

  it('keeps a Machine beyond a flavor quota Provisioning with the message CAPO gives', async () => {
    // The control plane Machine and one worker are m1.medium servers already.
    m.standIn.setQuota('m1.medium', undefined, 2)
    await applyCluster(topology('v1.31.0', 2))
    const blocked = await until('a Machine blocked by quota', async () => {
      const machines = await list('machines.cluster.x-k8s.io', workerSelector)
      return machines.find((x) => conditionOf(x, 'InfrastructureReady')?.reason === 'InstanceCreateFailed')
    })
    expect(blocked.status?.phase).toBe('Provisioning')
    expect(conditionOf(blocked, 'InfrastructureReady')?.message).toContain(
      'Quota exceeded for instances: Requested 1, but already used 2 of 2 instances',
    )
    m.standIn.setQuota('m1.medium', undefined, -1)
    await until(
      'both workers Running once the quota is lifted',
      async () => (await running(workerSelector)).length === 2,
    )
  }, 20_000)

  it('reports a provider failure: InfrastructureReady=False, phase Failed; a deleted Machine is replaced', async () => {
    const [victim] = await running(workerSelector)
    m.standIn.failMachine(victim!.metadata.name, 'InstanceStateError', 'server is in ERROR state')
    const failed = await until('the Machine Failed', async () => {
      const x = await get('machines.cluster.x-k8s.io', victim!.metadata.name)
      return x.status?.phase === 'Failed' && x
    })
    expect(conditionOf(failed, 'InfrastructureReady')).toMatchObject({
      status: 'False',
      reason: 'InstanceStateError',
      message: 'server is in ERROR state',
    })
    expect(conditionOf(failed, 'Ready')?.status).toBe('False')
    await kubectl(['delete', 'machines.cluster.x-k8s.io', victim!.metadata.name, '-n', ns, '--wait=false'])
    await until('a replacement Running', async () => {
      const all = await running(workerSelector)
      return all.length === 2 && !all.some((x) => x.metadata.name === victim!.metadata.name)
    })
  }, 20_000)

  it('remediates an unhealthy Machine a MachineHealthCheck selects', async () => {
    await kubectl(
      ['apply', '--server-side', '--field-manager', 'kiln', '-f', '-'],
      stringify({
        apiVersion: 'cluster.x-k8s.io/v1beta2',
        kind: 'MachineHealthCheck',
        metadata: {
          name: `${name}-workers-az-1`,
          namespace: ns,
          labels: { 'app.kubernetes.io/managed-by': 'kiln' },
        },
        spec: {
          clusterName: name,
          selector: {
            matchLabels: {
              'cluster.x-k8s.io/cluster-name': name,
              'topology.cluster.x-k8s.io/deployment-name': 'workers-az-1',
            },
          },
          checks: {
            nodeStartupTimeoutSeconds: 600,
            unhealthyNodeConditions: [
              { type: 'Ready', status: 'False', timeoutSeconds: 300 },
              { type: 'Ready', status: 'Unknown', timeoutSeconds: 300 },
            ],
          },
          remediation: { triggerIf: { unhealthyLessThanOrEqualTo: 1 } },
        },
      }),
    )
    await until('the MachineHealthCheck counting 2 healthy', async () => {
      const mhc = await get('machinehealthchecks.cluster.x-k8s.io', `${name}-workers-az-1`)
      return mhc.status?.currentHealthy === 2 && mhc.status?.expectedMachines === 2
    })
    const [sick] = await running(workerSelector)
    m.standIn.markNodeUnhealthy(sick!.metadata.name)
    await until('the unhealthy Machine replaced', async () => {
      const all = await running(workerSelector)
      return all.length === 2 && !all.some((x) => x.metadata.name === sick!.metadata.name)
    })
  }, 20_000)

  it('gives existing Machines new topology labels in place, without replacing them', async () => {
    const before = (await running(workerSelector)).map((x) => x.metadata.name).sort()
    const relabelled = topology('v1.31.0', 2)
    relabelled.workers.machineDeployments[0]!.metadata.labels['kiln.dev/team'] = 'storage'
    await applyCluster(relabelled)
    await until('both workers labelled', async () => {
      const all = await list('machines.cluster.x-k8s.io', workerSelector)
      return all.length === 2 && all.every((x) => x.metadata.labels?.['kiln.dev/team'] === 'storage') && all
    })
    expect((await running(workerSelector)).map((x) => x.metadata.name).sort()).toEqual(before)
  })

  it('rolls a version change out: the control plane first, then the workers', async () => {
    await applyCluster(topology('v1.32.0', 2))
    let sawRollingOut = false
    await until(
      'every Machine on v1.32.0 and RollingOut False',
      async () => {
        const [cluster, machines] = await Promise.all([
          get('clusters.cluster.x-k8s.io', name),
          list('machines.cluster.x-k8s.io'),
        ])
        if (conditionOf(cluster, 'RollingOut')?.status === 'True') sawRollingOut = true
        const upgraded = machines.filter((x) => x.spec.version === 'v1.32.0')
        // A worker is never upgraded while a control plane Machine is still on the old version.
        if (upgraded.some((x) => x.metadata.labels?.['cluster.x-k8s.io/deployment-name']))
          expect(
            machines
              .filter((x) => x.metadata.labels?.['cluster.x-k8s.io/control-plane'] === '')
              .every((x) => x.spec.version === 'v1.32.0'),
          ).toBe(true)
        const done =
          machines.length === 3 &&
          upgraded.length === 3 &&
          machines.every((x) => x.status?.phase === 'Running') &&
          conditionOf(cluster, 'RollingOut')?.status === 'False'
        return done
      },
      30_000,
    )
    expect(sawRollingOut).toBe(true)
    const [kcp] = await list('kubeadmcontrolplanes.controlplane.cluster.x-k8s.io')
    expect(kcp!.status?.version).toBe('v1.32.0')
    const [md] = await list('machinedeployments.cluster.x-k8s.io')
    expect(md!.status).toMatchObject({ replicas: 2, upToDateReplicas: 2, availableReplicas: 2 })
  }, 40_000)

  it('reports a missing ClusterClass on TopologyReconciled and creates nothing', async () => {
    await applyCluster({ ...topology('v1.31.0', 1), classRef: { name: 'no-such-class' } }, 'orphan-00000000')
    const cluster = await until('TopologyReconciled False', async () => {
      const c = await get('clusters.cluster.x-k8s.io', 'orphan-00000000')
      return conditionOf(c, 'TopologyReconciled')?.status === 'False' && c
    })
    expect(conditionOf(cluster, 'TopologyReconciled')?.reason).toBe('ClusterClassNotFound')
    expect(
      await list('machinedeployments.cluster.x-k8s.io', 'cluster.x-k8s.io/cluster-name=orphan-00000000'),
    ).toEqual([])
    await kubectl(['delete', 'clusters.cluster.x-k8s.io', 'orphan-00000000', '-n', ns, '--wait=false'])
  }, 20_000)

  it('deletes everything of a deleted Cluster, then its finalizer', async () => {
    await kubectl(['delete', 'clusters.cluster.x-k8s.io', name, '-n', ns, '--wait=false'])
    // Deletion is graceful: the Cluster stays, Deleting, until Cluster API removes its finalizer.
    let sawDeleting = false
    await until(
      'the Cluster and everything it had gone',
      async () => {
        const left = await Promise.all(
          [
            'machines.cluster.x-k8s.io',
            'machinedeployments.cluster.x-k8s.io',
            'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io',
            'kubeadmconfigs.bootstrap.cluster.x-k8s.io',
            'openstackmachines.infrastructure.cluster.x-k8s.io',
            'openstackclusters.infrastructure.cluster.x-k8s.io',
            'openstackmachinetemplates.infrastructure.cluster.x-k8s.io',
            'kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io',
          ].map((kind) => list(kind)),
        )
        const cluster = await m.mgmt.kubectl([
          'get',
          'clusters.cluster.x-k8s.io',
          name,
          '-n',
          ns,
          '-o',
          'json',
        ])
        if (cluster.code === 0) {
          const live = JSON.parse(cluster.stdout) as Obj & { metadata: { deletionTimestamp?: string } }
          if (live.metadata.deletionTimestamp && live.status?.phase === 'Deleting') sawDeleting = true
        }
        return left.every((l) => l.length === 0) && cluster.code !== 0
      },
      30_000,
    )
    expect(sawDeleting).toBe(true)
    // The ClusterClass and its templates (not the stand-in's) are untouched; the MHC is Kiln's to delete.
    expect(
      (
        await kubectl([
          'get',
          'openstackmachinetemplates.infrastructure.cluster.x-k8s.io',
          '-n',
          ns,
          '-o',
          'name',
        ])
      )
        .trim()
        .split('\n'),
    ).toHaveLength(4)
    expect(
      await kubectl(['get', 'clusterclasses.cluster.x-k8s.io', 'kiln-simulated', '-n', ns, '-o', 'name']),
    ).toContain('kiln-simulated')
  }, 40_000)

  it('had every write it made accepted by the API server', () => {
    expect(m.standInLog.filter((e) => e.msg === 'reconcile failed')).toEqual([])
  })

  it('runs as a process (KUBECONFIG, CAPI_NAMESPACES), logging JSON lines, and stops on SIGTERM', async () => {
    const other = 'capi-process'
    await m.namespace(other)
    const child = spawn(process.execPath, ['--import', 'tsx', 'apps/simulator/src/capi/main.ts'], {
      env: { ...process.env, KUBECONFIG: m.kubeconfigPath, CAPI_NAMESPACES: other, CAPI_INTERVAL_MS: '50' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.on('data', (d) => (output += d))
    child.stderr.on('data', (d) => (output += d))
    try {
      await kubectl(
        ['apply', '--server-side', '--field-manager', 'kiln', '-f', '-'],
        stringify({
          apiVersion: 'cluster.x-k8s.io/v1beta2',
          kind: 'Cluster',
          metadata: { name: 'solo', namespace: other },
          spec: {
            topology: {
              classRef: { name: 'kiln-simulated' },
              version: 'v1.31.0',
              controlPlane: { replicas: 1 },
            },
          },
        }),
      )
      await until('the process to make the Cluster Available', async () => {
        const c = JSON.parse(
          await kubectl(['get', 'clusters.cluster.x-k8s.io', 'solo', '-n', other, '-o', 'json']),
        ) as Obj
        return conditionOf(c, 'Available')?.status === 'True'
      })
    } finally {
      child.kill('SIGTERM')
    }
    const [code] = await once(child, 'exit')
    expect(code, output).toBe(0)
    const lines = output
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string })
    expect(lines[0]).toMatchObject({ msg: 'Cluster API stand-in started', namespaces: [other] })
    expect(lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['created', 'machine phase']))
    expect(lines.at(-1)).toMatchObject({ msg: 'Cluster API stand-in stopped', signal: 'SIGTERM' })
  }, 40_000)
})
