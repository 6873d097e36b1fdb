import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { aKubernetesVersion, aTemplate } from '../../../test/support/builders.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  clusterUrl,
  conditionOf,
  createCluster,
  expectBooksAgree,
  getCluster,
  type OperationBody,
  simulatorFor,
  startOperation,
  waitForOperation,
} from './support.ts'

// Day-2 operations on a live cluster: resize, node groups, features, upgrade.

const config = testDataCentre()
let stack: TestStack
let sim: SimulatorDriver
let cluster: ClusterBody
let backendId: string

const ngUrl = (ng: string) => `${clusterUrl('app')}/nodegroups/${ng}`

async function run(method: 'POST' | 'PATCH' | 'DELETE', url: string, payload?: Record<string, unknown>) {
  const accepted = await startOperation(stack.app, method, url, payload)
  const done = await waitForOperation(stack.app, accepted.id)
  expect(done.status, `${done.kind}: ${JSON.stringify(done.steps)} ${JSON.stringify(done.error)}`).toBe(
    'succeeded',
  )
  return done
}

async function workerNames(nodeGroup = 'workers') {
  const ng = await stack.db.nodeGroup.findFirstOrThrow({ where: { clusterId: cluster.id, name: nodeGroup } })
  return (
    await stack.db.machine.findMany({ where: { nodeGroupId: ng.id }, orderBy: { ordinal: 'asc' } })
  ).map((m) => m.name)
}

async function expectReadyAndIdle() {
  const c = await getCluster(stack.app, 'app')
  expect(c.status.phase).toBe('Ready')
  expect(conditionOf(c, 'Ready')?.status).toBe('True')
  expect(conditionOf(c, 'MachinesReady')?.status).toBe('True')
  expect(c.activeOperationId).toBeNull()
  return c
}

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  const { backend } = await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  backendId = backend.id
  await aKubernetesVersion(stack.db, '1.32.1')
  await aKubernetesVersion(stack.db, '1.33.0')
  await aTemplate(stack.db, backend.id, { name: 'k8s-1.32', kubernetesVersion: '1.32.1' })
  await aTemplate(stack.db, backend.id, { name: 'k8s-1.33', kubernetesVersion: '1.33.0' })
  // One minor up, but expired: never an upgrade target.
  await aKubernetesVersion(stack.db, '1.32.0', 'expired')
  await aTemplate(stack.db, backend.id, { name: 'k8s-1.32-old', kubernetesVersion: '1.32.0' })
  sim = simulatorFor(stack, 'sim', config)
  const created = await waitForOperation(
    stack.app,
    (await createCluster(stack.app, { name: 'app', template: 'k8s-1.31' })).id,
  )
  expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
  cluster = await getCluster(stack.app, 'app')
}, 60_000)

afterAll(async () => {
  await sim?.close()
  await stack?.close()
})

describe('resize', () => {
  it('scales a node group up from 3 to 5: two new machines, the three old ones kept', async () => {
    const before = await workerNames()
    expect(before).toHaveLength(3)
    const op = await run('POST', `${ngUrl('workers')}/resize`, { count: 5 })
    expect(op.kind).toBe('nodegroup.resize')
    const steps = Object.fromEntries(op.steps.map((s) => [s.name, s]))
    expect(steps['allocate-machines']?.message).toMatch(/^2 machines allocated/)
    expect(steps['drain-workers']?.status).toBe('skipped')
    expect(steps['release-machines']?.status).toBe('skipped')

    const after = await workerNames()
    expect(after).toHaveLength(5)
    expect(after).toEqual(expect.arrayContaining(before))
    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(rows).toHaveLength(1 + 5)
    expect(rows.every((m) => m.phase === 'Running' && m.externalId)).toBe(true)
    const ng = (await stack.app.inject({ method: 'GET', url: ngUrl('workers') })).json()
    expect(ng.count).toBe(5)
    await expectReadyAndIdle()
  })

  it('scales down from 5 to 4 removing the named machine: that one goes, every other stays', async () => {
    const before = await workerNames()
    const victim = before[1]!
    const op = await run('POST', `${ngUrl('workers')}/resize`, { count: 4, machinesToRemove: [victim] })
    const steps = Object.fromEntries(op.steps.map((s) => [s.name, s]))
    expect(steps['drain-workers']?.message).toBe(`Drained ${victim}.`)
    expect(steps['release-machines']?.message).toBe('Released 1 machines.')

    const after = await workerNames()
    expect(after).toEqual(before.filter((n) => n !== victim))
    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(rows.map((m) => m.name)).not.toContain(victim)
    expect((await sim.inventory()).allocatedNames).not.toContain(victim)
    expect(rows).toHaveLength(1 + 4)
    await expectReadyAndIdle()
  })

  it('refuses a count outside the group bounds (422) and starts nothing', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: `${ngUrl('workers')}/resize`,
      payload: { count: 11 },
    })
    expect(res.statusCode, res.body).toBe(422)
    expect((await getCluster(stack.app, 'app')).activeOperationId).toBeNull()
  })
})

describe('node groups', () => {
  it('adds a node group: its machines are allocated, joined and recorded', async () => {
    const op = await run('POST', `${clusterUrl('app')}/nodegroups`, {
      name: 'batch',
      machineClass: 'm1.large',
      count: 2,
      minCount: 0,
      maxCount: 4,
    })
    expect(op.kind).toBe('nodegroup.create')
    expect(op.resource).toMatchObject({ kind: 'nodegroup', name: 'batch' })
    const batch = await workerNames('batch')
    expect(batch).toHaveLength(2)
    for (const name of batch) expect(name).toMatch(/-ng-batch-\d+-[0-9a-f]{6}$/)
    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(rows).toHaveLength(1 + 4 + 2)
    expect(rows.every((m) => m.phase === 'Running')).toBe(true)
    await expectReadyAndIdle()
  })

  it('deletes the node group: its machines are released, the rest untouched', async () => {
    const workersBefore = await workerNames()
    const batch = await workerNames('batch')
    const op = await run('DELETE', ngUrl('batch'))
    expect(op.kind).toBe('nodegroup.delete')
    expect((await stack.app.inject({ method: 'GET', url: ngUrl('batch') })).statusCode).toBe(404)
    expect(await stack.db.nodeGroup.count({ where: { clusterId: cluster.id, name: 'batch' } })).toBe(0)
    const rows = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(rows).toHaveLength(1 + 4)
    const allocated = (await sim.inventory()).allocatedNames
    for (const name of batch) expect(allocated).not.toContain(name)
    expect(await workerNames()).toEqual(workersBefore)
    await expectReadyAndIdle()
  })
})

describe('features', () => {
  it('turns monitoring on: an update-features operation succeeds and bumps the generation', async () => {
    const before = await getCluster(stack.app, 'app')
    const res = await stack.app.inject({
      method: 'PATCH',
      url: clusterUrl('app'),
      payload: { features: { monitoring: { enabled: true } } },
    })
    expect(res.statusCode, res.body).toBe(202)
    const accepted = res.json() as OperationBody
    expect(accepted.kind).toBe('cluster.update-features')
    const done = await waitForOperation(stack.app, accepted.id)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')

    const after = await expectReadyAndIdle()
    expect(after.spec.features.monitoring).toMatchObject({ enabled: true })
    expect(after.generation).toBe(before.generation + 1)
    await expectBooksAgree(stack.db, sim, cluster.id)
  })

  it('reports the new generation as observed once the update-features operation succeeded', async () => {
    // Kubernetes semantics: after a successful reconcile, status.observedGeneration is the generation
    // of the spec it reconciled, so clients can tell "applied" from "not yet looked at".
    const after = await getCluster(stack.app, 'app')
    expect(after.generation).toBeGreaterThan(1)
    expect(after.status.observedGeneration).toBe(after.generation)
  })
})

/** The template versions `GET …/upgrades` offers, as name@version. */
async function upgradeTargets(name: string) {
  const res = await stack.app.inject({ method: 'GET', url: `${clusterUrl(name)}/upgrades` })
  expect(res.statusCode, res.body).toBe(200)
  return (res.json() as { items: { name: string; version: number }[] }).items.map(
    (t) => `${t.name}@${t.version}`,
  )
}

describe('upgrade', () => {
  it('offers exactly the next minor version: not 1.33 (skips 1.32), not the expired 1.32.0, not its own template', async () => {
    expect(await upgradeTargets('app')).toEqual(['k8s-1.32@1'])
    // A new version of its own template (same Kubernetes) is an upgrade too, offered after 1.32.
    await aTemplate(stack.db, backendId, { name: 'k8s-1.31', version: 2 })
    expect(await upgradeTargets('app')).toEqual(['k8s-1.32@1', 'k8s-1.31@2'])
    const missing = await stack.app.inject({ method: 'GET', url: `${clusterUrl('nope')}/upgrades` })
    expect(missing.statusCode).toBe(404)
    expect(missing.headers['content-type']).toMatch(/application\/problem\+json/)
  })

  it('refuses to skip a minor version (1.31 → 1.33) with 422 and starts nothing', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: `${clusterUrl('app')}/upgrade`,
      payload: { template: 'k8s-1.33' },
    })
    expect(res.statusCode, res.body).toBe(422)
    expect(res.json().errors[0]).toMatchObject({ pointer: '/template' })
    expect(res.json().errors[0].message).toMatch(/one minor version at a time/)
    const c = await getCluster(stack.app, 'app')
    expect(c.activeOperationId).toBeNull()
    expect(c.spec.kubernetesVersion).toBe('1.31.4')
  })

  it('upgrades 1.31 → 1.32 by rolling replacement: every machine on 1.32.1, same count, no leaked surge machine', async () => {
    const before = await expectBooksAgree(stack.db, sim, cluster.id)
    const oldRows = new Set(before.map((m) => m.id))
    const op = await run('POST', `${clusterUrl('app')}/upgrade`, { template: 'k8s-1.32' })
    expect(op.kind).toBe('cluster.upgrade')
    expect(op.steps.map((s) => [s.name, s.status])).toEqual([
      ['reserve-capacity', 'succeeded'],
      ['upgrade-control-plane', 'succeeded'],
      ['upgrade-node-groups', 'succeeded'],
      ['install-addons', 'succeeded'],
      ['wait-healthy', 'succeeded'],
    ])

    const after = await expectBooksAgree(stack.db, sim, cluster.id)
    expect(after).toHaveLength(before.length)
    expect(after.filter((m) => m.role === 'control-plane')).toHaveLength(1)
    expect(after.filter((m) => m.role === 'worker')).toHaveLength(4)
    for (const m of after) {
      expect(m.kubernetesVersion, m.name).toBe('1.32.1')
      expect(m.phase, m.name).toBe('Running')
      // Replaced, not relabelled: every machine was released and provisioned again.
      expect(oldRows.has(m.id), m.name).toBe(false)
    }
    // The data centre holds exactly the cluster's machines: the surge machines were given back.
    expect((await sim.inventory()).allocated).toBe(after.length)

    const c = await expectReadyAndIdle()
    expect(c.template.name).toBe('k8s-1.32')
    expect(c.spec.kubernetesVersion).toBe('1.32.1')
    // On 1.32 the next step is 1.33; going back is never offered.
    expect(await upgradeTargets('app')).toEqual(['k8s-1.33@1'])
  })

  it('refuses a downgrade (1.32 → 1.31) with 422', async () => {
    const res = await stack.app.inject({
      method: 'POST',
      url: `${clusterUrl('app')}/upgrade`,
      payload: { template: 'k8s-1.31' },
    })
    expect(res.statusCode, res.body).toBe(422)
    expect(res.json().errors[0].message).toMatch(/cannot be downgraded/)
    const c = await getCluster(stack.app, 'app')
    expect(c.activeOperationId).toBeNull()
    expect(c.spec.kubernetesVersion).toBe('1.32.1')
    expect((await stack.db.machine.findMany({ where: { clusterId: cluster.id } })).length).toBe(5)
  })
})
