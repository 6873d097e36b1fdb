import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseMasterKey } from '../../../packages/pki/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject, aTemplate } from '../../../test/support/builders.ts'
import {
  randomKey,
  signedToken,
  startTestIssuer,
  testAudience,
  testOidcSettings,
} from '../../../test/support/oidc.ts'
import type { RunningIssuer } from '../../issuer/src/index.ts'
import type { KilnApp } from '../src/app.ts'
import { OidcVerifier } from '../src/oidc.ts'
import { expectProblem } from './helpers.ts'

// Who may call what. The matrix is generated from the API's own OpenAPI document: every operation,
// called by each kind of caller, must answer what the permission it declares (`x-kiln-permission`)
// says, per the table below, written from the issue rather than from auth.ts. An operation without a
// permission, or with one the table does not know, fails. Callers are real: OIDC users with JWTs
// signed by an in-process issuer (oidc-provider), members through their subject or a group, and an
// API token.

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

type Role = 'viewer' | 'member' | 'admin'
type Rule =
  | { who: 'public' }
  | { who: 'authenticated' }
  | { who: 'platform-admin' }
  | { who: 'project'; role: Role; platformAdminToo?: true }

/** What each permission should demand, from the issue: viewer reads, member changes clusters, admin manages. */
const rules: Record<string, Rule> = {
  public: { who: 'public' },
  'self:read': { who: 'authenticated' },
  'catalogue:read': { who: 'authenticated' },
  'catalogue:write': { who: 'platform-admin' },
  'master-keys:rotate': { who: 'platform-admin' },
  'projects:read': { who: 'project', role: 'viewer' },
  'projects:write': { who: 'platform-admin' },
  'projects:delete': { who: 'project', role: 'admin' },
  'clusters:read': { who: 'project', role: 'viewer' },
  'clusters:write': { who: 'project', role: 'member' },
  'members:read': { who: 'project', role: 'viewer' },
  'members:write': { who: 'project', role: 'admin' },
  'tokens:read': { who: 'project', role: 'admin' },
  'tokens:write': { who: 'project', role: 'admin' },
  'audit:read': { who: 'project', role: 'admin' },
  'quotas:read': { who: 'project', role: 'admin' },
  'quotas:write': { who: 'project', role: 'admin', platformAdminToo: true },
}

/** Operations anyone may call without credentials. Making another one public is a decision: add it here. */
const publicOperations = new Set([
  'GET /healthz',
  'GET /readyz',
  'GET /v1/auth/login',
  'GET /v1/auth/callback',
  'POST /v1/auth/logout',
  'GET /v1/auth/me',
  // How to log in from the command line: which issuer and public client. Nothing secret.
  'GET /v1/auth/cli',
  // What a problem type means: the page its `type` URI names, for anyone holding an error.
  'GET /problems/{slug}',
])

type CallerName =
  | 'platformAdmin'
  | 'projectAdmin'
  | 'member'
  | 'viewer'
  | 'token'
  | 'otherProjectUser'
  | 'anonymous'
interface Caller {
  name: CallerName
  headers: Record<string, string>
  /** Role in team-a, the project every project route is called in. */
  role?: Role
  platformAdmin?: true
}

/** `public`: anything but a 5xx (what a public route answers is its own business, not authorization's). */
type Outcome = 'public' | 'allowed' | 401 | 403 | 404

function expected(rule: Rule, caller: Caller, inProject: boolean, permission: string): Outcome {
  if (rule.who === 'public') return 'public'
  if (caller.name === 'anonymous') return 401
  if (rule.who === 'authenticated') return 'allowed'
  if (rule.who === 'platform-admin') return caller.platformAdmin ? 'allowed' : 403
  if (!inProject) {
    // GET /v1/projects: a list of what the caller can see.
    if (permission === 'projects:read') return 'allowed'
    return caller.platformAdmin ? 'allowed' : 403
  }
  const role: Role | undefined = caller.platformAdmin ? 'admin' : caller.role
  if (!role) return 404
  if (rule.platformAdminToo && !caller.platformAdmin) return 403
  const rank = { viewer: 0, member: 1, admin: 2 }
  return rank[role] >= rank[rule.role] ? 'allowed' : 403
}

let api: TestApi
let app: KilnApp
let issuer: RunningIssuer
let teamA: { id: string }
let clusterId: string
const callers: Caller[] = []
const by = (name: CallerName) => callers.find((c) => c.name === name)!

async function jwt(sub: string, groups: string[] = []): Promise<Record<string, string>> {
  // oidc-provider's JWK type marks key_ops readonly; jose's does not.
  const key = issuer.keys()[0]! as Parameters<typeof signedToken>[0]
  const token = await signedToken(key, { iss: issuer.issuer, aud: testAudience, sub, groups })
  return { authorization: `Bearer ${token}` }
}

beforeAll(async () => {
  issuer = await startTestIssuer()
  const settings = testOidcSettings(issuer)
  const verifier = await OidcVerifier.discover(settings)
  api = await startTestApi({
    app: {
      authentication: 'required',
      platformAdminGroups: ['kiln-platform-admins'],
      oidc: { verifier, settings },
      masterKey: parseMasterKey(randomKey()),
    },
  })
  app = api.app
  const { project, backend } = await aDataCentre(api.db)
  teamA = project
  const teamB = await aProject(api.db, 'team-b')
  await aTemplate(api.db, backend.id, { name: 'team-a-private', projectId: project.id })
  const member = (projectId: string, kind: 'user' | 'group', name: string, role: Role) =>
    api.db.projectMember.create({ data: { projectId, kind, name, role, createdBy: 'test' } })
  await member(project.id, 'user', 'alice', 'admin')
  await member(project.id, 'group', 'team-a-devs', 'member')
  await member(project.id, 'user', 'victor', 'viewer')
  await member(teamB.id, 'user', 'olga', 'admin')

  callers.push(
    {
      name: 'platformAdmin',
      headers: await jwt('pat', ['kiln-platform-admins', 'unrelated']),
      platformAdmin: true,
    },
    { name: 'projectAdmin', headers: await jwt('alice'), role: 'admin' },
    { name: 'member', headers: await jwt('mike', ['team-a-devs']), role: 'member' },
    { name: 'viewer', headers: await jwt('victor'), role: 'viewer' },
    { name: 'otherProjectUser', headers: await jwt('olga', ['team-b-devs']) },
    { name: 'anonymous', headers: {} },
  )
  // The project admin makes the CI token through the API.
  const token = await app.inject({
    method: 'POST',
    url: '/v1/projects/team-a/tokens',
    headers: by('projectAdmin').headers,
    payload: { name: 'ci', role: 'member', expiresAt: new Date(Date.now() + 86_400_000).toISOString() },
  })
  expect(token.statusCode, token.body).toBe(201)
  callers.push({
    name: 'token',
    headers: { authorization: `Bearer ${(token.json() as Json).token}` },
    role: 'member',
  })

  const created = await app.inject({
    method: 'POST',
    url: '/v1/projects/team-a/clusters',
    headers: by('member').headers,
    payload: { name: 'c1', template: 'k8s-1.31' },
  })
  expect(created.statusCode, created.body).toBe(202)
  const op = created.json() as Json
  clusterId = op.resource.id
  const cancelled = await app.inject({
    method: 'POST',
    url: `/v1/operations/${op.id}/cancel`,
    headers: by('member').headers,
  })
  expect(cancelled.statusCode, cancelled.body).toBe(200)
})

afterAll(async () => {
  await api?.close()
  await issuer?.close()
})

interface DocOperation {
  method: string
  path: string
  permission: string | undefined
  hasBody: boolean
}

async function documentedOperations(): Promise<DocOperation[]> {
  const res = await app.inject({ method: 'GET', url: '/openapi.json' })
  expect(res.statusCode).toBe(200)
  const doc = res.json() as { paths: Record<string, Record<string, Json>> }
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => ['get', 'put', 'post', 'patch', 'delete'].includes(method))
      .map(([method, op]) => ({
        method: method.toUpperCase(),
        path,
        permission: op['x-kiln-permission'] as string | undefined,
        hasBody: op.requestBody !== undefined,
      })),
  )
}

let sacrificeCount = 0
/** A path parameter's value: something that exists in team-a, fresh where the call may consume it. */
async function fill(path: string): Promise<string> {
  let out = path
  for (const [, name] of path.matchAll(/\{(\w+)\}/g)) {
    let value: string
    switch (name) {
      case 'project':
        value = 'team-a'
        break
      case 'cluster':
        value = 'c1'
        break
      case 'nodegroup':
        value = 'workers'
        break
      case 'template':
        value = 'k8s-1.31'
        break
      case 'slug':
        value = 'not-found'
        break
      case 'version':
        value = path.startsWith('/v1/kubernetes-versions') ? '1.31.4' : '1'
        break
      case 'backend':
        value = 'sim'
        break
      case 'machineClass':
        value = 'm1.large'
        break
      case 'feature':
        value = 'ingress'
        break
      case 'operation': {
        // Finished, so the event stream ends and cancel/retry cannot change it.
        const op = await api.db.operation.create({
          data: {
            kind: 'cluster.update-labels',
            status: 'succeeded',
            progress: 100,
            projectId: teamA.id,
            clusterId,
            resource: { kind: 'cluster', id: clusterId, name: 'c1' },
            requestedBy: 'test',
            finishedAt: new Date(),
          },
        })
        value = op.id
        break
      }
      case 'member':
        value = (
          await api.db.projectMember.create({
            data: {
              projectId: teamA.id,
              kind: 'user',
              name: `sacrifice-${sacrificeCount++}`,
              role: 'viewer',
              createdBy: 'test',
            },
          })
        ).id
        break
      case 'token':
        value = (
          await api.db.apiToken.create({
            data: {
              projectId: teamA.id,
              name: `sacrifice-${sacrificeCount++}`,
              role: 'viewer',
              secretHash: `not-a-hash-${sacrificeCount}`,
              prefix: 'kiln_00000000',
              createdBy: 'test',
              expiresAt: new Date(Date.now() + 86_400_000),
            },
          })
        ).id
        break
      default:
        throw new Error(`No fixture for the path parameter {${name}} of ${path}: add one to fill().`)
    }
    out = out.replace(`{${name}}`, value)
  }
  return out
}

function check(res: LightMyRequestResponse, outcome: Outcome, label: string): string | undefined {
  const got = res.statusCode
  const body = res.body.slice(0, 300)
  if (got >= 500) return `${label}: ${got} ${body}`
  if (outcome === 'public') return undefined
  if (outcome === 'allowed') {
    return [401, 403, 404].includes(got)
      ? `${label}: expected to be let through, got ${got} ${body}`
      : undefined
  }
  if (got !== outcome) return `${label}: expected ${outcome}, got ${got} ${body}`
  if (!String(res.headers['content-type']).startsWith('application/problem+json')) {
    return `${label}: ${got} is not problem+json`
  }
  const problem = res.json() as Json
  if (outcome === 401 && !String(res.headers['www-authenticate']).startsWith('Bearer')) {
    return `${label}: 401 without a Bearer challenge`
  }
  if (outcome === 403 && problem.type !== 'https://kiln.dev/problems/forbidden') {
    return `${label}: 403 of type ${problem.type}`
  }
  // Exactly what a project (or operation) that does not exist answers.
  if (
    outcome === 404 &&
    !/^(project 'team-a'|operation '[0-9a-f-]{36}') was not found\.$/.test(problem.detail)
  ) {
    return `${label}: 404 that says more than "not found": ${problem.detail}`
  }
  return undefined
}

describe('the authorization matrix (every documented operation × every kind of caller)', () => {
  it('every operation declares a permission the matrix knows, and only the listed ones are public', async () => {
    const ops = await documentedOperations()
    expect(ops.length).toBeGreaterThan(40)
    const problems: string[] = []
    for (const op of ops) {
      const name = `${op.method} ${op.path}`
      if (!op.permission) problems.push(`${name}: declares no permission (config: { permission })`)
      else if (!rules[op.permission])
        problems.push(`${name}: permission ${op.permission} is not in the matrix's rules`)
      if ((op.permission === 'public') !== publicOperations.has(name)) {
        problems.push(`${name}: is ${op.permission === 'public' ? '' : 'not '}public`)
      }
    }
    expect(problems).toEqual([])
    // The document and its docs page are public too (and not in the document).
    for (const url of ['/openapi.json', '/docs', '/docs/json']) {
      expect((await app.inject({ method: 'GET', url })).statusCode, url).toBeLessThan(400)
    }
  })

  it('answers each caller what the operation’s permission says', async () => {
    const ops = await documentedOperations()
    const problems: string[] = []
    let calls = 0
    for (const op of ops) {
      const rule = op.permission ? rules[op.permission] : undefined
      if (!rule || !op.permission) continue
      const inProject = /\{(project|operation)\}/.test(op.path)
      for (const caller of callers) {
        const outcome = expected(rule, caller, inProject, op.permission)
        const url = await fill(op.path)
        const res = await app.inject({
          method: op.method as 'GET',
          url,
          headers: caller.headers,
          // An empty body: what is refused is refused before the body is looked at; what is let
          // through mostly fails validation (400) and changes nothing.
          ...(op.hasBody ? { payload: {} } : {}),
        })
        calls++
        const problem = check(res, outcome, `${caller.name} ${op.method} ${url} (${op.permission})`)
        if (problem) problems.push(problem)
      }
    }
    expect(problems).toEqual([])
    expect(calls).toBe(ops.length * callers.length)
  })
})

describe('visibility', () => {
  const list = async (caller: CallerName, url: string) => {
    const res = await app.inject({ method: 'GET', url, headers: by(caller).headers })
    expect(res.statusCode, res.body).toBe(200)
    return ((res.json() as Json).items as Json[]).map((i) => i.name)
  }

  it('GET /v1/projects lists only the projects the caller can see', async () => {
    expect(await list('platformAdmin', '/v1/projects')).toEqual(['team-a', 'team-b'])
    for (const caller of ['projectAdmin', 'member', 'viewer', 'token'] as const) {
      expect(await list(caller, '/v1/projects')).toEqual(['team-a'])
    }
    expect(await list('otherProjectUser', '/v1/projects')).toEqual(['team-b'])
  })

  it('a project the caller cannot see answers exactly as one that does not exist, whatever the request', async () => {
    const answer = async (
      project: string,
      method: 'GET' | 'POST',
      path: string,
      payload?: Record<string, unknown>,
    ) => {
      const res = await app.inject({
        method,
        url: `/v1/projects/${project}${path}`,
        headers: by('otherProjectUser').headers,
        ...(payload === undefined ? {} : { payload }),
      })
      const problem = expectProblem(res, 404)
      return { type: problem.type, title: problem.title, detail: problem.detail.replace(project, '<p>') }
    }
    const missing = await answer('no-such-project', 'GET', '')
    for (const [method, path, payload] of [
      ['GET', ''],
      ['GET', '/clusters/c1'],
      ['GET', '/clusters/does-not-exist'],
      ['POST', '/clusters', { name: 'x', template: 'k8s-1.31' }],
      ['POST', '/clusters', { malformed: true }],
      ['POST', '/clusters/c1/kubeconfig', {}],
    ] as const) {
      expect(await answer('team-a', method, path, payload)).toEqual(missing)
      expect(await answer(teamA.id, method, path, payload)).toEqual(
        await answer('00000000-0000-4000-8000-000000000000', method, path, payload),
      )
    }
  })

  it('an operation of a project the caller cannot see answers as one that does not exist', async () => {
    const ops = await api.db.operation.findMany({ where: { projectId: teamA.id }, take: 1 })
    const id = ops[0]!.id
    const other = expectProblem(
      await app.inject({
        method: 'GET',
        url: `/v1/operations/${id}`,
        headers: by('otherProjectUser').headers,
      }),
      404,
    )
    const ghost = '0b7c2a3e-9d44-4d1a-9a43-52f0f3c2a1b0'
    const missing = expectProblem(
      await app.inject({
        method: 'GET',
        url: `/v1/operations/${ghost}`,
        headers: by('otherProjectUser').headers,
      }),
      404,
    )
    expect(other.detail.replace(id, '<id>')).toBe(missing.detail.replace(ghost, '<id>'))
    const own = await app.inject({
      method: 'GET',
      url: `/v1/operations/${id}`,
      headers: by('viewer').headers,
    })
    expect(own.statusCode).toBe(200)
  })

  it('a project’s private templates are visible only to it', async () => {
    expect(await list('viewer', '/v1/templates')).toContain('team-a-private')
    expect(await list('platformAdmin', '/v1/templates')).toContain('team-a-private')
    expect(await list('otherProjectUser', '/v1/templates')).toEqual(['k8s-1.31'])
    for (const url of [
      '/v1/templates/team-a-private',
      '/v1/templates/team-a-private/versions/1',
      '/v1/templates?project=team-a',
    ]) {
      const res = await app.inject({ method: 'GET', url, headers: by('otherProjectUser').headers })
      expectProblem(res, 404)
    }
    const own = await app.inject({
      method: 'GET',
      url: '/v1/templates/team-a-private',
      headers: by('member').headers,
    })
    expect(own.statusCode).toBe(200)
  })
})

describe('roles', () => {
  it('GET /v1/me: who the API takes each caller for', async () => {
    const me = async (caller: CallerName) => {
      const res = await app.inject({ method: 'GET', url: '/v1/me', headers: by(caller).headers })
      expect(res.statusCode, res.body).toBe(200)
      return res.json() as Json
    }
    expect(await me('platformAdmin')).toMatchObject({
      subject: 'user:pat',
      kind: 'user',
      platformAdmin: true,
      projects: [],
    })
    expect(await me('member')).toEqual({
      subject: 'user:mike',
      kind: 'user',
      platformAdmin: false,
      groups: ['team-a-devs'],
      projects: [{ project: 'team-a', role: 'member' }],
    })
    expect(await me('token')).toMatchObject({
      kind: 'token',
      projects: [{ project: 'team-a', role: 'member' }],
    })
    expectProblem(await app.inject({ method: 'GET', url: '/v1/me' }), 401)
  })

  it('a person’s role is the highest of their own and their groups’, and changes take effect at once', async () => {
    const victorAsDev = await jwt('victor', ['team-a-devs'])
    const createAs = (headers: Record<string, string>, name: string) =>
      app.inject({
        method: 'POST',
        url: '/v1/projects/team-a/members',
        headers,
        payload: { kind: 'user', name, role: 'viewer' },
      })
    // victor is a viewer himself; through team-a-devs a member; neither may manage members.
    expectProblem(await createAs(victorAsDev, 'someone'), 403)
    const deploy = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters',
      headers: victorAsDev,
      payload: { name: 'victors', template: 'k8s-1.31' },
    })
    expect(deploy.statusCode, deploy.body).toBe(202)

    // alice makes the group admin: victor (through it) can now add members.
    const promote = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/members',
      headers: by('projectAdmin').headers,
      payload: { kind: 'group', name: 'team-a-leads', role: 'admin' },
    })
    expect(promote.statusCode, promote.body).toBe(201)
    const lead = await jwt('victor', ['team-a-leads'])
    const added = await createAs(lead, 'newcomer')
    expect(added.statusCode, added.body).toBe(201)
    expectProblem(await createAs(lead, 'newcomer'), 409)
    // Removed again: 403 on the next request.
    const removed = await app.inject({
      method: 'DELETE',
      url: `/v1/projects/team-a/members/${(promote.json() as Json).id}`,
      headers: by('projectAdmin').headers,
    })
    expect(removed.statusCode).toBe(204)
    expectProblem(await createAs(lead, 'another'), 403)
    const members = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-a/members',
      headers: by('viewer').headers,
    })
    const names = ((members.json() as Json).items as Json[]).map((m) => `${m.kind}:${m.name}:${m.role}`)
    expect(names).toEqual(
      expect.arrayContaining(['user:alice:admin', 'group:team-a-devs:member', 'user:newcomer:viewer']),
    )
    expect(names).not.toContain('group:team-a-leads:admin')
  })

  it('a platform admin is admin in every project, and alone may write the catalogue', async () => {
    const quota = await app.inject({
      method: 'GET',
      url: '/v1/projects/team-b/audit',
      headers: by('platformAdmin').headers,
    })
    expect(quota.statusCode, quota.body).toBe(200)
    const project = await app.inject({
      method: 'POST',
      url: '/v1/projects',
      headers: by('platformAdmin').headers,
      payload: { name: 'team-c' },
    })
    expect(project.statusCode, project.body).toBe(201)
    const audit = await api.db.auditEvent.findFirstOrThrow({ where: { action: 'project.create' } })
    expect(audit.actor).toBe('user:pat')
    expectProblem(
      await app.inject({
        method: 'POST',
        url: '/v1/projects',
        headers: by('projectAdmin').headers,
        payload: { name: 'team-d' },
      }),
      403,
    )
  })
})
