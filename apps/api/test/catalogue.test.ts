import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aKubernetesVersion } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { expectProblem, getJson, pointersOf } from './helpers.ts'

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  await aDataCentre(api.db)
  await aKubernetesVersion(api.db, '1.30.8')
})

afterAll(async () => {
  await api?.close()
})

describe('GET /v1/features', () => {
  let features: Json[]

  beforeAll(async () => {
    features = (await getJson<{ items: Json[] }>(app, '/v1/features')).items
  })

  const feature = (name: string) => features.find((f) => f.name === name)

  it('lists every feature of the catalogue with its schema, default and rules', () => {
    expect(features.map((f) => f.name)).toEqual([
      'gpu',
      'ingress',
      'monitoring',
      'cni',
      'kubeProxyMode',
      'metricsServer',
      'autoscaler',
    ])
    for (const f of features) {
      expect(Object.keys(f).sort()).toEqual(
        [
          'name',
          'title',
          'description',
          'schema',
          'default',
          'kubernetesVersions',
          'backends',
          'mutable',
          'nodeGroupScoped',
          'conflicts',
        ].sort(),
      )
      expect(f.schema.type).toBe('object')
      expect(typeof f.mutable).toBe('boolean')
      expect(Array.isArray(f.backends)).toBe(true)
      expect(Array.isArray(f.conflicts)).toBe(true)
      // The default is itself a valid value: every field the schema declares.
      expect(Object.keys(f.default).sort()).toEqual(Object.keys(f.schema.properties).sort())
    }
  })

  it('ingress: traefik | nginx | none, default traefik, mutable', () => {
    const ingress = feature('ingress')
    expect(ingress.schema.properties.controller.enum).toEqual(['traefik', 'nginx', 'none'])
    expect(ingress.default).toEqual({ controller: 'traefik' })
    expect(ingress.mutable).toBe(true)
    expect(ingress.backends).toEqual(['simulator', 'ironic', 'capi'])
  })

  it('carries version ranges, backends, mutability and conflicts', () => {
    expect(feature('gpu').default).toEqual({ enabled: false, mode: 'device-plugin' })
    expect(feature('gpu').nodeGroupScoped).toBe(true)
    expect(feature('monitoring').kubernetesVersions).toEqual({ min: '1.30' })
    expect(feature('monitoring').default).toEqual({ enabled: false, retentionDays: 15 })
    expect(feature('cni').mutable).toBe(false)
    expect(feature('cni').schema.properties.plugin.enum).toEqual(['calico', 'cilium', 'flannel'])
    expect(feature('autoscaler').backends).toEqual(['simulator', 'capi'])
    expect(feature('autoscaler').kubernetesVersions).toEqual({ min: '1.31' })
    expect(feature('metricsServer').default).toEqual({ enabled: true })
    expect(feature('kubeProxyMode').mutable).toBe(false)
    expect(feature('kubeProxyMode').conflicts).toEqual([
      {
        when: { field: 'mode', oneOf: ['none'] },
        conflictsWith: { feature: 'cni', field: 'plugin', oneOf: ['calico', 'flannel'] },
        reason: expect.stringContaining('Cilium'),
      },
    ])
  })

  it('GET /v1/features/{name} returns one; an unknown name is 404', async () => {
    expect(await getJson(app, '/v1/features/ingress')).toEqual(feature('ingress'))
    expectProblem(await app.inject({ method: 'GET', url: '/v1/features/teleport' }), 404)
    // Not an inherited property of a plain object either.
    expectProblem(await app.inject({ method: 'GET', url: '/v1/features/constructor' }), 404)
  })
})

describe('backends and machine classes', () => {
  it('lists backends without their configuration', async () => {
    const { items } = await getJson<{ items: Json[] }>(app, '/v1/backends')
    expect(items).toHaveLength(1)
    expect(items[0]).toMatchObject({ name: 'sim', kind: 'simulator', zones: ['zone-a', 'zone-b'] })
    expect(items[0]).not.toHaveProperty('config')
    expect(await getJson(app, `/v1/backends/${items[0].id}`)).toEqual(items[0])
    expect(await getJson(app, '/v1/backends/sim')).toEqual(items[0])
    expectProblem(await app.inject({ method: 'GET', url: '/v1/backends/nope' }), 404)
  })

  it('?gpu=true lists only classes with GPUs; ?gpu=false only those without', async () => {
    const names = async (query: string) =>
      (await getJson<{ items: Json[] }>(app, `/v1/machine-classes${query}`)).items.map((m) => m.name)
    expect(await names('')).toEqual(['gpu.a100x4', 'm1.large'])
    expect(await names('?gpu=true')).toEqual(['gpu.a100x4'])
    expect(await names('?gpu=false')).toEqual(['m1.large'])
    expect(await names('?backend=sim&gpu=true')).toEqual(['gpu.a100x4'])
    expect(await names('?backend=other')).toEqual([])
    const gpu = (await getJson<{ items: Json[] }>(app, '/v1/machine-classes?gpu=true')).items[0]
    expect(gpu).toMatchObject({
      name: 'gpu.a100x4',
      backend: 'sim',
      cpu: 32,
      memoryMiB: 262144,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      zones: ['zone-a'],
    })
    expect(await getJson(app, '/v1/machine-classes/gpu.a100x4')).toEqual(gpu)
    expect(await getJson(app, `/v1/machine-classes/${gpu.id}`)).toEqual(gpu)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/machine-classes/nope' }), 404)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/machine-classes?gpu=maybe' }), 400)
  })
})

describe('Kubernetes versions', () => {
  it('lists versions with their lifecycle, newest first', async () => {
    const { items } = await getJson<{ items: Json[] }>(app, '/v1/kubernetes-versions')
    expect(items.map((v) => [v.version, v.lifecycle])).toEqual([
      ['1.31.4', 'supported'],
      ['1.30.8', 'supported'],
      ['1.29.12', 'expired'],
    ])
  })

  it('PATCH lifecycle with If-Match: current ETag → 200 and a new ETag; stale → 412', async () => {
    const get = await app.inject({ method: 'GET', url: '/v1/kubernetes-versions/1.30.8' })
    expect(get.statusCode).toBe(200)
    const e1 = get.headers.etag as string
    expect(e1).toMatch(/^"\d+"$/)
    expect(get.json()).toMatchObject({ version: '1.30.8', lifecycle: 'supported' })

    const res = await app.inject({
      method: 'PATCH',
      url: '/v1/kubernetes-versions/1.30.8',
      headers: { 'if-match': e1 },
      payload: { lifecycle: 'deprecated' },
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json().lifecycle).toBe('deprecated')
    const e2 = res.headers.etag as string
    expect(e2).not.toBe(e1)
    expect((await app.inject({ method: 'GET', url: '/v1/kubernetes-versions/1.30.8' })).headers.etag).toBe(e2)

    const stale = await app.inject({
      method: 'PATCH',
      url: '/v1/kubernetes-versions/1.30.8',
      headers: { 'if-match': e1 },
      payload: { lifecycle: 'expired' },
    })
    const p = expectProblem(stale, 412)
    expect(p['currentETag']).toBe(e2)
    expect((await getJson(app, '/v1/kubernetes-versions/1.30.8'))['lifecycle']).toBe('deprecated')
  })

  it('an unknown lifecycle is 400; an unknown version is 404', async () => {
    const bad = await app.inject({
      method: 'PATCH',
      url: '/v1/kubernetes-versions/1.30.8',
      payload: { lifecycle: 'retired' },
    })
    expect(pointersOf(expectProblem(bad, 400))).toEqual(['/lifecycle'])
    expectProblem(
      await app.inject({
        method: 'PATCH',
        url: '/v1/kubernetes-versions/9.9.9',
        payload: { lifecycle: 'expired' },
      }),
      404,
    )
    expectProblem(await app.inject({ method: 'GET', url: '/v1/kubernetes-versions/9.9.9' }), 404)
  })

  it('an expired version refuses new clusters from templates on it', async () => {
    const res = await app.inject({
      method: 'PATCH',
      url: '/v1/kubernetes-versions/1.31.4',
      payload: { lifecycle: 'expired' },
    })
    expect(res.statusCode).toBe(200)
    const create = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/cluster-plans',
      payload: { name: 'too-late', template: 'k8s-1.31' },
    })
    expect(pointersOf(expectProblem(create, 422))).toEqual(['/template'])
    const back = await app.inject({
      method: 'PATCH',
      url: '/v1/kubernetes-versions/1.31.4',
      payload: { lifecycle: 'supported' },
    })
    expect(back.statusCode).toBe(200)
  })
})

describe('templates', () => {
  const webTemplate = (over: Record<string, unknown> = {}) => ({
    name: 'web',
    description: 'Web workloads',
    kubernetesVersion: '1.31.4',
    backend: 'sim',
    controlPlane: { count: 3, machineClass: 'm1.large' },
    nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 5 }],
    features: { ingress: { controller: 'nginx' } },
    lockedFeatures: ['cni'],
    labels: { tier: 'web' },
    ...over,
  })
  let v1: Json
  let v2: Json

  it('POST /v1/templates publishes version 1', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/templates', payload: webTemplate() })
    expect(res.statusCode, res.body).toBe(201)
    v1 = res.json()
    expect(res.headers.location).toBe('/v1/templates/web/versions/1')
    expect(v1).toMatchObject({
      name: 'web',
      version: 1,
      project: null,
      description: 'Web workloads',
      kubernetesVersion: '1.31.4',
      kubernetesVersionLifecycle: 'supported',
      backend: 'sim',
      controlPlane: { count: 3, machineClass: 'm1.large' },
      features: { ingress: { controller: 'nginx' } },
      lockedFeatures: ['cni'],
      labels: { tier: 'web' },
      image: null,
      deprecated: false,
    })
    expect(v1.nodeGroups).toEqual([
      { name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 5 },
    ])
  })

  it('posting the same name again publishes version 2; version 1 is unchanged', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: webTemplate({ controlPlane: { count: 1, machineClass: 'm1.large' } }),
    })
    expect(res.statusCode, res.body).toBe(201)
    v2 = res.json()
    expect(v2.version).toBe(2)
    expect(v2.id).not.toBe(v1.id)
    expect(res.headers.location).toBe('/v1/templates/web/versions/2')
    expect(await getJson(app, '/v1/templates/web/versions/1')).toEqual(v1)
    expect(await getJson(app, '/v1/templates/web/versions/2')).toEqual(v2)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/templates/web/versions/3' }), 404)
  })

  it('GET /v1/templates/{name} is the latest version that is not deprecated; by id, that version', async () => {
    expect(await getJson(app, '/v1/templates/web')).toEqual(v2)
    expect(await getJson(app, `/v1/templates/${v1.id}`)).toEqual(v1)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/templates/nope' }), 404)
  })

  it('versions are immutable: no PUT, and PATCH only accepts deprecated and labels', async () => {
    const put = await app.inject({
      method: 'PUT',
      url: '/v1/templates/web/versions/1',
      payload: webTemplate(),
    })
    expectProblem(put, 404)
    for (const [field, value] of Object.entries({
      kubernetesVersion: '1.30.8',
      controlPlane: { count: 5, machineClass: 'm1.large' },
      nodeGroups: [],
      features: {},
      name: 'renamed',
      version: 7,
    })) {
      const res = await app.inject({
        method: 'PATCH',
        url: '/v1/templates/web/versions/1',
        payload: { [field]: value },
      })
      const p = expectProblem(res, 400)
      expect(p.errors).toEqual([
        expect.objectContaining({ pointer: `/${field}`, message: 'is not a known field' }),
      ])
    }
    expectProblem(
      await app.inject({ method: 'PATCH', url: '/v1/templates/web/versions/1', payload: {} }),
      400,
    )
    expect(await getJson(app, '/v1/templates/web/versions/1')).toEqual(v1)
  })

  it('PATCH deprecated with If-Match → 200 and a new ETag; the name now resolves to the older version', async () => {
    const get = await app.inject({ method: 'GET', url: '/v1/templates/web/versions/2' })
    const e1 = get.headers.etag as string
    expect(e1).toMatch(/^"\d+"$/)
    const res = await app.inject({
      method: 'PATCH',
      url: '/v1/templates/web/versions/2',
      headers: { 'if-match': e1 },
      payload: { deprecated: true, labels: { tier: 'web', status: 'old' } },
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({ version: 2, deprecated: true, labels: { tier: 'web', status: 'old' } })
    expect(res.headers.etag).not.toBe(e1)

    const stale = await app.inject({
      method: 'PATCH',
      url: '/v1/templates/web/versions/2',
      headers: { 'if-match': e1 },
      payload: { deprecated: false },
    })
    expect(expectProblem(stale, 412)['currentETag']).toBe(res.headers.etag)

    expect((await getJson(app, '/v1/templates/web'))['version']).toBe(1)
    // Clusters created by name get the latest non-deprecated version too.
    const plan = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/cluster-plans',
      payload: { name: 'from-web', template: 'web' },
    })
    expect(plan.statusCode, plan.body).toBe(200)
    expect(plan.json().template).toEqual({ name: 'web', version: 1, deprecated: false })
    expect(plan.json().spec.controlPlane.count).toBe(3)
  })

  it('lists every version, oldest first, filterable by name and deprecation', async () => {
    const all = await getJson<{ items: Json[] }>(app, '/v1/templates')
    expect(all.items.map((t) => `${t.name}@${t.version}`)).toEqual(['k8s-1.31@1', 'web@1', 'web@2'])
    const web = await getJson<{ items: Json[] }>(app, '/v1/templates?name=web&includeDeprecated=false')
    expect(web.items.map((t) => t.version)).toEqual([1])
    const page = await getJson<{ items: Json[]; nextCursor: string }>(app, '/v1/templates?limit=2')
    expect(page.items).toHaveLength(2)
    const rest = await getJson<{ items: Json[]; nextCursor: string | null }>(
      app,
      `/v1/templates?limit=2&cursor=${encodeURIComponent(page.nextCursor)}`,
    )
    expect(rest.items.map((t) => `${t.name}@${t.version}`)).toEqual(['web@2'])
    expect(rest.nextCursor).toBeNull()
  })

  it('a node group with an unknown machine class → 422 at /nodeGroups/0/machineClass', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: webTemplate({
        name: 'broken',
        nodeGroups: [{ name: 'workers', machineClass: 'm9.huge', count: 1 }],
      }),
    })
    const p = expectProblem(res, 422)
    expect(pointersOf(p, 'body')).toEqual(['/nodeGroups/0/machineClass'])
    expectProblem(await app.inject({ method: 'GET', url: '/v1/templates/broken' }), 404)
  })

  it('other publication rules → 422 with pointers into the template', async () => {
    const cases: [Record<string, unknown>, string[]][] = [
      [{ backend: 'nowhere' }, ['/backend']],
      [{ kubernetesVersion: '1.99.0' }, ['/kubernetesVersion']],
      [{ kubernetesVersion: '1.29.12' }, ['/kubernetesVersion']],
      [{ lockedFeatures: ['cni', 'teleport'] }, ['/lockedFeatures/1']],
      [{ controlPlane: { machineClass: 'm1.large' } }, ['/controlPlane/count']],
      [{ project: 'no-such-project' }, ['/project']],
      [{ controlPlane: { count: 1, machineClass: 'm9.huge' } }, ['/controlPlane/machineClass']],
      [{ features: { gpu: { enabled: true } } }, ['/features/gpu']],
      [
        { nodeGroups: [{ name: 'workers', machineClass: 'gpu.a100x4', count: 1, zones: ['zone-b'] }] },
        ['/nodeGroups/0/zones/0'],
      ],
    ]
    for (const [over, pointers] of cases) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/templates',
        payload: webTemplate({ name: 'rules', ...over }),
      })
      const p = expectProblem(res, 422)
      expect(pointersOf(p), JSON.stringify(over)).toEqual(pointers)
    }
    expectProblem(await app.inject({ method: 'GET', url: '/v1/templates/rules' }), 404)
  })

  it('a project’s own template is visible to that project only', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: webTemplate({ name: 'private-web', project: 'team-a' }),
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json().project).toBe('team-a')
    await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'outsiders' } })
    const outsider = await app.inject({
      method: 'POST',
      url: '/v1/projects/outsiders/cluster-plans',
      payload: { name: 'peek', template: 'private-web' },
    })
    expect(pointersOf(expectProblem(outsider, 422))).toEqual(['/template'])
    const insider = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/cluster-plans',
      payload: { name: 'use', template: 'private-web' },
    })
    expect(insider.statusCode, insider.body).toBe(200)
  })

  it('a template may name the OS image bare-metal machines are deployed with', async () => {
    const image = { source: 'https://images.example.org/k8s-1.31.4.qcow2', checksum: 'c'.repeat(64) }
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: webTemplate({ name: 'web-image', image }),
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json()).toMatchObject({ name: 'web-image', image })
    const bad = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: webTemplate({
        name: 'web-bad-image',
        image: { source: 'x', checksum: 'c'.repeat(64), diskFormat: 'vhd' },
      }),
    })
    expect(bad.statusCode).toBe(400)
    expect(bad.json().errors).toEqual([expect.objectContaining({ pointer: '/image/diskFormat' })])
  })
})

describe('projects', () => {
  let atlas: Json

  it('POST /v1/projects → 201 with Location', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects',
      payload: { name: 'atlas', displayName: 'ATLAS experiment', labels: { site: 'cern' } },
    })
    expect(res.statusCode, res.body).toBe(201)
    atlas = res.json()
    expect(res.headers.location).toBe('/v1/projects/atlas')
    expect(atlas).toMatchObject({ name: 'atlas', displayName: 'ATLAS experiment', labels: { site: 'cern' } })
    const bare = await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'cms' } })
    expect(bare.statusCode).toBe(201)
    expect(bare.json()).toMatchObject({ name: 'cms', displayName: 'cms', labels: {} })
  })

  it('GET by name and by id; list', async () => {
    expect(await getJson(app, '/v1/projects/atlas')).toEqual(atlas)
    expect(await getJson(app, `/v1/projects/${atlas.id}`)).toEqual(atlas)
    const { items } = await getJson<{ items: Json[] }>(app, '/v1/projects?limit=500')
    expect(items.map((p) => p.name)).toEqual(expect.arrayContaining(['team-a', 'atlas', 'cms']))
    expectProblem(await app.inject({ method: 'GET', url: '/v1/projects/nope' }), 404)
  })

  it('a duplicate name → 409 at /name', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'atlas' } })
    const p = expectProblem(res, 409)
    expect(p.type).toBe('https://kiln.dev/problems/conflict')
    expect(pointersOf(p)).toEqual(['/name'])
    expect(await api.db.project.count({ where: { name: 'atlas' } })).toBe(1)
  })

  it('paginates', async () => {
    const first = await getJson<{ items: Json[]; nextCursor: string | null }>(app, '/v1/projects?limit=1')
    expect(first.items).toHaveLength(1)
    const names: string[] = first.items.map((p) => p.name)
    let cursor = first.nextCursor
    while (cursor) {
      const page = await getJson<{ items: Json[]; nextCursor: string | null }>(
        app,
        `/v1/projects?limit=1&cursor=${encodeURIComponent(cursor)}`,
      )
      names.push(...page.items.map((p) => p.name))
      cursor = page.nextCursor
    }
    const all = await getJson<{ items: Json[] }>(app, '/v1/projects?limit=500')
    expect(names).toEqual(all.items.map((p) => p.name))
  })
})
