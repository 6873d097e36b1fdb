import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiToken } from '../../../packages/db/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { expectProblem } from './helpers.ts'

// GET /v1/projects/{project}/audit: a project's mutations and credential issuances, with the actor
// (the user or token), for project admins; cursor-paginated both ways and filterable.

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let app: KilnApp
let projectId: string
const tokens: Record<'admin' | 'member' | 'viewer' | 'otherAdmin', { id: string; token: string }> =
  {} as never

const bearer = (name: keyof typeof tokens) => ({ authorization: `Bearer ${tokens[name].token}` })
const inDays = (n: number) => new Date(Date.now() + n * 24 * 3600 * 1000).toISOString()

async function audit(query = '', as: keyof typeof tokens = 'admin') {
  return app.inject({ method: 'GET', url: `/v1/projects/team-a/audit${query}`, headers: bearer(as) })
}

/** Every event a query returns, page by page. */
async function allPages(query: string, limit: number): Promise<Json[]> {
  const out: Json[] = []
  let cursor: string | null = null
  for (let pages = 0; pages < 100; pages++) {
    const sep = query ? '&' : '?'
    const res = await audit(`${query}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json() as Json
    expect(body.items.length).toBeLessThanOrEqual(limit)
    out.push(...body.items)
    cursor = body.nextCursor
    if (!cursor) return out
  }
  throw new Error('too many pages')
}

beforeAll(async () => {
  api = await startTestApi({ app: { authentication: 'required' } })
  app = api.app
  const { project } = await aDataCentre(api.db)
  projectId = project.id
  const other = await aProject(api.db, 'team-b')
  const bootstrap = (projectId: string, name: string) =>
    api.db.$transaction((tx) =>
      createApiToken(
        tx,
        { subject: 'user:bootstrap', requestId: 'setup' },
        { projectId, name, role: 'admin', expiresAt: new Date(Date.now() + 30 * 24 * 3600 * 1000) },
      ),
    )
  const admin = await bootstrap(project.id, 'admin')
  tokens.admin = { id: admin.token.id, token: admin.plaintext }
  const otherAdmin = await bootstrap(other.id, 'admin')
  tokens.otherAdmin = { id: otherAdmin.token.id, token: otherAdmin.plaintext }
  for (const role of ['member', 'viewer'] as const) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/tokens',
      headers: bearer('admin'),
      payload: { name: role, role, expiresAt: inDays(7) },
    })
    expect(res.statusCode, res.body).toBe(201)
    tokens[role] = res.json() as Json
  }
  // Mutations by three actors in team-a, and some in team-b that team-a's log must not show.
  for (const name of ['alice', 'bob', 'carol', 'dave']) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/members',
      headers: bearer('admin'),
      payload: { kind: 'user', name, role: 'viewer' },
    })
    expect(res.statusCode, res.body).toBe(201)
  }
  for (const name of ['ci-1', 'ci-2', 'ci-3']) {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters',
      headers: bearer('member'),
      payload: { name, template: 'k8s-1.31' },
    })
    expect(res.statusCode, res.body).toBe(202)
  }
  const bob = await api.db.projectMember.findFirstOrThrow({ where: { name: 'bob' } })
  const removed = await app.inject({
    method: 'DELETE',
    url: `/v1/projects/team-a/members/${bob.id}`,
    headers: bearer('admin'),
  })
  expect(removed.statusCode).toBe(204)
  await app.inject({
    method: 'POST',
    url: '/v1/projects/team-b/members',
    headers: bearer('otherAdmin'),
    payload: { kind: 'group', name: 'b-team', role: 'member' },
  })
})

afterAll(async () => {
  await api?.close()
})

describe('GET /v1/projects/{project}/audit', () => {
  it('records who did what: every mutation with its actor, project, target and request', async () => {
    const events = await allPages('', 500)
    // The first token was made outside the API (in setup), by `user:bootstrap`.
    expect(events.map((e) => e.action)).toEqual([
      'token.create',
      'token.create',
      'token.create',
      'member.add',
      'member.add',
      'member.add',
      'member.add',
      'cluster.create',
      'cluster.create',
      'cluster.create',
      'member.remove',
    ])
    expect(events[0]).toMatchObject({ actor: 'user:bootstrap', targetId: tokens.admin.id })
    for (const e of events.slice(1)) {
      expect(e.project).toBe('team-a')
      expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/)
      expect(e.actor).toBe(
        e.action === 'cluster.create' ? `token:${tokens.member.id}` : `token:${tokens.admin.id}`,
      )
    }
    const add = events.find((e) => e.action === 'member.add')
    expect(add).toMatchObject({ targetKind: 'member', data: { kind: 'user', name: 'alice', role: 'viewer' } })
    const rows = await api.db.auditEvent.count({ where: { projectId } })
    expect(rows).toBe(events.length)
  })

  it('pages through every event once, in (createdAt, id) order, both ways', async () => {
    const everything = await allPages('', 500)
    for (const limit of [1, 3, 4]) {
      const paged = await allPages('', limit)
      expect(paged.map((e) => e.id)).toEqual(everything.map((e) => e.id))
    }
    const desc = await allPages('?order=desc', 3)
    expect(desc.map((e) => e.id)).toEqual(everything.map((e) => e.id).reverse())
    const ids = everything.map((e) => BigInt(e.id))
    expect([...ids].sort((a, b) => (a < b ? -1 : 1))).toEqual(ids)
  })

  it('filters by action (exact or prefix), actor, target and time', async () => {
    const everything = await allPages('', 500)
    expect((await allPages('?action=member.add', 2)).map((e) => e.data.name)).toEqual([
      'alice',
      'bob',
      'carol',
      'dave',
    ])
    expect((await allPages('?action=member.*', 2)).map((e) => e.action)).toEqual([
      'member.add',
      'member.add',
      'member.add',
      'member.add',
      'member.remove',
    ])
    expect(await allPages('?action=member', 2)).toEqual([])
    const byMember = await allPages(`?actor=token:${tokens.member.id}`, 2)
    expect(byMember.map((e) => e.action)).toEqual(['cluster.create', 'cluster.create', 'cluster.create'])
    const cluster = byMember[1]
    const one = await allPages(`?targetKind=cluster&targetId=${cluster.targetId}`, 2)
    expect(one.map((e) => e.id)).toEqual([cluster.id])
    expect((await allPages('?targetKind=token', 2)).length).toBe(3)
    // since is inclusive, until exclusive.
    const pivot = everything[6]
    const since = await allPages(`?since=${encodeURIComponent(pivot.createdAt)}`, 3)
    expect(since.every((e) => e.createdAt >= pivot.createdAt)).toBe(true)
    expect(since.map((e) => e.id)).toContain(pivot.id)
    const until = await allPages(`?until=${encodeURIComponent(pivot.createdAt)}`, 3)
    expect(until.every((e) => e.createdAt < pivot.createdAt)).toBe(true)
    expect(since.length + until.length).toBe(everything.length)
    const future = await allPages(
      `?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`,
      3,
    )
    expect(future).toEqual([])
  })

  it('refuses a cursor it did not issue, and bad filters', async () => {
    expectProblem(await audit('?cursor=garbage'), 422)
    const other = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/members?limit=1',
      headers: bearer('admin'),
    })
    const foreign = (other.json() as Json).nextCursor as string
    expect(foreign).toBeTruthy()
    expectProblem(await audit(`?cursor=${foreign}`), 422)
    expectProblem(await audit('?since=yesterday'), 400)
    expectProblem(await audit('?order=sideways'), 400)
    expectProblem(await audit('?limit=0'), 400)
  })

  it('is for project admins: 403 for members and viewers, 404 for other projects', async () => {
    expectProblem(await audit('', 'member'), 403)
    expectProblem(await audit('', 'viewer'), 403)
    const other = expectProblem(await audit('', 'otherAdmin'), 404)
    expect(other.detail).toBe("project 'team-a' was not found.")
    const own = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-b/audit',
      headers: bearer('otherAdmin'),
    })
    expect((own.json() as Json).items.map((e: Json) => e.action)).toEqual(['token.create', 'member.add'])
  })
})
