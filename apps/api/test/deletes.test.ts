import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiToken } from '../../../packages/db/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject, aTemplate } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { anIdleCluster, expectProblem } from './helpers.ts'

// DELETE of a project and of a template, against the real API and PostgreSQL. The API runs in its
// embedded mode: a request without credentials is the local operator, a platform admin (`operator`
// below); one with an API token acts with the token's role.

let api: TestApi
let app: KilnApp
let operator: KilnApp
let backendId: string

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A project with an API token of the given role in it. */
async function aProjectWithToken(name: string, role: 'viewer' | 'member' | 'admin' = 'admin') {
  const project = await aProject(api.db, name)
  const { token, plaintext } = await api.db.$transaction((tx) =>
    createApiToken(
      tx,
      { subject: 'user:bootstrap', requestId: 'test' },
      { projectId: project.id, name: `${role}-token`, role, expiresAt: new Date(Date.now() + 86_400_000) },
    ),
  )
  return { project, token, plaintext }
}

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  operator = app
  const { backend } = await aDataCentre(api.db)
  backendId = backend.id
})

afterAll(async () => {
  await api?.close()
})

describe('DELETE /v1/projects/{project}', () => {
  it('deletes an empty project with its members, tokens, quota, private templates and old operations, audited', async () => {
    const { project, token, plaintext } = await aProjectWithToken('doomed')
    const bystander = await aProjectWithToken('bystander')
    await api.db.projectMember.create({
      data: { projectId: project.id, kind: 'user', name: 'alice', role: 'admin', createdBy: 'test' },
    })
    await api.db.projectQuota.create({ data: { projectId: project.id, clusters: 3, updatedBy: 'test' } })
    await aTemplate(api.db, backendId, { name: 'doomed-private', projectId: project.id })
    await aTemplate(api.db, backendId, { name: 'doomed-private', version: 2, projectId: project.id })
    // A cluster that has come and gone leaves its finished operations behind.
    const create = await anIdleCluster(operator, 'doomed', 'gone')
    const del = await operator.inject({ method: 'DELETE', url: '/v1/projects/doomed/clusters/gone' })
    expect(del.statusCode, del.body).toBe(202)
    await api.db.operation.updateMany({
      where: { projectId: project.id },
      data: { status: 'succeeded', finishedAt: new Date() },
    })
    await api.db.cluster.deleteMany({ where: { projectId: project.id } })
    for (const principal of [`token:${token.id}`, `token:${bystander.token.id}`]) {
      await api.db.idempotencyRecord.create({
        data: {
          principal,
          key: 'k1',
          requestHash: 'h',
          statusCode: 201,
          expiresAt: new Date(Date.now() + 1e6),
        },
      })
    }

    const res = await app.inject({ method: 'DELETE', url: '/v1/projects/doomed', headers: bearer(plaintext) })
    expect(res.statusCode, res.body).toBe(204)
    expect(res.body).toBe('')

    const where = { projectId: project.id }
    expect(await api.db.project.findUnique({ where: { id: project.id } })).toBeNull()
    expect(await api.db.projectMember.count({ where })).toBe(0)
    expect(await api.db.apiToken.count({ where })).toBe(0)
    expect(await api.db.projectQuota.count({ where })).toBe(0)
    expect(await api.db.clusterTemplate.count({ where })).toBe(0)
    expect(await api.db.operation.count({ where: { id: create.id } })).toBe(0)
    expect(await api.db.idempotencyRecord.count({ where: { principal: `token:${token.id}` } })).toBe(0)
    // Nothing of another project goes with it.
    expect(
      await api.db.idempotencyRecord.count({ where: { principal: `token:${bystander.token.id}` } }),
    ).toBe(1)
    expect(await api.db.apiToken.count({ where: { projectId: bystander.project.id } })).toBe(1)
    const audit = await api.db.auditEvent.findMany({
      where: { action: 'project.delete', targetId: project.id },
    })
    expect(audit).toHaveLength(1)
    expect(audit[0]!.actor).toBe(`token:${token.id}`)
    expect(audit[0]!.data).toMatchObject({ name: 'doomed', templates: 2, tokens: 1 })

    // It is gone for everyone, platform admins included; its token died with it.
    expectProblem(await operator.inject({ method: 'GET', url: '/v1/projects/doomed' }), 404)
    expectProblem(await operator.inject({ method: 'DELETE', url: '/v1/projects/doomed' }), 404)
    expectProblem(
      await app.inject({ method: 'GET', url: '/v1/projects/doomed', headers: bearer(plaintext) }),
      401,
    )
  })

  it('refuses with 409 naming how many clusters and which while the project has any, and changes nothing', async () => {
    const { project } = await aProjectWithToken('busy')
    await anIdleCluster(operator, 'busy', 'c-2')
    await anIdleCluster(operator, 'busy', 'c-1')
    const res = await operator.inject({ method: 'DELETE', url: '/v1/projects/busy' })
    const problem = expectProblem(res, 409)
    expect(problem.type).toBe('https://kiln.dev/problems/conflict')
    expect(problem.detail).toContain('2 cluster(s): c-1, c-2')
    expect(problem['usedBy']).toEqual({ kind: 'cluster', count: 2, names: ['c-1', 'c-2'] })
    expect(await api.db.project.count({ where: { id: project.id } })).toBe(1)
    expect(await api.db.apiToken.count({ where: { projectId: project.id } })).toBe(1)
    expect(await api.db.auditEvent.count({ where: { action: 'project.delete' } })).toBe(1)
  })

  it('refuses with 409 while an operation of the project is unfinished', async () => {
    const { project } = await aProjectWithToken('finishing')
    const op = await api.db.operation.create({
      data: {
        kind: 'cluster.delete',
        status: 'running',
        projectId: project.id,
        resource: { kind: 'cluster', id: project.id, name: 'x' },
        requestedBy: 'test',
      },
    })
    const problem = expectProblem(
      await operator.inject({ method: 'DELETE', url: '/v1/projects/finishing' }),
      409,
    )
    expect(problem.detail).toContain(op.id)
    expect(await api.db.project.count({ where: { id: project.id } })).toBe(1)
  })

  it('is for the project’s admins: 403 for a lesser role, 404 for another project’s caller or an unknown project', async () => {
    const { project, plaintext: memberToken } = await aProjectWithToken('guarded', 'member')
    const other = await aProjectWithToken('elsewhere')
    const forbidden = expectProblem(
      await app.inject({ method: 'DELETE', url: '/v1/projects/guarded', headers: bearer(memberToken) }),
      403,
    )
    expect(forbidden.type).toBe('https://kiln.dev/problems/forbidden')
    const hidden = expectProblem(
      await app.inject({ method: 'DELETE', url: '/v1/projects/guarded', headers: bearer(other.plaintext) }),
      404,
    )
    expect(hidden.detail).toBe("project 'guarded' was not found.")
    expectProblem(await operator.inject({ method: 'DELETE', url: '/v1/projects/no-such-project' }), 404)
    expect(await api.db.project.count({ where: { id: project.id } })).toBe(1)
    // A platform admin may delete any project, by id too.
    const byId = await operator.inject({ method: 'DELETE', url: `/v1/projects/${project.id}` })
    expect(byId.statusCode, byId.body).toBe(204)
  })
})

describe('DELETE /v1/templates/{template}', () => {
  it('deletes every version of an unused template, audited', async () => {
    await aTemplate(api.db, backendId, { name: 'retired', version: 1, deprecated: true })
    await aTemplate(api.db, backendId, { name: 'retired', version: 2, deprecated: true })
    const res = await operator.inject({ method: 'DELETE', url: '/v1/templates/retired' })
    expect(res.statusCode, res.body).toBe(204)
    expect(await api.db.clusterTemplate.count({ where: { name: 'retired' } })).toBe(0)
    const audit = await api.db.auditEvent.findMany({ where: { action: 'template.delete' } })
    expect(audit).toHaveLength(1)
    expect(audit[0]!.data).toMatchObject({ name: 'retired', versions: [1, 2] })
    expectProblem(await operator.inject({ method: 'GET', url: '/v1/templates/retired' }), 404)
    expectProblem(await operator.inject({ method: 'DELETE', url: '/v1/templates/retired' }), 404)
  })

  it('takes the id of any version and deletes them all', async () => {
    const v1 = await aTemplate(api.db, backendId, { name: 'by-id', version: 1 })
    await aTemplate(api.db, backendId, { name: 'by-id', version: 2 })
    const res = await operator.inject({ method: 'DELETE', url: `/v1/templates/${v1.id}` })
    expect(res.statusCode, res.body).toBe(204)
    expect(await api.db.clusterTemplate.count({ where: { name: 'by-id' } })).toBe(0)
  })

  it('refuses with 409 naming the clusters while any uses any version, and changes nothing', async () => {
    await aProjectWithToken('users')
    await aTemplate(api.db, backendId, { name: 'in-use', version: 1 })
    await aTemplate(api.db, backendId, { name: 'in-use', version: 2 })
    await anIdleCluster(operator, 'users', 'old', { template: 'in-use', templateVersion: 1 })
    const problem = expectProblem(
      await operator.inject({ method: 'DELETE', url: '/v1/templates/in-use' }),
      409,
    )
    expect(problem.type).toBe('https://kiln.dev/problems/conflict')
    expect(problem.detail).toContain('1 cluster(s): users/old')
    expect(problem['usedBy']).toEqual({ kind: 'cluster', count: 1, names: ['users/old'] })
    expect(await api.db.clusterTemplate.count({ where: { name: 'in-use' } })).toBe(2)
  })

  it('is for platform admins only: 403 even for a project admin; 404 for an unknown template', async () => {
    const { plaintext } = await aProjectWithToken('not-platform')
    await aTemplate(api.db, backendId, { name: 'kept' })
    const res = await app.inject({ method: 'DELETE', url: '/v1/templates/kept', headers: bearer(plaintext) })
    expect(expectProblem(res, 403).type).toBe('https://kiln.dev/problems/forbidden')
    expect(await api.db.clusterTemplate.count({ where: { name: 'kept' } })).toBe(1)
    expectProblem(await operator.inject({ method: 'DELETE', url: '/v1/templates/no-such-template' }), 404)
  })
})
