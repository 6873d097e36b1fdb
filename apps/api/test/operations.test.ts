import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import {
  cancelOk,
  cancelOperation,
  createClusterOk,
  expectProblem,
  getJson,
  type OperationBody,
} from './helpers.ts'

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  await aDataCentre(api.db)
  await aProject(api.db, 'ops')
})

afterAll(async () => {
  await api?.close()
})

const opUrl = (id: string) => `/v1/operations/${id}`
type Page = { items: OperationBody[]; nextCursor: string | null }

describe('GET /v1/operations/{id}', () => {
  it('returns the operation as the 202 did', async () => {
    const created = await createClusterOk(app, 'team-a', 'watched')
    const res = await app.inject({ method: 'GET', url: opUrl(created.id) })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual(created)
  })

  it('?wait=1s on a pending operation holds the request ≈1 s, then answers with its state', async () => {
    const created = await createClusterOk(app, 'team-a', 'slow')
    const started = performance.now()
    const res = await app.inject({ method: 'GET', url: `${opUrl(created.id)}?wait=1s` })
    const elapsed = performance.now() - started
    expect(res.statusCode).toBe(200)
    expect(res.json().status).toBe('pending')
    expect(elapsed).toBeGreaterThanOrEqual(900)
    expect(elapsed).toBeLessThan(5_000)
  })

  it('?wait=… returns as soon as the operation finishes', async () => {
    const created = await createClusterOk(app, 'team-a', 'finishing')
    const started = performance.now()
    const waiting = app.inject({ method: 'GET', url: `${opUrl(created.id)}?wait=10s` })
    await new Promise((resolve) => setTimeout(resolve, 300))
    await cancelOk(app, created.id)
    const res = await waiting
    const elapsed = performance.now() - started
    expect(res.json().status).toBe('cancelled')
    expect(elapsed).toBeGreaterThanOrEqual(250)
    // Well before the 10 s it would have waited, with room for a busy machine's slow cancel.
    expect(elapsed).toBeLessThan(8_000)
  })

  it('?wait=… on a finished operation answers at once', async () => {
    const created = await createClusterOk(app, 'team-a', 'done-already')
    await cancelOk(app, created.id)
    const started = performance.now()
    const res = await app.inject({ method: 'GET', url: `${opUrl(created.id)}?wait=30s` })
    const elapsed = performance.now() - started
    expect(res.statusCode).toBe(200)
    expect(res.json().status).toBe('cancelled')
    // Not the 30 s it may wait, with room for a busy machine.
    expect(elapsed).toBeLessThan(5_000)
  })

  it('accepts 500ms, plain seconds and minutes', async () => {
    const created = await createClusterOk(app, 'team-a', 'formats')
    await cancelOk(app, created.id)
    for (const wait of ['500ms', '2', '1m', '0']) {
      const res = await app.inject({ method: 'GET', url: `${opUrl(created.id)}?wait=${wait}` })
      expect(res.statusCode, `${wait}: ${res.body}`).toBe(200)
    }
  })

  it('a bad wait value → 400 pointing into the query', async () => {
    const created = await createClusterOk(app, 'team-a', 'bad-wait')
    for (const wait of ['forever', '-1s', '1h', '1.5s', '999999s']) {
      const res = await app.inject({ method: 'GET', url: `${opUrl(created.id)}?wait=${wait}` })
      const p = expectProblem(res, 400)
      expect(p.errors).toEqual([expect.objectContaining({ pointer: '/wait', in: 'query' })])
    }
  })

  it('an unknown id is 404; a malformed id is 400 pointing into the path', async () => {
    expectProblem(
      await app.inject({ method: 'GET', url: opUrl('00000000-0000-4000-8000-000000000000') }),
      404,
    )
    const p = expectProblem(await app.inject({ method: 'GET', url: opUrl('not-a-uuid') }), 400)
    expect(p.errors).toEqual([expect.objectContaining({ pointer: '/operation', in: 'path' })])
  })
})

describe('POST /v1/operations/{id}/cancel', () => {
  it('cancels a pending operation at once and frees its cluster; a second cancel is 409', async () => {
    const created = await createClusterOk(app, 'team-a', 'cancel-me')
    const first = await cancelOperation(app, created.id)
    expect(first.statusCode).toBe(200)
    const op: OperationBody = first.json()
    expect(op).toMatchObject({ id: created.id, status: 'cancelled', cancelRequested: true })
    expect(op.steps.every((s) => s.status === 'skipped')).toBe(true)
    expect((await getJson(app, '/v1/projects/team-a/clusters/cancel-me'))['activeOperationId']).toBeNull()

    const second = await cancelOperation(app, created.id)
    const p = expectProblem(second, 409)
    expect(p.type).toBe('https://kiln.dev/problems/conflict')
    expect(p['operationStatus']).toBe('cancelled')
    expect((await getJson<OperationBody>(app, opUrl(created.id))).status).toBe('cancelled')
  })

  it('a running operation is only asked to stop', async () => {
    const created = await createClusterOk(app, 'team-a', 'running')
    await api.db.operation.update({
      where: { id: created.id },
      data: { status: 'running', startedAt: new Date() },
    })
    const res = await cancelOperation(app, created.id)
    expect(res.statusCode).toBe(200)
    expect(res.json()).toMatchObject({ status: 'running', cancelRequested: true })
    // The cluster stays busy until the worker stops the operation.
    expect((await getJson(app, '/v1/projects/team-a/clusters/running'))['activeOperationId']).toBe(created.id)
  })

  it('an unknown operation is 404', async () => {
    expectProblem(await cancelOperation(app, '00000000-0000-4000-8000-000000000000'), 404)
  })
})

describe('GET /v1/projects/{project}/operations', () => {
  let a1: OperationBody
  let b1: OperationBody
  let a2: OperationBody

  beforeAll(async () => {
    a1 = await createClusterOk(app, 'ops', 'alpha')
    b1 = await createClusterOk(app, 'ops', 'beta')
    await cancelOk(app, a1.id)
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/ops/clusters/alpha/nodegroups/workers/resize',
      payload: { count: 4 },
    })
    expect(res.statusCode, res.body).toBe(202)
    a2 = res.json()
  })

  const list = (query = '') => getJson<Page>(app, `/v1/projects/ops/operations${query}`)
  const ids = (page: Page) => page.items.map((o) => o.id)

  it('lists the project’s operations oldest first', async () => {
    const page = await list()
    expect(ids(page)).toEqual([a1.id, b1.id, a2.id])
    expect(page.nextCursor).toBeNull()
    for (const op of page.items) expect(op.project).toBe('ops')
  })

  it('filters by cluster (name or id) and by status, combined with AND', async () => {
    expect(ids(await list('?cluster=alpha'))).toEqual([a1.id, a2.id])
    expect(ids(await list(`?cluster=${b1.resource.id}`))).toEqual([b1.id])
    expect(ids(await list('?status=cancelled'))).toEqual([a1.id])
    expect(ids(await list('?status=pending'))).toEqual([b1.id, a2.id])
    expect(ids(await list('?cluster=alpha&status=pending'))).toEqual([a2.id])
    expect(ids(await list('?cluster=beta&status=cancelled'))).toEqual([])
    expect(ids(await list('?status=succeeded'))).toEqual([])
  })

  it('paginates by cursor', async () => {
    const first = await list('?limit=2')
    expect(ids(first)).toEqual([a1.id, b1.id])
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = await list(`?limit=2&cursor=${encodeURIComponent(first.nextCursor!)}`)
    expect(ids(second)).toEqual([a2.id])
    expect(second.nextCursor).toBeNull()
  })

  it('does not show other projects’ operations', async () => {
    const page = await getJson<Page>(app, '/v1/projects/team-a/operations?limit=500')
    expect(ids(page)).not.toContain(a1.id)
    expect(ids(page)).not.toContain(b1.id)
    // A cluster of another project is not found through this one.
    expectProblem(
      await app.inject({ method: 'GET', url: '/v1/projects/team-a/operations?cluster=alpha' }),
      404,
    )
  })

  it('bad filters → 400; unknown project → 404', async () => {
    const p = expectProblem(
      await app.inject({ method: 'GET', url: '/v1/projects/ops/operations?status=done' }),
      400,
    )
    expect(p.errors).toEqual([expect.objectContaining({ pointer: '/status', in: 'query' })])
    expectProblem(await app.inject({ method: 'GET', url: '/v1/projects/nope/operations' }), 404)
  })
})
