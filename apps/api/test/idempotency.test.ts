import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { createCluster, expectProblem, type OperationBody, pointersOf } from './helpers.ts'

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

const clustersNamed = (name: string) => api.db.cluster.count({ where: { name } })

describe('Idempotency-Key on POST', () => {
  it('the same key and body twice → the first response replayed, one cluster', async () => {
    const body = { name: 'retry-me', template: 'k8s-1.31', labels: { ci: '4711' } }
    const headers = { 'idempotency-key': 'ci-4711-create' }
    const first = await createCluster(app, 'team-a', body, headers)
    expect(first.statusCode, first.body).toBe(202)
    expect(first.headers['idempotent-replayed']).toBeUndefined()

    const second = await createCluster(app, 'team-a', body, headers)
    expect(second.statusCode).toBe(first.statusCode)
    expect(second.json()).toEqual(first.json())
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(second.headers.location).toBe(first.headers.location)
    expect(second.headers['content-type']).toMatch(/^application\/json/)

    expect(await clustersNamed('retry-me')).toBe(1)
    expect(
      await api.db.operation.count({ where: { resource: { path: ['name'], equals: 'retry-me' } } }),
    ).toBe(1)
  })

  it('without a key, a retry is a new request (409 for the taken name)', async () => {
    const body = { name: 'no-key', template: 'k8s-1.31' }
    expect((await createCluster(app, 'team-a', body)).statusCode).toBe(202)
    expectProblem(await createCluster(app, 'team-a', body), 409)
    expect(await clustersNamed('no-key')).toBe(1)
  })

  it('the same key with another body → 422 problem pointing at the header', async () => {
    const headers = { 'idempotency-key': 'reused-key' }
    const first = await createCluster(app, 'team-a', { name: 'first-body', template: 'k8s-1.31' }, headers)
    expect(first.statusCode).toBe(202)
    const res = await createCluster(app, 'team-a', { name: 'second-body', template: 'k8s-1.31' }, headers)
    const p = expectProblem(res, 422)
    expect(p.type).toBe('https://kiln.dev/problems/idempotency-key-reused')
    expect(p.errors).toEqual([expect.objectContaining({ pointer: '/Idempotency-Key', in: 'header' })])
    expect(res.headers['idempotent-replayed']).toBeUndefined()
    expect(await clustersNamed('second-body')).toBe(0)
  })

  it('the same key on another route is another request → 422', async () => {
    const headers = { 'idempotency-key': 'cross-route' }
    expect(
      (await createCluster(app, 'team-a', { name: 'cross', template: 'k8s-1.31' }, headers)).statusCode,
    ).toBe(202)
    const res = await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'cross' }, headers })
    expect(pointersOf(expectProblem(res, 422), 'header')).toEqual(['/Idempotency-Key'])
    expect(await api.db.project.count({ where: { name: 'cross' } })).toBe(0)
  })

  it('a rejected request is not recorded: the key may be retried with a corrected body', async () => {
    const headers = { 'idempotency-key': 'fix-and-retry' }
    const bad = await createCluster(
      app,
      'team-a',
      { name: 'fixed-later', template: 'k8s-1.31', features: { gpu: { enabled: true } } },
      headers,
    )
    expectProblem(bad, 422)
    const good = await createCluster(app, 'team-a', { name: 'fixed-later', template: 'k8s-1.31' }, headers)
    expect(good.statusCode, good.body).toBe(202)
    expect(good.headers['idempotent-replayed']).toBeUndefined()
    expect(await clustersNamed('fixed-later')).toBe(1)
  })

  it('10 concurrent identical requests with one key → one cluster, ten 202s with one operation id', async () => {
    const body = { name: 'stampede', template: 'k8s-1.31' }
    const headers = { 'idempotency-key': 'stampede-key' }
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => createCluster(app, 'team-a', body, headers)),
    )
    for (const r of responses) expect(r.statusCode, r.body).toBe(202)
    const ids = new Set(responses.map((r) => (r.json() as OperationBody).id))
    expect(ids.size).toBe(1)
    const replayed = responses.filter((r) => r.headers['idempotent-replayed'] === 'true')
    expect(replayed).toHaveLength(9)
    expect(new Set(responses.map((r) => r.headers.location)).size).toBe(1)
    expect(await clustersNamed('stampede')).toBe(1)
    expect(
      await api.db.operation.count({ where: { resource: { path: ['name'], equals: 'stampede' } } }),
    ).toBe(1)
  })

  it('replays other POST routes too (projects: 201 and the same body)', async () => {
    const headers = { 'idempotency-key': 'project-once' }
    const first = await app.inject({
      method: 'POST',
      url: '/v1/projects',
      payload: { name: 'once' },
      headers,
    })
    expect(first.statusCode).toBe(201)
    const second = await app.inject({
      method: 'POST',
      url: '/v1/projects',
      payload: { name: 'once' },
      headers,
    })
    expect(second.statusCode).toBe(201)
    expect(second.json()).toEqual(first.json())
    expect(second.headers['idempotent-replayed']).toBe('true')
    expect(await api.db.project.count({ where: { name: 'once' } })).toBe(1)
  })

  it('an invalid key → 400 problem pointing at the header, and nothing is written', async () => {
    for (const key of ['k'.repeat(300), 'has space', 'tab\there']) {
      const before = await api.db.cluster.count()
      const res = await createCluster(
        app,
        'team-a',
        { name: 'bad-key', template: 'k8s-1.31' },
        { 'idempotency-key': key },
      )
      const p = expectProblem(res, 400)
      expect(p.errors).toEqual([expect.objectContaining({ pointer: '/Idempotency-Key', in: 'header' })])
      expect(await api.db.cluster.count()).toBe(before)
    }
    // 255 visible characters is the longest accepted key.
    const ok = await createCluster(
      app,
      'team-a',
      { name: 'long-key', template: 'k8s-1.31' },
      { 'idempotency-key': 'k'.repeat(255) },
    )
    expect(ok.statusCode).toBe(202)
  })
})
