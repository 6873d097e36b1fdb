import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aMachineClass, aTemplate } from '../../../test/support/builders.ts'
import { testIronicConfig } from '../../../test/support/ironic.ts'
import type { KilnApp } from '../src/app.ts'
import { expectProblem, pointersOf } from './helpers.ts'

// Registering bare-metal and Cluster API backends through the API: the config is checked field by field before it
// is stored, never returned, replaceable, and a backend goes only once no template uses it.

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

const create = (payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/v1/backends', payload, headers })

describe('POST /v1/backends', () => {
  it('registers an Ironic backend: 201 with its location, no config in any answer, audited', async () => {
    const config = testIronicConfig({
      auth: {
        kind: 'keystone',
        authUrl: 'https://keystone.test/v3',
        username: 'kiln',
        password: { env: 'KILN_IRONIC_PASSWORD' },
        projectName: 'baremetal',
      },
    })
    const res = await create({ name: 'metal-a', kind: 'ironic', config })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.headers.location).toBe('/v1/backends/metal-a')
    const body = res.json()
    expect(body).toMatchObject({ name: 'metal-a', kind: 'ironic', zones: [] })
    expect(body).not.toHaveProperty('config')

    const got = await app.inject({ method: 'GET', url: '/v1/backends/metal-a' })
    expect(got.json()).toEqual(body)
    const listed = await app.inject({ method: 'GET', url: '/v1/backends' })
    expect(listed.body).not.toContain('keystone')
    expect((listed.json() as { items: { name: string }[] }).items.map((b) => b.name)).toContain('metal-a')

    const row = await api.db.backend.findUniqueOrThrow({ where: { name: 'metal-a' } })
    expect(row.config).toEqual(config)
    const audit = await api.db.auditEvent.findMany({ where: { targetId: row.id } })
    expect(audit.map((e) => [e.action, e.projectId])).toEqual([['backend.create', null]])
  })

  it('answers a retry with the same idempotency key with the first answer, and a taken name with 409', async () => {
    const payload = { name: 'metal-b', kind: 'ironic', config: testIronicConfig() }
    const first = await create(payload, { 'idempotency-key': 'register-metal-b' })
    const again = await create(payload, { 'idempotency-key': 'register-metal-b' })
    expect(first.statusCode, first.body).toBe(201)
    expect(again.statusCode).toBe(201)
    expect(again.json().id).toBe(first.json().id)
    expect(pointersOf(expectProblem(await create(payload), 409))).toEqual(['/name'])
  })

  it('refuses a config the driver could not use, naming every field (422), and stores nothing', async () => {
    const broken = {
      url: 'ftp://ironic',
      auth: { kind: 'keystone', authUrl: 'https://keystone.test/v3', username: 'kiln', projectName: 'bm' },
      images: { latest: { source: 'x', checksum: 'y' }, '1.31': { source: 'x' } },
      passwrod: 'oops',
    }
    const problem = expectProblem(await create({ name: 'metal-c', kind: 'ironic', config: broken }), 422)
    expect(pointersOf(problem).sort()).toEqual(
      [
        '/config/url',
        '/config/auth/password',
        '/config/images/latest',
        '/config/images/1.31/checksum',
        '/config/passwrod',
        '/config/controlPlaneEndpoint',
      ].sort(),
    )
    const secret = expectProblem(
      await create({
        name: 'metal-c',
        kind: 'ironic',
        config: testIronicConfig({ auth: { kind: 'token', token: { value: 'plain-secret' } as never } }),
      }),
      422,
    )
    expect(secret.errors).toEqual([
      expect.objectContaining({ pointer: '/config/auth/token', message: expect.stringMatching(/env.*file/) }),
    ])
    expect(await api.db.backend.count({ where: { name: 'metal-c' } })).toBe(0)
  })

  it('registers Ironic and Cluster API backends, not the seeded simulator (422 naming kind)', async () => {
    const problem = expectProblem(await create({ name: 'x-simulator', kind: 'simulator', config: {} }), 422)
    expect(pointersOf(problem)).toEqual(['/kind'])

    const capi = {
      kubeconfig: { env: 'KILN_CAPI_KUBECONFIG' },
      namespace: 'kiln-clusters',
      clusterClass: 'kiln-openstack',
    }
    const res = await create({ name: 'openstack', kind: 'capi', config: capi })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ name: 'openstack', kind: 'capi' })
    expect(res.body).not.toContain('KILN_CAPI_KUBECONFIG')
    // The kubeconfig is a reference, never the credentials themselves; names are Kubernetes names.
    const refused = expectProblem(
      await create({
        name: 'openstack-2',
        kind: 'capi',
        config: { ...capi, kubeconfig: 'apiVersion: v1\nkind: Config', namespace: 'Not_A_Namespace' },
      }),
      422,
    )
    expect(pointersOf(refused).sort()).toEqual(['/config/kubeconfig', '/config/namespace'])
    expect(await api.db.backend.count({ where: { name: 'openstack-2' } })).toBe(0)
    expect(
      pointersOf(expectProblem(await create({ name: 'Bad_Name', kind: 'ironic', config: {} }), 400)),
    ).toEqual(['/name'])
  })
})

describe('PATCH and DELETE /v1/backends/{backend}', () => {
  it('replaces the config after checking it, and moves updatedAt', async () => {
    const created = (await create({ name: 'metal-p', kind: 'ironic', config: testIronicConfig() })).json()
    const bad = await app.inject({
      method: 'PATCH',
      url: '/v1/backends/metal-p',
      payload: { config: { url: 'https://ironic.test' } },
    })
    expect(pointersOf(expectProblem(bad, 422))).toEqual(['/config/controlPlaneEndpoint'])

    const config = testIronicConfig({ url: 'https://ironic-2.test:6385' })
    const res = await app.inject({ method: 'PATCH', url: '/v1/backends/metal-p', payload: { config } })
    expect(res.statusCode, res.body).toBe(200)
    expect(Date.parse(res.json().updatedAt)).toBeGreaterThan(Date.parse(created.updatedAt))
    expect((await api.db.backend.findUniqueOrThrow({ where: { name: 'metal-p' } })).config).toEqual(config)
    expectProblem(await app.inject({ method: 'PATCH', url: '/v1/backends/nope', payload: { config } }), 404)
  })

  it('refuses to remove a backend a template uses (409); once unused it goes with its machine classes', async () => {
    const backend = (await create({ name: 'metal-d', kind: 'ironic', config: testIronicConfig() })).json()
    await aMachineClass(api.db, backend.id, { name: 'bm-d' })
    const template = await aTemplate(api.db, backend.id, {
      name: 'metal-d-k8s',
      controlPlane: { count: 1, machineClass: 'bm-d' },
      nodeGroups: [],
    })
    const refused = expectProblem(await app.inject({ method: 'DELETE', url: '/v1/backends/metal-d' }), 409)
    expect(refused.detail).toContain('metal-d-k8s@1')

    await api.db.clusterTemplate.delete({ where: { id: template.id } })
    const removed = await app.inject({ method: 'DELETE', url: '/v1/backends/metal-d' })
    expect(removed.statusCode, removed.body).toBe(204)
    expect(await api.db.machineClass.count({ where: { name: 'bm-d' } })).toBe(0)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/backends/metal-d' }), 404)
  })
})
