import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterUrl, type OperationBody, waitForOperation } from '../../worker/test/support.ts'
import { type SimulatedCluster, startSimulatedCluster } from './support.ts'

// Add-ons as a user sees them: the engine applies them server-side to the cluster's own API
// server, so `kubectl get pods -A` shows what the features ask for, and nothing else; changing a
// feature prunes what it no longer wants.

let c: SimulatedCluster

interface Pod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> }
  spec: { nodeName?: string }
  status: { phase: string }
}

async function pods(): Promise<Pod[]> {
  const out = await c.kubectl(['get', 'pods', '-A', '-o', 'json'])
  expect(out.stderr).toBe('')
  return JSON.parse(out.stdout).items as Pod[]
}

const addonsOf = (list: Pod[]) =>
  [...new Set(list.map((p) => p.metadata.labels?.['kiln.dev/addon']).filter((a): a is string => !!a))].sort()

beforeAll(async () => {
  c = await startSimulatedCluster({
    name: 'train',
    template: {
      name: 'k8s-1.31',
      nodeGroups: [
        { name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 6 },
        {
          name: 'gpu',
          machineClass: 'gpu.a100x4',
          count: 2,
          minCount: 0,
          maxCount: 2,
          taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
        },
      ],
    },
    create: {
      features: {
        gpu: { enabled: true },
        ingress: { controller: 'traefik' },
        monitoring: { enabled: true, retentionDays: 15 },
        metricsServer: { enabled: true },
      },
    },
  })
}, 120_000)

afterAll(async () => {
  await c?.close()
})

describe('add-ons on a simulated cluster', () => {
  it('runs the add-ons the features ask for, and no others', async () => {
    const list = await pods()
    const addons = addonsOf(list)
    for (const wanted of [
      'coredns',
      'kube-proxy',
      'nvidia-device-plugin',
      'traefik',
      'prometheus',
      'node-exporter',
      'metrics-server',
    ])
      expect(addons).toContain(wanted)
    expect(addons).not.toContain('ingress-nginx')
    expect(list.every((p) => p.status.phase === 'Running')).toBe(true)

    const managed = JSON.parse(
      (
        await c.kubectl([
          'get',
          'daemonset',
          '-n',
          'kube-system',
          '-l',
          'kiln.dev/addon=nvidia-device-plugin',
          '--show-managed-fields',
          '-o',
          'json',
        ])
      ).stdout,
    ).items[0]
    expect(managed.metadata.managedFields.map((f: { manager: string }) => f.manager)).toEqual(['kiln'])
  })

  it('puts the GPU device plugin on the GPU node group only, tolerating its taint', async () => {
    const gpuNodes = (
      await c.kubectl([
        'get',
        'nodes',
        '-l',
        'kiln.dev/node-group=gpu',
        '-o',
        'jsonpath={.items[*].metadata.name}',
      ])
    ).stdout
      .split(' ')
      .filter(Boolean)
      .sort()
    expect(gpuNodes).toHaveLength(2)
    const plugin = (await pods()).filter(
      (p) => p.metadata.labels?.['kiln.dev/addon'] === 'nvidia-device-plugin',
    )
    expect(plugin.map((p) => p.spec.nodeName).sort()).toEqual(gpuNodes)
    // Workloads without the toleration stay off the tainted GPU nodes.
    const coredns = (await pods()).filter((p) => p.metadata.labels?.['kiln.dev/addon'] === 'coredns')
    expect(coredns.length).toBeGreaterThan(0)
    for (const p of coredns) expect(gpuNodes).not.toContain(p.spec.nodeName)
  })

  it('runs Prometheus with the retention the feature sets', async () => {
    const args = (
      await c.kubectl([
        'get',
        'statefulsets',
        '-n',
        'monitoring',
        '-o',
        'jsonpath={.items[*].spec.template.spec.containers[*].args}',
      ])
    ).stdout
    expect(args).toContain('--storage.tsdb.retention.time=15d')
  })

  it('replaces traefik by nginx and drops monitoring when the features change, leaving nothing behind', async () => {
    const res = await c.stack.app.inject({
      method: 'PATCH',
      url: clusterUrl('train'),
      payload: { features: { ingress: { controller: 'nginx' }, monitoring: { enabled: false } } },
    })
    expect(res.statusCode, res.body).toBe(202)
    const op = await waitForOperation(c.stack.app, res.json<OperationBody>().id, 60_000)
    expect(op.status, JSON.stringify(op.steps)).toBe('succeeded')
    expect(op.steps.find((s) => s.name === 'install-addons')?.message).toMatch(/pruned \d+ objects/)

    const addons = addonsOf(await pods())
    expect(addons).toContain('ingress-nginx')
    for (const gone of ['traefik', 'prometheus', 'node-exporter']) expect(addons).not.toContain(gone)
    const leftovers = await c.kubectl([
      'get',
      'all,configmaps,serviceaccounts,clusterroles,clusterrolebindings,ingressclasses',
      '-A',
      '-l',
      'kiln.dev/addon in (traefik,prometheus,node-exporter)',
      '-o',
      'name',
    ])
    expect(leftovers.stderr).toBe('')
    expect(leftovers.stdout).toBe('')
    const namespaces = (await c.kubectl(['get', 'namespaces', '-o', 'name'])).stdout
    expect(namespaces).not.toMatch(/ingress-traefik|namespace\/monitoring/)
    expect(namespaces).toMatch(/namespace\/ingress-nginx/)
  })
})
