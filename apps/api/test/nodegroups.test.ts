import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import {
  anIdleCluster,
  cancelOk,
  createClusterOk,
  expectProblem,
  getJson,
  type OperationBody,
  pointersOf,
} from './helpers.ts'

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  await aDataCentre(api.db)
})

afterAll(async () => {
  await api?.close()
})

const groups = (cluster: string) => `/v1/projects/team-a/clusters/${cluster}/nodegroups`
const group = (cluster: string, ng: string) => `${groups(cluster)}/${ng}`

async function resize(cluster: string, ng: string, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: `${group(cluster, ng)}/resize`, payload: body })
}

describe('reading node groups', () => {
  let createOp: OperationBody

  beforeAll(async () => {
    createOp = await createClusterOk(app, 'team-a', 'reader', {
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1, labels: { accel: 'a100' } }],
    })
  })

  it('lists a cluster’s node groups', async () => {
    const list = await getJson<{ items: Json[] }>(app, groups('reader'))
    expect(list.items.map((ng) => ng.name).sort()).toEqual(['gpus', 'workers'])
    expect(list.items.find((ng) => ng.name === 'gpus')).toMatchObject({
      machineClass: 'gpu.a100x4',
      count: 1,
      minCount: 0,
      maxCount: 100,
      zones: ['zone-a'],
      labels: { accel: 'a100' },
      role: 'worker',
      generation: 1,
    })
  })

  it('gets one by name or id, with an ETag', async () => {
    const byName = await app.inject({ method: 'GET', url: group('reader', 'workers') })
    expect(byName.statusCode).toBe(200)
    expect(byName.headers.etag).toMatch(/^"\d+"$/)
    const ng: Json = byName.json()
    expect(ng).toMatchObject({
      name: 'workers',
      machineClass: 'm1.large',
      count: 3,
      minCount: 1,
      maxCount: 10,
    })
    const byId = await app.inject({ method: 'GET', url: group('reader', ng.id) })
    expect(byId.statusCode).toBe(200)
    expect(byId.json()).toEqual(ng)
    // The cluster can be named by id too.
    const viaClusterId = await getJson(app, group(createOp.resource.id, 'workers'))
    expect(viaClusterId).toEqual(ng)
  })

  it('an unknown node group or cluster is 404', async () => {
    expectProblem(await app.inject({ method: 'GET', url: group('reader', 'nope') }), 404)
    expectProblem(await app.inject({ method: 'GET', url: group('nope', 'workers') }), 404)
    expectProblem(await app.inject({ method: 'GET', url: groups('nope') }), 404)
  })
})

describe('adding a node group', () => {
  let addOp: OperationBody

  it('on a busy cluster → 409 naming the running operation', async () => {
    const create = await createClusterOk(app, 'team-a', 'adder')
    const res = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'extra', machineClass: 'm1.large', count: 2 },
    })
    const p = expectProblem(res, 409)
    expect(p.type).toBe('https://kiln.dev/problems/operation-in-progress')
    expect(p['operationId']).toBe(create.id)
    const list = await getJson<{ items: Json[] }>(app, groups('adder'))
    expect(list.items.map((ng) => ng.name)).toEqual(['workers'])
    await cancelOk(app, create.id)
  })

  it('after the create operation is cancelled → 202 with a nodegroup.create operation', async () => {
    const res = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'extra', machineClass: 'm1.large', count: 2, maxCount: 4, labels: { tier: 'batch' } },
    })
    expect(res.statusCode, res.body).toBe(202)
    addOp = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${addOp.id}`)
    expect(addOp).toMatchObject({
      kind: 'nodegroup.create',
      status: 'pending',
      resource: { kind: 'nodegroup', name: 'extra' },
    })
    expect(addOp.steps.map((s) => s.name)).toEqual([
      'reserve-capacity',
      'allocate-machines',
      'join-workers',
      'install-addons',
      'wait-healthy',
    ])
    const ng: Json = await getJson(app, group('adder', 'extra'))
    expect(ng).toMatchObject({
      id: addOp.resource.id,
      count: 2,
      minCount: 0,
      maxCount: 4,
      zones: ['zone-a', 'zone-b'],
      labels: { tier: 'batch' },
    })
    expect(ng.provenance).toMatchObject({ '/count': 'nodeGroup', '/minCount': 'default' })
    const cluster: Json = await getJson(app, '/v1/projects/team-a/clusters/adder')
    expect(cluster.activeOperationId).toBe(addOp.id)
  })

  it('while that runs, a second change is 409 naming it', async () => {
    const res = await resize('adder', 'workers', { count: 4 })
    expect(expectProblem(res, 409)['operationId']).toBe(addOp.id)
  })

  it('a taken name → 409 at /name; rules → 422 with pointers', async () => {
    await cancelOk(app, addOp.id)
    const taken = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'workers', machineClass: 'm1.large', count: 1 },
    })
    expect(pointersOf(expectProblem(taken, 409))).toEqual(['/name'])

    const unknownClass = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'odd', machineClass: 'm9.huge', count: 1 },
    })
    expect(pointersOf(expectProblem(unknownClass, 422))).toEqual(['/machineClass'])

    const wrongZone = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'odd', machineClass: 'gpu.a100x4', count: 1, zones: ['zone-b'] },
    })
    expect(pointersOf(expectProblem(wrongZone, 422))).toEqual(['/zones/0'])

    const bounds = await app.inject({
      method: 'POST',
      url: groups('adder'),
      payload: { name: 'odd', machineClass: 'm1.large', count: 5, maxCount: 4 },
    })
    expect(pointersOf(expectProblem(bounds, 422))).toEqual(['/count'])

    const incomplete = await app.inject({ method: 'POST', url: groups('adder'), payload: { name: 'odd' } })
    expect(expectProblem(incomplete, 422).errors!.length).toBe(2)

    const list = await getJson<{ items: Json[] }>(app, groups('adder'))
    expect(list.items.map((ng) => ng.name)).toEqual(['workers', 'extra'])
  })
})

describe('resizing', () => {
  beforeAll(async () => {
    await anIdleCluster(app, 'team-a', 'sizer')
  })

  it('outside [minCount, maxCount] → 422 at /count, nothing changes', async () => {
    for (const count of [11, 0]) {
      const p = expectProblem(await resize('sizer', 'workers', { count }), 422)
      expect(pointersOf(p)).toEqual(['/count'])
    }
    const ng: Json = await getJson(app, group('sizer', 'workers'))
    expect(ng.count).toBe(3)
  })

  it('machinesToRemove while scaling up → 422 at /machinesToRemove', async () => {
    const p = expectProblem(
      await resize('sizer', 'workers', { count: 5, machinesToRemove: ['sizer-workers-1'] }),
      422,
    )
    expect(pointersOf(p)).toContain('/machinesToRemove')
    // Naming a machine that is not in the group is also reported, at its index.
    expect(pointersOf(p)).toContain('/machinesToRemove/0')
  })

  it('count out of the schema’s range → 400', async () => {
    expectProblem(await resize('sizer', 'workers', { count: 1001 }), 400)
    expectProblem(await resize('sizer', 'workers', { count: -1 }), 400)
    expectProblem(await resize('sizer', 'workers', { count: 2.5 }), 400)
  })

  it('within bounds → 202 nodegroup.resize; the node group shows the new count and generation', async () => {
    const before = await app.inject({ method: 'GET', url: group('sizer', 'workers') })
    const res = await resize('sizer', 'workers', { count: 5 })
    expect(res.statusCode, res.body).toBe(202)
    const op: OperationBody = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
    expect(op).toMatchObject({
      kind: 'nodegroup.resize',
      status: 'pending',
      resource: { kind: 'nodegroup', name: 'workers', id: before.json().id },
    })
    const after = await app.inject({ method: 'GET', url: group('sizer', 'workers') })
    const ng: Json = after.json()
    expect(ng.count).toBe(5)
    expect(ng.generation).toBe(2)
    expect(ng.provenance['/count']).toBe('nodeGroup')
    expect(after.headers.etag).not.toBe(before.headers.etag)

    // Busy now.
    expect(expectProblem(await resize('sizer', 'workers', { count: 6 }), 409)['operationId']).toBe(op.id)
    await cancelOk(app, op.id)
  })

  it('an unknown node group is 404', async () => {
    expectProblem(await resize('sizer', 'nope', { count: 2 }), 404)
  })
})

describe('PATCH a node group', () => {
  beforeAll(async () => {
    await anIdleCluster(app, 'team-a', 'patcher')
  })

  it('labels with If-Match: current ETag → 200 and a new ETag; stale → 412', async () => {
    const get = await app.inject({ method: 'GET', url: group('patcher', 'workers') })
    const e1 = get.headers.etag as string
    const res = await app.inject({
      method: 'PATCH',
      url: group('patcher', 'workers'),
      headers: { 'if-match': e1 },
      payload: { labels: { tier: 'gold' }, maxCount: 12 },
    })
    expect(res.statusCode, res.body).toBe(200)
    const e2 = res.headers.etag as string
    expect(e2).toMatch(/^"\d+"$/)
    expect(e2).not.toBe(e1)
    const ng: Json = res.json()
    expect(ng.labels).toEqual({ tier: 'gold' })
    expect(ng.maxCount).toBe(12)
    expect(ng.count).toBe(3)
    expect(ng.provenance['/labels']).toBe('nodeGroup')
    expect(ng.provenance['/maxCount']).toBe('nodeGroup')
    expect((await app.inject({ method: 'GET', url: group('patcher', 'workers') })).headers.etag).toBe(e2)

    const stale = await app.inject({
      method: 'PATCH',
      url: group('patcher', 'workers'),
      headers: { 'if-match': e1 },
      payload: { labels: { tier: 'bronze' } },
    })
    const p = expectProblem(stale, 412)
    expect(p['currentETag']).toBe(e2)
    const unchanged: Json = await getJson(app, group('patcher', 'workers'))
    expect(unchanged.labels).toEqual({ tier: 'gold' })
  })

  it('name, machineClass, count and features are not patchable → 400 naming the field', async () => {
    for (const field of ['count', 'machineClass', 'name', 'features']) {
      const value = field === 'count' ? 4 : field === 'features' ? {} : 'x'
      const res = await app.inject({
        method: 'PATCH',
        url: group('patcher', 'workers'),
        payload: { [field]: value },
      })
      expect(pointersOf(expectProblem(res, 400))).toContain(`/${field}`)
    }
  })

  it('bounds that exclude the current count → 422', async () => {
    const res = await app.inject({
      method: 'PATCH',
      url: group('patcher', 'workers'),
      payload: { minCount: 20 },
    })
    expect(pointersOf(expectProblem(res, 422))).toEqual(['/minCount'])
  })
})

describe('deleting a node group', () => {
  it('on a busy cluster → 409; when idle → 202 nodegroup.delete', async () => {
    const create = await createClusterOk(app, 'team-a', 'shrinker', {
      nodeGroups: [{ name: 'spare', machineClass: 'm1.large', count: 1 }],
    })
    const busy = await app.inject({ method: 'DELETE', url: group('shrinker', 'spare') })
    expect(expectProblem(busy, 409)['operationId']).toBe(create.id)

    await cancelOk(app, create.id)
    const res = await app.inject({ method: 'DELETE', url: group('shrinker', 'spare') })
    expect(res.statusCode, res.body).toBe(202)
    const op: OperationBody = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
    expect(op).toMatchObject({
      kind: 'nodegroup.delete',
      status: 'pending',
      resource: { kind: 'nodegroup', name: 'spare' },
    })
    expect(op.steps.map((s) => s.name)).toEqual(['drain-workers', 'release-machines', 'install-addons'])
    const cluster: Json = await getJson(app, '/v1/projects/team-a/clusters/shrinker')
    expect(cluster.activeOperationId).toBe(op.id)

    expectProblem(await app.inject({ method: 'DELETE', url: group('shrinker', 'nope') }), 404)
  })
})

describe('deleting a node group with If-Match', () => {
  it('a stale ETag → 412 and the group stays; the current one → 202', async () => {
    await anIdleCluster(app, 'team-a', 'guarded')
    const e1 = (await app.inject({ method: 'GET', url: group('guarded', 'workers') })).headers.etag as string
    const patched = await app.inject({
      method: 'PATCH',
      url: group('guarded', 'workers'),
      payload: { labels: { tier: 'gold' } },
    })
    expect(patched.statusCode, patched.body).toBe(200)
    const e2 = patched.headers.etag as string

    const stale = await app.inject({
      method: 'DELETE',
      url: group('guarded', 'workers'),
      headers: { 'if-match': e1 },
    })
    expect(expectProblem(stale, 412)['currentETag']).toBe(e2)
    const cluster: Json = await getJson(app, '/v1/projects/team-a/clusters/guarded')
    expect(cluster.activeOperationId).toBeNull()

    const res = await app.inject({
      method: 'DELETE',
      url: group('guarded', 'workers'),
      headers: { 'if-match': e2 },
    })
    expect(res.statusCode, res.body).toBe(202)
    expect((res.json() as OperationBody).kind).toBe('nodegroup.delete')
  })
})
