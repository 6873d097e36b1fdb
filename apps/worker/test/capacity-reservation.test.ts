import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SimulatorConfig, SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  clusterUrl,
  conditionOf,
  createCluster,
  eventually,
  expectBooksAgree,
  getCluster,
  machineRows,
  type OperationBody,
  retryOperation,
  simulatorFor,
  simulatorNames,
  startOperation,
  waitForOperation,
} from './support.ts'

// Capacity is reserved, not only checked: creates racing for the same machines get one winner, and
// a create that cannot have its machines keeps none of them (issue 20).

/** Four machines of one class: two per zone. */
const tight: SimulatorConfig = testDataCentre({
  racksPerZone: 1,
  machineClasses: [{ name: 't.small', cpu: 2, memoryMiB: 4096, gpuModel: null, gpuCount: 0, perRack: 2 }],
})

/**
 * Control-plane machines only in zone-a, workers only in zone-b, and an allocation slow enough for
 * someone outside Kiln to take zone-b's machines between the reservation and the allocation.
 */
const split: SimulatorConfig = testDataCentre({
  racksPerZone: 1,
  machineClasses: [
    { name: 's.cp', cpu: 2, memoryMiB: 4096, gpuModel: null, gpuCount: 0, perRack: 2, zones: ['zone-a'] },
    { name: 's.w', cpu: 2, memoryMiB: 4096, gpuModel: null, gpuCount: 0, perRack: 2, zones: ['zone-b'] },
  ],
  latency: { ensureMachines: { minMs: 1500, maxMs: 1500 } },
})

let stack: TestStack
let tightSim: SimulatorDriver
let splitSim: SimulatorDriver

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  await aSimulatedBackend(stack.db, 'tight', tight, {
    name: 'tight-3',
    controlPlane: { count: 1, machineClass: 't.small' },
    nodeGroups: [{ name: 'workers', machineClass: 't.small', count: 2, minCount: 1, maxCount: 4 }],
  })
  await aSimulatedBackend(stack.db, 'split', split, {
    name: 'split-3',
    controlPlane: { count: 1, machineClass: 's.cp' },
    nodeGroups: [{ name: 'workers', machineClass: 's.w', count: 2, minCount: 1, maxCount: 4 }],
  })
  tightSim = simulatorFor(stack, 'tight', tight)
  // The outsider takes machines at once: no latency.
  splitSim = simulatorFor(stack, 'split', { ...split, latency: {} })
})

afterAll(async () => {
  await tightSim?.close()
  await splitSim?.close()
  await stack?.close()
})

const retry = (id: string) => retryOperation(stack.app, id)

/** A create that ended holding nothing: no rows, nothing at the backend, phase Failed. */
async function expectFailedHoldingNothing(name: string, sim: SimulatorDriver): Promise<ClusterBody> {
  const cluster = await getCluster(stack.app, name)
  expect(await machineRows(stack.db, cluster.id)).toEqual([])
  expect(await simulatorNames(sim, cluster.id)).toEqual([])
  expect(cluster.status.phase).toBe('Failed')
  expect(conditionOf(cluster, 'Ready')).toMatchObject({ status: 'False', reason: 'ERR_CAPACITY' })
  expect(cluster.status.endpoint ?? null).toBeNull()
  expect(cluster.status.observedGeneration).toBe(0)
  expect(cluster.activeOperationId).toBeNull()
  return cluster
}

describe('two creates racing for four machines, three each', () => {
  let winner: { name: string; op: OperationBody }
  let loser: { name: string; op: OperationBody }

  it('exactly one succeeds; the other fails ERR_CAPACITY holding nothing, phase Failed', async () => {
    const accepted = await Promise.all(
      ['race-1', 'race-2'].map((name) => createCluster(stack.app, { name, template: 'tight-3' })),
    )
    const ops = await Promise.all(accepted.map((a) => waitForOperation(stack.app, a.id, 60_000)))
    expect(ops.map((o) => o.status).sort()).toEqual(['failed', 'succeeded'])
    const w = ops.findIndex((o) => o.status === 'succeeded')
    winner = { name: `race-${w + 1}`, op: ops[w]! }
    loser = { name: `race-${2 - w}`, op: ops[1 - w]! }
    expect(loser.op.error).toMatchObject({ code: 'ERR_CAPACITY', reason: 'platform' })

    await expectFailedHoldingNothing(loser.name, tightSim)
    const winnerCluster = await getCluster(stack.app, winner.name)
    expect(winnerCluster.status.phase).toBe('Ready')
    const rows = await expectBooksAgree(stack.db, tightSim, winnerCluster.id)
    expect(rows).toHaveLength(3)
    // The data centre holds the winner's machines and nothing else.
    expect((await tightSim.inventory()).allocatedNames.sort()).toEqual(rows.map((m) => m.name).sort())
  })

  it('a retry while the winner holds the machines fails again, still holding nothing', async () => {
    const again = await waitForOperation(stack.app, (await retry(loser.op.id)).id, 30_000)
    expect(again.status).toBe('failed')
    expect(again.error).toMatchObject({ code: 'ERR_CAPACITY' })
    await expectFailedHoldingNothing(loser.name, tightSim)
  })

  it('after the winner is deleted, the create succeeds on retry', async () => {
    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl(winner.name))).id,
      30_000,
    )
    expect(deleted.status).toBe('succeeded')
    const done = await waitForOperation(stack.app, (await retry(loser.op.id)).id, 60_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    const cluster = await getCluster(stack.app, loser.name)
    expect(cluster.status.phase).toBe('Ready')
    expect(await expectBooksAgree(stack.db, tightSim, cluster.id)).toHaveLength(3)
  })

  it('a create that failed holding nothing can be deleted', async () => {
    const accepted = await createCluster(stack.app, { name: 'race-3', template: 'tight-3' })
    const failed = await waitForOperation(stack.app, accepted.id, 30_000)
    expect(failed.error).toMatchObject({ code: 'ERR_CAPACITY', step: 'reserve-capacity' })
    await expectFailedHoldingNothing('race-3', tightSim)
    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('race-3'))).id,
      30_000,
    )
    expect(deleted.status).toBe('succeeded')
    expect((await stack.app.inject({ method: 'GET', url: clusterUrl('race-3') })).statusCode).toBe(404)
  })
})

describe('an allocation that fails after taking some machines', () => {
  it('releases what it took and deletes its reservation, then fails ERR_CAPACITY', async () => {
    const accepted = await createCluster(stack.app, { name: 'grabbed', template: 'split-3' })
    const clusterId = (await getCluster(stack.app, 'grabbed')).id
    // The reservation passed (zone-b had two free workers); the backend is being asked now.
    await eventually(
      'the machines to be Allocating',
      async () => {
        const rows = await machineRows(stack.db, clusterId)
        return rows.length === 3 && rows.every((m) => m.phase === 'Allocating') ? rows : undefined
      },
      10_000,
    )
    // Someone outside Kiln takes zone-b's workers meanwhile.
    const outsider = { id: '00000000-0000-4000-8000-00000000beef', name: 'outsider' }
    const taken = await splitSim.ensureMachines(
      outsider,
      [1, 2].map((i) => ({
        name: `outsider-${i}`,
        machineClass: 's.w',
        zone: 'zone-b',
        role: 'worker' as const,
        kubernetesVersion: '1.31.4',
        labels: {},
        taints: [],
      })),
    )
    expect(taken).toHaveLength(2)

    const op = await waitForOperation(stack.app, accepted.id, 30_000)
    expect(op.status).toBe('failed')
    expect(op.error).toMatchObject({ code: 'ERR_CAPACITY', step: 'allocate-machines' })
    // The control-plane machine in zone-a was allocated before zone-b ran out; it went back.
    await expectFailedHoldingNothing('grabbed', splitSim)
    expect((await splitSim.inventory()).allocatedNames.sort()).toEqual(['outsider-1', 'outsider-2'])
    await splitSim.releaseMachines(outsider, ['outsider-1', 'outsider-2'])
  })
})
