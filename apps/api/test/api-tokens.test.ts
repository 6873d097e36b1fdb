import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiTokenPattern, createApiToken } from '../../../packages/db/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import { buildApp, type KilnApp } from '../src/app.ts'
import { expectProblem } from './helpers.ts'

// API tokens for CI, against the real API in `required` mode (no credentials → 401): created by a
// project admin and shown once, used as `Authorization: Bearer`, listed with their last use but never
// their secret, revoked, expired. Every refusal is a 401 problem+json with a Bearer challenge and
// changes nothing.

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let app: KilnApp
let adminToken: string
let adminTokenId: string
/** Every token plaintext handed out in this file, for the database scan. */
const issued: string[] = []

const day = 24 * 3600 * 1000
const inDays = (n: number) => new Date(Date.now() + n * day).toISOString()
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function createToken(
  as: string,
  body: Record<string, unknown>,
  project = 'team-a',
): Promise<LightMyRequestResponse> {
  const res = await app.inject({
    method: 'POST',
    url: `/v1/projects/${project}/tokens`,
    headers: bearer(as),
    payload: body,
  })
  if (res.statusCode === 201) issued.push((res.json() as Json).token)
  return res
}

async function createTokenOk(body: Record<string, unknown>): Promise<{ id: string; token: string }> {
  const res = await createToken(adminToken, { expiresAt: inDays(30), ...body })
  expect(res.statusCode, res.body).toBe(201)
  return res.json() as Json
}

/** A 401 with a Bearer challenge: `invalid_token` when a token was presented. */
function expectUnauthenticated(res: LightMyRequestResponse, tokenPresented: boolean) {
  const problem = expectProblem(res, 401)
  expect(problem.type).toBe('https://kiln.dev/problems/unauthenticated')
  const challenge = String(res.headers['www-authenticate'])
  expect(challenge).toMatch(/^Bearer realm="kiln"/)
  if (tokenPresented) expect(challenge).toContain('error="invalid_token"')
  else expect(challenge).not.toContain('error=')
  return problem
}

/** Counts of everything a request could write. */
async function writes() {
  const [clusters, operations, audit, idempotency, tokens, members] = await Promise.all([
    api.db.cluster.count(),
    api.db.operation.count(),
    api.db.auditEvent.count(),
    api.db.idempotencyRecord.count(),
    api.db.apiToken.count(),
    api.db.projectMember.count(),
  ])
  return { clusters, operations, audit, idempotency, tokens, members }
}

beforeAll(async () => {
  api = await startTestApi({ app: { authentication: 'required' } })
  app = api.app
  const { project } = await aDataCentre(api.db)
  await aProject(api.db, 'team-b')
  // The first credential of a project without OIDC comes from outside the API: the same function the
  // route uses, in a transaction of its own.
  const created = await api.db.$transaction((tx) =>
    createApiToken(
      tx,
      { subject: 'user:bootstrap', requestId: 'test' },
      {
        projectId: project.id,
        name: 'bootstrap-admin',
        role: 'admin',
        expiresAt: new Date(Date.now() + 364.5 * day),
      },
    ),
  )
  adminToken = created.plaintext
  adminTokenId = created.token.id
  issued.push(adminToken)
})

afterAll(async () => {
  await api?.close()
})

describe('a token’s life', () => {
  let ci: { id: string; token: string }

  it('is created by a project admin and shown once (201, no-store, the kiln_ format)', async () => {
    const res = await createToken(adminToken, { name: 'ci', role: 'member', expiresAt: inDays(90) })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.headers['cache-control']).toBe('no-store')
    const body = res.json() as Json
    expect(body.token).toMatch(apiTokenPattern)
    expect(body).toMatchObject({
      name: 'ci',
      role: 'member',
      project: 'team-a',
      state: 'active',
      lastUsedAt: null,
    })
    expect(body.token.startsWith(`${body.prefix}_`)).toBe(true)
    expect(body.createdBy).toBe(`token:${adminTokenId}`)
    expect(body).not.toHaveProperty('secretHash')
    expect(res.headers.location).toBe(`/v1/projects/team-a/tokens/${body.id}`)
    ci = body
  })

  it('authenticates as a project member: reads and creates clusters in its project', async () => {
    const list = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/clusters',
      headers: bearer(ci.token),
    })
    expect(list.statusCode, list.body).toBe(200)
    const create = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters',
      headers: bearer(ci.token),
      payload: { name: 'from-ci', template: 'k8s-1.31' },
    })
    expect(create.statusCode, create.body).toBe(202)
    const audit = await api.db.auditEvent.findFirstOrThrow({ where: { action: 'cluster.create' } })
    expect(audit.actor).toBe(`token:${ci.id}`)
    expect(audit.projectId).toBe((await api.db.project.findUniqueOrThrow({ where: { name: 'team-a' } })).id)
  })

  it('sees only its own project', async () => {
    const projects = await app.inject({ method: 'GET', url: '/v1/projects', headers: bearer(ci.token) })
    expect((projects.json() as Json).items.map((p: Json) => p.name)).toEqual(['team-a'])
    const other = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-b/clusters',
      headers: bearer(ci.token),
    })
    expect(expectProblem(other, 404).detail).toBe("project 'team-b' was not found.")
  })

  it('may not do what its role does not allow (403 in its own project)', async () => {
    const res = await createToken(ci.token, { name: 'escalate', role: 'admin', expiresAt: inDays(1) })
    expect(expectProblem(res, 403).type).toBe('https://kiln.dev/problems/forbidden')
    const tokens = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/tokens',
      headers: bearer(ci.token),
    })
    expectProblem(tokens, 403)
  })

  it('is listed with its last use, never its secret', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/tokens',
      headers: bearer(adminToken),
    })
    expect(res.statusCode, res.body).toBe(200)
    const items = (res.json() as Json).items as Json[]
    const listed = items.find((t) => t.id === ci.id)
    expect(listed).toMatchObject({
      name: 'ci',
      role: 'member',
      state: 'active',
      prefix: ci.token.slice(0, 13),
    })
    expect(Date.parse(listed.lastUsedAt)).toBeGreaterThan(Date.now() - 60_000)
    for (const item of items) {
      expect(Object.keys(item).sort()).toEqual(
        [
          'createdAt',
          'createdBy',
          'expiresAt',
          'id',
          'lastUsedAt',
          'name',
          'prefix',
          'project',
          'revokedAt',
          'role',
          'state',
        ].sort(),
      )
    }
    for (const token of issued) expect(res.body).not.toContain(token.slice(14))
  })

  it('records its use at most once a minute', async () => {
    const before = await api.db.apiToken.findUniqueOrThrow({ where: { id: ci.id } })
    expect(before.lastUsedAt).not.toBeNull()
    for (let i = 0; i < 3; i++) {
      await app.inject({ method: 'GET', url: '/v1/projects/team-a', headers: bearer(ci.token) })
    }
    const after = await api.db.apiToken.findUniqueOrThrow({ where: { id: ci.id } })
    expect(after.lastUsedAt).toEqual(before.lastUsedAt)
    // A minute later, the next use is recorded.
    const earlier = new Date(Date.now() - 61_000)
    await api.db.apiToken.update({ where: { id: ci.id }, data: { lastUsedAt: earlier } })
    await app.inject({ method: 'GET', url: '/v1/projects/team-a', headers: bearer(ci.token) })
    const later = await api.db.apiToken.findUniqueOrThrow({ where: { id: ci.id } })
    expect(later.lastUsedAt!.getTime()).toBeGreaterThan(earlier.getTime() + 30_000)
  })

  it('is revoked (204, idempotent, audited once) and then refused with 401', async () => {
    const revoke = () =>
      app.inject({
        method: 'DELETE',
        url: `/v1/projects/team-a/tokens/${ci.id}`,
        headers: bearer(adminToken),
      })
    expect((await revoke()).statusCode).toBe(204)
    expect((await revoke()).statusCode).toBe(204)
    const byName = await app.inject({
      method: 'DELETE',
      url: '/v1/projects/team-a/tokens/ci',
      headers: bearer(adminToken),
    })
    expect(byName.statusCode).toBe(204)
    expect(await api.db.auditEvent.count({ where: { action: 'token.revoke', targetId: ci.id } })).toBe(1)
    const used = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/clusters',
      headers: bearer(ci.token),
    })
    expect(expectUnauthenticated(used, true).detail).toMatch(/revoked/)
    const list = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/tokens',
      headers: bearer(adminToken),
    })
    const listed = ((list.json() as Json).items as Json[]).find((t) => t.id === ci.id)
    expect(listed.state).toBe('revoked')
    expect(listed.revokedAt).not.toBeNull()
  })

  it('revoking a token that does not exist is 404', async () => {
    const res = await app.inject({
      method: 'DELETE',
      url: '/v1/projects/team-a/tokens/0b7c2a3e-9d44-4d1a-9a43-52f0f3c2a1b0',
      headers: bearer(adminToken),
    })
    expectProblem(res, 404)
  })
})

describe('refusals', () => {
  it('an expired token is 401', async () => {
    const t = await createTokenOk({ name: 'short-lived', role: 'viewer', expiresAt: inDays(1) })
    const ok = await app.inject({ method: 'GET', url: '/v1/projects/team-a', headers: bearer(t.token) })
    expect(ok.statusCode).toBe(200)
    await api.db.apiToken.update({ where: { id: t.id }, data: { expiresAt: new Date(Date.now() - 1000) } })
    const res = await app.inject({ method: 'GET', url: '/v1/projects/team-a', headers: bearer(t.token) })
    expect(expectUnauthenticated(res, true).detail).toMatch(/expired/)
    const list = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/tokens',
      headers: bearer(adminToken),
    })
    expect(((list.json() as Json).items as Json[]).find((x) => x.id === t.id).state).toBe('expired')
  })

  it('malformed and unknown credentials are 401 with invalid_token', async () => {
    const real = await createTokenOk({ name: 'real', role: 'viewer' })
    const secret = real.token.slice(14)
    const cases = [
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      'Bearer not-a-token',
      'Bearer kiln_',
      `Bearer kiln_00000000_${'0'.repeat(64)}`,
      // The right secret behind another token's public part.
      `Bearer kiln_00000000_${secret}`,
      `Bearer ${real.token}x`,
      `Bearer ${real.token.toUpperCase()}`,
      'Bearer a.b.c',
    ]
    for (const authorization of cases) {
      const res = await app.inject({ method: 'GET', url: '/v1/projects/team-a', headers: { authorization } })
      expectUnauthenticated(res, true)
    }
  })

  it('no credentials is 401 with a bare Bearer challenge, on every kind of route', async () => {
    for (const url of [
      '/v1/projects',
      '/v1/templates',
      '/v1/projects/team-a/clusters',
      '/v1/projects/nope',
    ]) {
      expectUnauthenticated(await app.inject({ method: 'GET', url }), false)
    }
    // HEAD shares its GET's permission.
    const head = await app.inject({ method: 'HEAD', url: '/v1/projects/team-a' })
    expect(head.statusCode).toBe(401)
    expect(head.headers['www-authenticate']).toBe('Bearer realm="kiln"')
    // Public routes need nothing.
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200)
  })

  it('a refused request changes nothing, whatever its body', async () => {
    const revoked = await createTokenOk({ name: 'revoked-writer', role: 'member' })
    await app.inject({
      method: 'DELETE',
      url: `/v1/projects/team-a/tokens/${revoked.id}`,
      headers: bearer(adminToken),
    })
    const before = await writes()
    const attempts: { authorization?: string }[] = [
      {},
      { authorization: 'Bearer kiln_deadbeef_' + 'f'.repeat(64) },
      { authorization: `Bearer ${revoked.token}` },
      { authorization: 'Bearer garbage' },
    ]
    for (const headers of attempts) {
      const requests = [
        {
          method: 'POST',
          url: '/v1/projects/team-a/clusters',
          payload: { name: 'nope', template: 'k8s-1.31' },
        },
        {
          method: 'POST',
          url: '/v1/projects/team-a/tokens',
          payload: { name: 'x', role: 'admin', expiresAt: inDays(1) },
        },
        {
          method: 'POST',
          url: '/v1/projects/team-a/members',
          payload: { kind: 'user', name: 'mallory', role: 'admin' },
        },
        { method: 'POST', url: '/v1/projects', payload: { name: 'sneaky' } },
        { method: 'DELETE', url: `/v1/projects/team-a/tokens/${adminTokenId}` },
        // Not even a malformed body gets past authentication.
        { method: 'POST', url: '/v1/projects/team-a/clusters', payload: '{not json' },
      ] as const
      for (const r of requests) {
        const res = await app.inject({
          method: r.method,
          url: r.url,
          headers: { ...headers, 'idempotency-key': `refused-${r.url}`, 'content-type': 'application/json' },
          ...('payload' in r ? { payload: r.payload } : {}),
        })
        expectUnauthenticated(res, headers.authorization !== undefined)
      }
    }
    expect(await writes()).toEqual(before)
    const admin = await api.db.apiToken.findUniqueOrThrow({ where: { id: adminTokenId } })
    expect(admin.revokedAt).toBeNull()
  })
})

describe('creation rules', () => {
  it('requires an expiry in the future, at most a year away', async () => {
    expectProblem(await createToken(adminToken, { name: 'no-expiry', role: 'viewer' }), 400)
    const past = expectProblem(
      await createToken(adminToken, {
        name: 'past',
        role: 'viewer',
        expiresAt: new Date(Date.now() - 1000).toISOString(),
      }),
      422,
    )
    expect(past.errors?.map((e) => e.pointer)).toEqual(['/expiresAt'])
    const far = expectProblem(
      await createToken(adminToken, { name: 'far', role: 'viewer', expiresAt: inDays(366) }),
      422,
    )
    expect(far.errors?.[0]?.message).toMatch(/365 days/)
    expect(
      (await createToken(adminToken, { name: 'a-year', role: 'viewer', expiresAt: inDays(364) })).statusCode,
    ).toBe(201)
  })

  it('a token made with a token may not outlive it', async () => {
    // Within the year, but after the admin token this request is made with.
    const res = await createToken(adminToken, { name: 'outlives', role: 'viewer', expiresAt: inDays(364.8) })
    const problem = expectProblem(res, 422)
    expect(problem.errors?.[0]).toMatchObject({ pointer: '/expiresAt' })
  })

  it('names are unique in a project (409), revoked ones included', async () => {
    await createTokenOk({ name: 'dup', role: 'viewer' })
    expectProblem(await createToken(adminToken, { name: 'dup', role: 'viewer', expiresAt: inDays(1) }), 409)
  })

  it('refuses an Idempotency-Key: the answer holds a secret that is never stored', async () => {
    const before = await writes()
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/tokens',
      headers: { ...bearer(adminToken), 'idempotency-key': 'tok-1' },
      payload: { name: 'replayed', role: 'viewer', expiresAt: inDays(1) },
    })
    expect(expectProblem(res, 400).errors?.[0]?.pointer).toBe('/Idempotency-Key')
    expect(await writes()).toEqual(before)
  })

  it('is audited with the creator as actor, without the secret', async () => {
    const t = await createTokenOk({ name: 'audited', role: 'member' })
    const row = await api.db.auditEvent.findFirstOrThrow({
      where: { action: 'token.create', targetId: t.id },
    })
    expect(row.actor).toBe(`token:${adminTokenId}`)
    expect(row.data).toMatchObject({ name: 'audited', role: 'member', prefix: t.token.slice(0, 13) })
  })
})

describe('the embedded single-user mode (buildApp’s default)', () => {
  let local: KilnApp
  beforeAll(async () => {
    local = await buildApp({ db: api.db, redis: api.redis })
  })
  afterAll(async () => {
    await local?.close()
  })

  it('takes a request without credentials for the local operator, and still checks presented ones', async () => {
    const anon = await local.inject({ method: 'GET', url: '/v1/projects' })
    expect((anon.json() as Json).items.map((p: Json) => p.name).sort()).toEqual(['team-a', 'team-b'])
    expectUnauthenticated(
      await local.inject({ method: 'GET', url: '/v1/projects', headers: bearer('junk') }),
      true,
    )
    const viewer = await createTokenOk({ name: 'local-viewer', role: 'viewer' })
    const asToken = await local.inject({ method: 'GET', url: '/v1/projects', headers: bearer(viewer.token) })
    expect((asToken.json() as Json).items.map((p: Json) => p.name)).toEqual(['team-a'])
  })
})

describe('the database', () => {
  it('holds no token in plaintext, in any text or JSON column of any table', async () => {
    // Leave traces everywhere a token could leak to: audit rows, idempotency records, operations.
    const t = await createTokenOk({ name: 'scan-me', role: 'member' })
    await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters',
      headers: { ...bearer(t.token), 'idempotency-key': 'scan-1' },
      payload: { name: 'scanned', template: 'k8s-1.31' },
    })
    expect(issued.length).toBeGreaterThan(8)
    const needles = issued.flatMap((token) => [token, token.slice(14)])
    const columns = await api.db.$queryRawUnsafe<
      { table_schema: string; table_name: string; column_name: string; data_type: string }[]
    >(
      `SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
       WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
         AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')`,
    )
    expect(columns.some((c) => c.table_name === 'ApiToken' && c.column_name === 'secretHash')).toBe(true)
    const found: string[] = []
    for (const c of columns) {
      const column = `"${c.table_schema}"."${c.table_name}"."${c.column_name}"`
      const value =
        c.data_type === 'bytea' ? `encode("${c.column_name}", 'escape')` : `"${c.column_name}"::text`
      const hits = await api.db.$queryRawUnsafe<{ n: bigint }[]>(
        `SELECT count(*) AS n FROM "${c.table_schema}"."${c.table_name}" WHERE ${value} LIKE ANY ($1)`,
        needles.map((n) => `%${n}%`),
      )
      if (Number(hits[0]!.n) > 0) found.push(column)
    }
    expect(found).toEqual([])
    // The hashes are there, and they are not the secrets.
    expect(await api.db.apiToken.count()).toBeGreaterThanOrEqual(issued.length)
  })
})
