import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  clusterUrl,
  createCluster,
  machineRows,
  PROJECT,
  startOperation,
  waitForOperation,
} from './support.ts'

// Quota is released when machines are released: the real API and engine in-process, the simulated
// data centre in Postgres. A cluster (or a node group) that gives machines back keeps counting
// them until the engine has released them, and then its share fits a new request.

const config = testDataCentre()
let stack: TestStack

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  // The template: 1 control-plane and 3 worker m1.large machines, 4 nodes.
  await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  const res = await stack.app.inject({
    method: 'PUT',
    url: `/v1/projects/${PROJECT}/quota`,
    payload: { nodes: 4 },
  })
  expect(res.statusCode, res.body).toBe(200)
})

afterAll(async () => {
  await stack?.close()
})

async function usage() {
  const res = await stack.app.inject({ method: 'GET', url: `/v1/projects/${PROJECT}/usage` })
  expect(res.statusCode, res.body).toBe(200)
  return (res.json() as { usage: { clusters: number; nodes: number; vcpus: number } }).usage
}

async function expectRefused(body: Record<string, unknown>, usage: number, request: number) {
  const res = await stack.app.inject({
    method: 'POST',
    url: `/v1/projects/${PROJECT}/clusters`,
    payload: body,
  })
  expect(res.statusCode, res.body).toBe(422)
  expect(res.json()).toMatchObject({
    type: 'https://kiln.dev/problems/quota-exceeded',
    exceeded: [{ resource: 'nodes', limit: 4, usage, request, exceeded: true }],
  })
}

describe('quota released with the machines', () => {
  it('a deleted cluster counts until the engine has released its machines; then a new create fits', async () => {
    const created = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name: 'first', template: 'k8s-1.31' })).id,
    )
    expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
    expect(await machineRows(stack.db, created.resource.id)).toHaveLength(4)
    expect(await usage()).toMatchObject({ clusters: 1, nodes: 4 })
    await expectRefused({ name: 'second', template: 'k8s-1.31' }, 4, 4)

    // Deletion requested, machines not yet released (no engine): they still count.
    await stack.stopEngine()
    const deleting = await startOperation(stack.app, 'DELETE', clusterUrl('first'))
    expect(await usage()).toMatchObject({ clusters: 1, nodes: 4 })
    await expectRefused({ name: 'second', template: 'k8s-1.31' }, 4, 4)

    await stack.startEngine()
    const deleted = await waitForOperation(stack.app, deleting.id)
    expect(deleted.status, JSON.stringify(deleted.steps)).toBe('succeeded')
    expect(await machineRows(stack.db, created.resource.id)).toHaveLength(0)
    expect(await usage()).toEqual({ clusters: 0, nodes: 0, vcpus: 0, memoryMiB: 0, gpus: 0, gpusByModel: {} })

    const second = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name: 'second', template: 'k8s-1.31' })).id,
    )
    expect(second.status, JSON.stringify(second.steps)).toBe('succeeded')
    expect(await usage()).toMatchObject({ clusters: 1, nodes: 4 })
  })

  it('a node group scaled down counts its machines until they are released', async () => {
    await stack.stopEngine()
    const resize = await startOperation(
      stack.app,
      'POST',
      `${clusterUrl('second')}/nodegroups/workers/resize`,
      {
        count: 1,
      },
    )
    // Desired 1, but 3 workers still held.
    expect(await usage()).toMatchObject({ nodes: 4 })
    const small = { name: 'third', template: 'k8s-1.31', nodeGroups: [{ name: 'workers', count: 1 }] }
    await expectRefused(small, 4, 2)

    await stack.startEngine()
    const resized = await waitForOperation(stack.app, resize.id)
    expect(resized.status, JSON.stringify(resized.steps)).toBe('succeeded')
    expect(await usage()).toMatchObject({ nodes: 2 })
    const third = await waitForOperation(stack.app, (await createCluster(stack.app, small)).id)
    expect(third.status, JSON.stringify(third.steps)).toBe('succeeded')
    expect(await usage()).toMatchObject({ clusters: 2, nodes: 4 })
  })
})
