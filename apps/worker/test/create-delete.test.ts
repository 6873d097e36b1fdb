import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { aTemplate } from '../../../test/support/builders.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  clusterUrl,
  conditionOf,
  createCluster,
  expectBooksAgree,
  machineRows,
  type OperationBody,
  simulatorFor,
  simulatorNames,
  startOperation,
  waitForOperation,
} from './support.ts'

// Create and delete end to end: the real API and engine in-process, the simulated data centre in
// Postgres, checked against both Kiln's books and the data centre's own.

const config = testDataCentre()
let stack: TestStack
let sim: SimulatorDriver

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  const { backend } = await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  await aTemplate(stack.db, backend.id, {
    name: 'gpu-training',
    features: { gpu: { enabled: true } },
    nodeGroups: [
      { name: 'workers', machineClass: 'm1.large', count: 1, minCount: 1, maxCount: 4 },
      { name: 'gpu', machineClass: 'gpu.a100x4', count: 2, minCount: 0, maxCount: 2 },
    ],
  })
  sim = simulatorFor(stack, 'sim', config)
})

afterAll(async () => {
  await sim?.close()
  await stack?.close()
})

const createSteps = [
  'reserve-capacity',
  'allocate-machines',
  'issue-certificates',
  'bootstrap-control-plane',
  'join-workers',
  'install-addons',
  'wait-healthy',
]

function expectAllStepsDone(op: OperationBody, names: string[]) {
  expect(op.steps.map((s) => s.name)).toEqual(names)
  for (const step of op.steps) {
    expect(['succeeded', 'skipped'], `${step.name}: ${step.status}`).toContain(step.status)
    expect(step.message.length, `${step.name} has a message`).toBeGreaterThan(0)
    expect(step.startedAt, step.name).not.toBeNull()
    expect(step.finishedAt, step.name).not.toBeNull()
  }
}

describe('create then delete', () => {
  let created: OperationBody
  let cluster: ClusterBody

  it('creates a cluster: every step done, Ready with its conditions, machines recorded and allocated', async () => {
    const accepted = await createCluster(stack.app, { name: 'web', template: 'k8s-1.31' })
    expect(accepted.status).toBe('pending')
    created = await waitForOperation(stack.app, accepted.id)
    expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
    expect(created.error).toBeNull()
    expect(created.progress).toBe(100)
    expectAllStepsDone(created, createSteps)
    // The steps that do real work succeed; the placeholders say why they were skipped.
    const byName = Object.fromEntries(created.steps.map((s) => [s.name, s]))
    for (const name of [
      'reserve-capacity',
      'allocate-machines',
      'issue-certificates',
      'bootstrap-control-plane',
      'join-workers',
    ])
      expect(byName[name]!.status, name).toBe('succeeded')
    expect(byName['wait-healthy']!.status).toBe('succeeded')

    const res = await stack.app.inject({ method: 'GET', url: clusterUrl('web') })
    expect(res.statusCode).toBe(200)
    cluster = res.json()
    expect(cluster.status.phase).toBe('Ready')
    for (const type of ['Ready', 'MachinesReady', 'ControlPlaneAvailable'])
      expect(conditionOf(cluster, type)?.status, type).toBe('True')
    expect(conditionOf(cluster, 'Progressing')?.status).toBe('False')
    expect(cluster.status.endpoint).toBe(`https://127.0.0.1:${stack.apiServer.port}`)
    expect(cluster.status.observedGeneration).toBe(cluster.generation)
    expect(cluster.activeOperationId).toBeNull()

    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    expect((await sim.inventory()).controlPlanes).toContain(cluster.id)
    expect(rows.filter((m) => m.role === 'control-plane')).toHaveLength(1)
    expect(rows.filter((m) => m.role === 'worker')).toHaveLength(3)
    for (const m of rows) {
      expect(m.externalId, m.name).toMatch(/^sim\//)
      expect(m.phase, m.name).toBe('Running')
      expect(m.kubernetesVersion).toBe('1.31.4')
    }
    // Workers are spread over the class's zones.
    expect(new Set(rows.filter((m) => m.role === 'worker').map((m) => m.zone))).toEqual(
      new Set(['zone-a', 'zone-b']),
    )
  })

  it('deletes it: the cluster is gone (404), the data centre has nothing left for it, the operation stays', async () => {
    const accepted = await startOperation(stack.app, 'DELETE', clusterUrl('web'))
    expect(accepted.kind).toBe('cluster.delete')
    const done = await waitForOperation(stack.app, accepted.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    expect(done.progress).toBe(100)
    expectAllStepsDone(done, [
      'uninstall-addons',
      'drain-workers',
      'release-machines',
      'revoke-certificates',
      'forget-cluster',
    ])

    const gone = await stack.app.inject({ method: 'GET', url: clusterUrl('web') })
    expect(gone.statusCode).toBe(404)
    expect(await machineRows(stack.db, cluster.id)).toHaveLength(0)
    expect(await simulatorNames(sim, cluster.id)).toEqual([])
    expect((await sim.inventory()).clusterIds).not.toContain(cluster.id)
    // Nor a row for its control plane: a deleted cluster leaves nothing behind in the data centre.
    expect((await sim.inventory()).controlPlanes).not.toContain(cluster.id)

    // Both operations outlive the cluster.
    for (const id of [created.id, accepted.id]) {
      const res = await stack.app.inject({ method: 'GET', url: `/v1/operations/${id}` })
      expect(res.statusCode).toBe(200)
      expect(res.json().status).toBe('succeeded')
      expect(res.json().resource).toMatchObject({ kind: 'cluster', id: cluster.id, name: 'web' })
    }
    // A second delete of a cluster that is gone is a 404, not a new operation.
    const again = await stack.app.inject({ method: 'DELETE', url: clusterUrl('web') })
    expect(again.statusCode).toBe(404)
  })
})

describe('GPU template', () => {
  it('creates a cluster with a GPU node group on gpu.a100x4 in the zone that has them, and deletes it', async () => {
    const accepted = await createCluster(stack.app, { name: 'train', template: 'gpu-training' })
    const done = await waitForOperation(stack.app, accepted.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    const cluster = (
      await stack.app.inject({ method: 'GET', url: clusterUrl('train') })
    ).json() as ClusterBody
    expect(cluster.status.phase).toBe('Ready')
    expect(cluster.spec.features.gpu).toMatchObject({ enabled: true })

    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    const gpu = rows.filter((m) => m.machineClass === 'gpu.a100x4')
    expect(gpu).toHaveLength(2)
    for (const m of gpu) {
      expect(m.zone).toBe('zone-a')
      expect(m.externalId).toMatch(/^sim\/zone-a-r0[12]\/gpu\.a100x4\//)
      expect(m.name).toMatch(/-ng-gpu-\d+-[0-9a-f]{6}$/)
    }
    expect(rows.filter((m) => m.machineClass === 'm1.large')).toHaveLength(2) // control plane + 1 worker

    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('train'))).id,
    )
    expect(deleted.status).toBe('succeeded')
    expect(await simulatorNames(sim, cluster.id)).toEqual([])
    expect(await machineRows(stack.db, cluster.id)).toHaveLength(0)
  })
})

describe('not enough capacity', () => {
  let cluster: ClusterBody

  it('fails at reserve-capacity with ERR_CAPACITY (platform), leaves the cluster Failed and free, allocates nothing', async () => {
    const before = await sim.inventory()
    // 40 m1.large in the whole data centre (2 zones × 2 racks × 10); this asks for 1 + 50.
    const accepted = await createCluster(stack.app, {
      name: 'huge',
      template: 'k8s-1.31',
      nodeGroups: [{ name: 'workers', count: 50, maxCount: 100 }],
    })
    const op = await waitForOperation(stack.app, accepted.id)
    expect(op.status).toBe('failed')
    expect(op.error).toMatchObject({ code: 'ERR_CAPACITY', reason: 'platform', step: 'reserve-capacity' })
    expect(op.error?.detail).toMatch(/Not enough capacity/)
    expect(op.steps[0]).toMatchObject({ name: 'reserve-capacity', status: 'failed' })
    expect(op.steps[0]!.message).toMatch(/m1\.large/)
    for (const step of op.steps.slice(1)) expect(step.status, step.name).toBe('skipped')
    expect(op.progress).toBeLessThan(100)

    cluster = (await stack.app.inject({ method: 'GET', url: clusterUrl('huge') })).json()
    expect(cluster.status.phase).toBe('Failed')
    expect(conditionOf(cluster, 'Ready')).toMatchObject({ status: 'False', reason: 'ERR_CAPACITY' })
    expect(conditionOf(cluster, 'Progressing')?.status).toBe('False')
    expect(cluster.activeOperationId).toBeNull()
    expect(cluster.status.endpoint ?? null).toBeNull()

    expect(await machineRows(stack.db, cluster.id)).toHaveLength(0)
    expect(await simulatorNames(sim, cluster.id)).toEqual([])
    expect((await sim.inventory()).allocated).toBe(before.allocated)
  })

  it('can still be deleted', async () => {
    const op = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('huge'))).id,
    )
    expect(op.status, JSON.stringify(op.steps)).toBe('succeeded')
    expect((await stack.app.inject({ method: 'GET', url: clusterUrl('huge') })).statusCode).toBe(404)
    expect(await simulatorNames(sim, cluster.id)).toEqual([])
  })

  it('leaves the data centre exactly as it started: nothing allocated, no cluster remembered', async () => {
    const inventory = await sim.inventory()
    expect(inventory.allocated).toBe(0)
    expect(inventory.controlPlanes).toEqual([])
    expect(inventory.total).toBe(2 * 2 * 10 + 2 * 1)
    expect(await stack.db.machine.count()).toBe(0)
  })
})
