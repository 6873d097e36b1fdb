import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseMasterKey } from '../../../packages/pki/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aKubernetesVersion, aProject, aTemplate } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import {
  anIdleCluster,
  cancelOk,
  createCluster,
  createClusterOk,
  expectProblem,
  getJson,
  type OperationBody,
  pointersOf,
} from './helpers.ts'

const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const etag = /^"\d+"$/
const createSteps = [
  'reserve-capacity',
  'allocate-machines',
  'issue-certificates',
  'bootstrap-control-plane',
  'join-workers',
  'install-addons',
  'wait-healthy',
]

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  // With a master key, as in production: credential routes reach their checks of the cluster.
  api = await startTestApi({ app: { masterKey: parseMasterKey(randomBytes(32).toString('base64')) } })
  app = api.app
  const { backend } = await aDataCentre(api.db)
  await aTemplate(api.db, backend.id, {
    name: 'locked-cni',
    features: { cni: { plugin: 'cilium' } },
    lockedFeatures: ['cni'],
  })
  await aTemplate(api.db, backend.id, { name: 'old-k8s', kubernetesVersion: '1.29.12' })
  await aTemplate(api.db, backend.id, { name: 'edge', features: { ingress: { controller: 'nginx' } } })
  await aProject(api.db, 'team-b')
  await aProject(api.db, 'paging')
})

afterAll(async () => {
  await api?.close()
})

const clusterUrl = (name: string, project = 'team-a') => `/v1/projects/${project}/clusters/${name}`

async function rowCounts() {
  const [clusters, nodeGroups, operations, audit, idempotency] = await Promise.all([
    api.db.cluster.count(),
    api.db.nodeGroup.count(),
    api.db.operation.count(),
    api.db.auditEvent.count(),
    api.db.idempotencyRecord.count(),
  ])
  return { clusters, nodeGroups, operations, audit, idempotency }
}

describe('POST /v1/projects/{project}/clusters', () => {
  let op: OperationBody

  it('answers 202 with a pending create operation and a Location header', async () => {
    const res = await createCluster(app, 'team-a', {
      name: 'web',
      template: 'k8s-1.31',
      labels: { team: 'a' },
    })
    expect(res.statusCode, res.body).toBe(202)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    op = res.json()
    expect(op.id).toMatch(uuid)
    expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
    expect(op).toMatchObject({
      kind: 'cluster.create',
      status: 'pending',
      progress: 0,
      error: null,
      project: 'team-a',
      cancelRequested: false,
      resource: { kind: 'cluster', name: 'web' },
      requestedBy: 'user:local-operator',
    })
    expect(op.resource.id).toMatch(uuid)
    expect(op.steps.map((s) => s.name)).toEqual(createSteps)
    for (const step of op.steps) expect(step).toMatchObject({ status: 'pending', startedAt: null })

    const followed = await getJson<OperationBody>(app, res.headers.location as string)
    expect(followed.id).toBe(op.id)
    expect(followed.status).toBe('pending')

    const row = await api.db.cluster.findFirstOrThrow({ where: { name: 'web' } })
    expect(row.id).toBe(op.resource.id)
    expect(row.activeOperationId).toBe(op.id)
  })

  it('GET by name and by id return the same cluster, with an ETag', async () => {
    const byName = await app.inject({ method: 'GET', url: clusterUrl('web') })
    expect(byName.statusCode).toBe(200)
    expect(byName.headers.etag).toMatch(etag)
    const cluster: Json = byName.json()
    expect(cluster).toMatchObject({
      id: op.resource.id,
      name: 'web',
      project: 'team-a',
      labels: { team: 'a' },
      template: { name: 'k8s-1.31', version: 1 },
      generation: 1,
      activeOperationId: op.id,
      deletionRequested: false,
      expiresAt: null,
      status: { phase: 'Pending', observedGeneration: 0 },
      spec: {
        kubernetesVersion: '1.31.4',
        backend: { name: 'sim', kind: 'simulator' },
        controlPlane: { count: 1, machineClass: 'm1.large' },
      },
    })
    expect(cluster.spec.nodeGroups).toHaveLength(1)
    expect(cluster.spec.nodeGroups[0]).toMatchObject({
      name: 'workers',
      role: 'worker',
      machineClass: 'm1.large',
      count: 3,
      minCount: 1,
      maxCount: 10,
      zones: ['zone-a', 'zone-b'],
    })

    const byId = await app.inject({ method: 'GET', url: clusterUrl(op.resource.id) })
    expect(byId.statusCode).toBe(200)
    expect(byId.json()).toEqual(cluster)
    expect(byId.headers.etag).toBe(byName.headers.etag)
  })

  it('shows the effective configuration and where every value came from', async () => {
    await createClusterOk(app, 'team-a', 'tuned', {
      controlPlane: { count: 3 },
      features: { ingress: { controller: 'nginx' }, monitoring: { retentionDays: 30 } },
      nodeGroups: [{ name: 'workers', count: 5 }],
    })
    const c: Json = await getJson(app, clusterUrl('tuned'))
    expect(c.spec.features.ingress).toEqual({ controller: 'nginx' })
    expect(c.spec.features.monitoring).toEqual({ enabled: false, retentionDays: 30 })
    expect(c.spec.features.cni).toEqual({ plugin: 'calico' })
    expect(c.spec.controlPlane).toEqual({ count: 3, machineClass: 'm1.large' })
    expect(c.spec.provenance).toMatchObject({
      '/features/ingress/controller': 'cluster',
      '/features/monitoring/retentionDays': 'cluster',
      '/features/monitoring/enabled': 'default',
      '/features/cni/plugin': 'default',
      '/controlPlane/count': 'cluster',
      '/controlPlane/machineClass': 'template',
    })
    const workers = c.spec.nodeGroups[0]
    expect(workers.count).toBe(5)
    expect(workers.provenance).toMatchObject({
      '/count': 'nodeGroup',
      '/machineClass': 'template',
      '/maxCount': 'template',
      '/maxSurge': 'default',
    })

    // A value set by the template is credited to the template.
    await createClusterOk(app, 'team-a', 'edgy', { template: 'edge' })
    const e: Json = await getJson(app, clusterUrl('edgy'))
    expect(e.spec.features.ingress).toEqual({ controller: 'nginx' })
    expect(e.spec.provenance['/features/ingress/controller']).toBe('template')
    expect(e.template).toEqual({ name: 'edge', version: 1 })
  })

  it('a duplicate name is 409 pointing at /name, and writes nothing', async () => {
    await createClusterOk(app, 'team-a', 'dup')
    const before = await rowCounts()
    const res = await createCluster(app, 'team-a', { name: 'dup', template: 'k8s-1.31' })
    const problem = expectProblem(res, 409)
    expect(problem.type).toBe('https://kiln.dev/problems/conflict')
    expect(pointersOf(problem)).toEqual(['/name'])
    expect(await rowCounts()).toEqual(before)
    expect(await api.db.cluster.count({ where: { name: 'dup' } })).toBe(1)
  })

  it('an unknown project is 404', async () => {
    const res = await createCluster(app, 'no-such-project', { name: 'x', template: 'k8s-1.31' })
    expectProblem(res, 404)
  })
})

describe('semantic rules answer 422 with pointers into the request', () => {
  async function expect422(body: Record<string, unknown>, pointers: string[]) {
    const before = await rowCounts()
    const res = await createCluster(app, 'team-a', body)
    const problem = expectProblem(res, 422)
    expect(problem.type).toBe('https://kiln.dev/problems/invalid-spec')
    expect(pointersOf(problem, 'body')).toEqual(expect.arrayContaining(pointers))
    expect(problem.errors!.length).toBeGreaterThanOrEqual(pointers.length)
    for (const e of problem.errors!) expect(e.message.length).toBeGreaterThan(0)
    expect(await rowCounts()).toEqual(before)
    return problem
  }

  it('changing a feature the template locks', async () => {
    const p = await expect422(
      { name: 'r1', template: 'locked-cni', features: { cni: { plugin: 'calico' } } },
      ['/features/cni/plugin'],
    )
    expect(p.detail).toContain('locked')
  })

  it('restating a locked feature’s own value is accepted', async () => {
    await createClusterOk(app, 'team-a', 'r1-ok', {
      template: 'locked-cni',
      features: { cni: { plugin: 'cilium' } },
    })
  })

  it('GPU support without a node group that has GPUs', async () => {
    await expect422({ name: 'r2', template: 'k8s-1.31', features: { gpu: { enabled: true } } }, [
      '/features/gpu/enabled',
    ])
  })

  it('an unknown machine class, in a node group and in the control plane', async () => {
    await expect422(
      {
        name: 'r3',
        template: 'k8s-1.31',
        controlPlane: { machineClass: 'm9.colossal' },
        nodeGroups: [{ name: 'workers', machineClass: 'm9.huge' }],
      },
      ['/nodeGroups/0/machineClass', '/controlPlane/machineClass'],
    )
  })

  it('a template on an expired Kubernetes version', async () => {
    const p = await expect422({ name: 'r4', template: 'old-k8s' }, ['/template'])
    expect(p.detail).toContain('1.29.12')
    expect(p.detail).toContain('expired')
  })

  it('a count outside the node group’s bounds', async () => {
    await expect422({ name: 'r5', template: 'k8s-1.31', nodeGroups: [{ name: 'workers', count: 11 }] }, [
      '/nodeGroups/0/count',
    ])
    await expect422({ name: 'r5', template: 'k8s-1.31', nodeGroups: [{ name: 'workers', count: 0 }] }, [
      '/nodeGroups/0/count',
    ])
  })

  it('an added node group without machineClass and count', async () => {
    const p = await expect422({ name: 'r6', template: 'k8s-1.31', nodeGroups: [{ name: 'extra' }] }, [
      '/nodeGroups/0',
    ])
    expect(p.errors!.map((e) => e.message).join(' ')).toMatch(
      /machineClass[\s\S]*count|count[\s\S]*machineClass/,
    )
  })

  it('a node group listed twice', async () => {
    await expect422(
      {
        name: 'r6',
        template: 'k8s-1.31',
        nodeGroups: [
          { name: 'extra', machineClass: 'm1.large', count: 1 },
          { name: 'extra', machineClass: 'm1.large', count: 2 },
        ],
      },
      ['/nodeGroups/1/name'],
    )
  })

  it('an unknown template', async () => {
    await expect422({ name: 'r7', template: 'no-such-template' }, ['/template'])
  })

  it('every violation at once', async () => {
    const p = await expect422(
      {
        name: 'r8',
        template: 'k8s-1.31',
        features: { gpu: { enabled: true } },
        nodeGroups: [{ name: 'workers', machineClass: 'm9.huge', count: 50 }],
      },
      ['/features/gpu/enabled', '/nodeGroups/0/machineClass', '/nodeGroups/0/count'],
    )
    expect(p.errors).toHaveLength(3)
  })

  it('dry runs apply the same rules', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/cluster-plans',
      payload: { name: 'r9', template: 'k8s-1.31', features: { gpu: { enabled: true } } },
    })
    expect(pointersOf(expectProblem(res, 422))).toContain('/features/gpu/enabled')
  })
})

describe('planCluster (POST …/cluster-plans)', () => {
  it('returns the plan and what it would consume, and writes nothing', async () => {
    const before = await rowCounts()
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/cluster-plans',
      payload: {
        name: 'planned',
        template: 'k8s-1.31',
        features: { gpu: { enabled: true } },
        nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 2 }],
      },
      headers: { 'idempotency-key': 'dry-run-key' },
    })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers.location).toBeUndefined()
    const plan: Json = res.json()
    expect(plan.template).toEqual({ name: 'k8s-1.31', version: 1, deprecated: false })
    expect(plan.operation).toEqual({ kind: 'cluster.create', steps: createSteps })
    expect(plan.spec.features.gpu).toEqual({ enabled: true, mode: 'device-plugin' })
    expect(plan.spec.provenance['/features/gpu/enabled']).toBe('cluster')
    expect(plan.spec.nodeGroups.map((ng: Json) => ng.name)).toEqual(['workers', 'gpus'])
    const gpus = plan.spec.nodeGroups[1]
    expect(gpus).toMatchObject({ machineClass: 'gpu.a100x4', count: 2, zones: ['zone-a'] })
    expect(gpus.features.gpu.enabled).toBe(true)
    expect(plan.spec.nodeGroups[0].features.gpu.enabled).toBe(false)
    // Control plane 1 × m1.large (4 vCPU), workers 3 × m1.large, gpus 2 × gpu.a100x4 (32 vCPU, 4 GPUs).
    expect(plan.consumption).toEqual({
      clusters: 1,
      nodes: 6,
      vcpus: 4 + 3 * 4 + 2 * 32,
      memoryMiB: 4 * 16384 + 2 * 262144,
      gpus: 8,
      gpusByModel: { 'nvidia-a100': 8 },
    })

    expect(await rowCounts()).toEqual(before)
    expectProblem(await app.inject({ method: 'GET', url: clusterUrl('planned') }), 404)
  })

  it('createCluster has no ?dryRun: an old client asking for a plan gets 400, and no cluster', async () => {
    const before = await rowCounts()
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters?dryRun=true',
      payload: { name: 'not-planned', template: 'k8s-1.31' },
    })
    expect(pointersOf(expectProblem(res, 400), 'query')).toEqual(['/dryRun'])
    expect(await rowCounts()).toEqual(before)
  })
})

describe('another project’s clusters', () => {
  let secretId: string

  beforeAll(async () => {
    secretId = (await createClusterOk(app, 'team-b', 'secret')).resource.id
  })

  it('are visible in their own project', async () => {
    const c: Json = await getJson(app, clusterUrl('secret', 'team-b'))
    expect(c.project).toBe('team-b')
  })

  it('answer 404 through another project’s path, by name and by id', async () => {
    for (const ref of ['secret', secretId]) {
      const p = expectProblem(await app.inject({ method: 'GET', url: clusterUrl(ref) }), 404)
      expect(p.detail).not.toContain('team-b')
      expectProblem(
        await app.inject({ method: 'PATCH', url: clusterUrl(ref), payload: { labels: { a: 'b' } } }),
        404,
      )
      expectProblem(await app.inject({ method: 'DELETE', url: clusterUrl(ref) }), 404)
      expectProblem(await app.inject({ method: 'GET', url: `${clusterUrl(ref)}/nodegroups` }), 404)
    }
    const list: Json = await getJson(app, '/v1/projects/team-a/clusters?limit=500')
    expect(list.items.map((c: Json) => c.name)).not.toContain('secret')
    const row = await api.db.cluster.findUniqueOrThrow({ where: { id: secretId } })
    expect(row.deletionRequested).toBe(false)
    expect(row.labels).toEqual({})
  })

  it('names do not collide across projects', async () => {
    await createClusterOk(app, 'team-a', 'secret')
  })
})

describe('GET /v1/projects/{project}/clusters', () => {
  const names = ['p-0', 'p-1', 'p-2', 'p-3', 'p-4', 'p-5', 'p-6']
  const list = (query: string) =>
    getJson<{ items: Json[]; nextCursor: string | null }>(app, `/v1/projects/paging/clusters?${query}`)
  const namesOf = (page: { items: Json[] }) => page.items.map((c) => c.name)

  beforeAll(async () => {
    for (const [i, name] of names.entries()) {
      const labels: Record<string, string> = { team: i % 2 === 0 ? 'a' : 'b' }
      if (i < 3) labels['env'] = 'prod'
      await createClusterOk(app, 'paging', name, { labels, template: i === 6 ? 'edge' : 'k8s-1.31' })
    }
  })

  it('follows nextCursor through every cluster once, in a stable (createdAt, id) order', async () => {
    const seen: string[] = []
    const sizes: number[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const page = await list(`limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
      sizes.push(page.items.length)
      seen.push(...namesOf(page))
      cursor = page.nextCursor
      pages++
    } while (cursor && pages < 10)
    expect(sizes).toEqual([3, 3, 1])
    expect(seen).toEqual(names)
    expect(new Set(seen).size).toBe(seen.length)

    const all = await list('limit=500')
    expect(all.nextCursor).toBeNull()
    expect(namesOf(all)).toEqual(names)
    const sorted = [...all.items].sort((a, b) =>
      a.createdAt === b.createdAt ? (a.id < b.id ? -1 : 1) : a.createdAt < b.createdAt ? -1 : 1,
    )
    expect(sorted.map((c) => c.name)).toEqual(names)
    // The same page twice is the same page.
    expect(namesOf(await list('limit=3'))).toEqual(names.slice(0, 3))
  })

  it('an exact multiple of the limit ends with nextCursor null, not an empty page', async () => {
    const first = await list('limit=7')
    expect(namesOf(first)).toEqual(names)
    expect(first.nextCursor).toBeNull()
  })

  it('filters by label (repeatable, AND), also across pages', async () => {
    expect(namesOf(await list('label=team%3Da'))).toEqual(['p-0', 'p-2', 'p-4', 'p-6'])
    expect(namesOf(await list('label=team=b'))).toEqual(['p-1', 'p-3', 'p-5'])
    expect(namesOf(await list('label=team%3Da&label=env%3Dprod'))).toEqual(['p-0', 'p-2'])
    expect(namesOf(await list('label=team%3Dc'))).toEqual([])

    const seen: string[] = []
    let cursor: string | null = null
    do {
      const page = await list(
        `label=team%3Da&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      )
      seen.push(...namesOf(page))
      cursor = page.nextCursor
    } while (cursor && seen.length < 10)
    expect(seen).toEqual(['p-0', 'p-2', 'p-4', 'p-6'])
  })

  it('filters by template', async () => {
    expect(namesOf(await list('template=edge'))).toEqual(['p-6'])
    expect(namesOf(await list('template=k8s-1.31'))).toEqual(names.slice(0, 6))
    expect(namesOf(await list('template=no-such-template'))).toEqual([])
  })

  it('filters by phase', async () => {
    expect(namesOf(await list('phase=Pending'))).toEqual(names)
    expect(namesOf(await list('phase=Ready'))).toEqual([])
    const del = await app.inject({ method: 'DELETE', url: '/v1/projects/paging/clusters/p-5' })
    expect(del.statusCode).toBe(202)
    expect(namesOf(await list('phase=Deleting'))).toEqual(['p-5'])
    expect(namesOf(await list('phase=Pending'))).toEqual(names.filter((n) => n !== 'p-5'))
    expect(namesOf(await list('phase=Deleting&label=team%3Db'))).toEqual(['p-5'])
  })

  it('rejects bad query values with 400 problems pointing into the query', async () => {
    const bad = async (query: string, pointer: string) => {
      const p = expectProblem(
        await app.inject({ method: 'GET', url: `/v1/projects/paging/clusters?${query}` }),
        400,
      )
      expect(p.errors).toEqual(expect.arrayContaining([expect.objectContaining({ pointer, in: 'query' })]))
    }
    await bad('phase=Sleeping', '/phase')
    await bad('limit=0', '/limit')
    await bad('limit=501', '/limit')
    await bad('label=novalue', '/label/0')
    await bad('label=team%3Da&label=%3Dx', '/label/1')
    await bad('sort=name', '/sort')
  })

  it('a cursor it never issued is a 4xx problem about the cursor, never a 500', async () => {
    const forged = [
      'not-a-cursor',
      Buffer.from('["yesterday","x"]').toString('base64url'),
      // Well-formed JSON and date, but the id is not a UUID.
      Buffer.from(JSON.stringify(['2020-01-01T00:00:00.000Z', 'x'])).toString('base64url'),
    ]
    for (const cursor of forged) {
      const res = await app.inject({ method: 'GET', url: `/v1/projects/paging/clusters?cursor=${cursor}` })
      expect(res.statusCode, `${cursor}: ${res.body}`).toBeGreaterThanOrEqual(400)
      expect(res.statusCode, `${cursor}: ${res.body}`).toBeLessThan(500)
      const p = expectProblem(res, res.statusCode)
      expect(p.errors).toEqual([expect.objectContaining({ pointer: '/cursor', in: 'query' })])
    }
  })

  it('an unknown project is 404', async () => {
    expectProblem(await app.inject({ method: 'GET', url: '/v1/projects/nope/clusters' }), 404)
  })
})

describe('PATCH labels with ETags', () => {
  beforeAll(async () => {
    await createClusterOk(app, 'team-a', 'labelled', { labels: { team: 'a', env: 'dev' } })
  })

  it('If-Match with the current ETag → 202, an operation already succeeded, and a new ETag', async () => {
    const get = await app.inject({ method: 'GET', url: clusterUrl('labelled') })
    const e1 = get.headers.etag as string
    expect(e1).toMatch(etag)
    const busyWith = get.json().activeOperationId
    expect(busyWith).toEqual(expect.any(String))
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      headers: { 'if-match': e1 },
      payload: { labels: { team: 'b', owner: 'ops' } },
    })
    // The create operation still runs: labels take no part in the one-operation-at-a-time rule.
    expect(res.statusCode, res.body).toBe(202)
    const e2 = res.headers.etag as string
    expect(e2).toMatch(etag)
    expect(e2).not.toBe(e1)
    const op: OperationBody = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
    expect(op).toMatchObject({
      kind: 'cluster.update-labels',
      status: 'succeeded',
      progress: 100,
      steps: [],
      error: null,
      resource: { kind: 'cluster', name: 'labelled', id: get.json().id },
    })
    expect(op).toMatchObject({ startedAt: expect.any(String), finishedAt: expect.any(String) })
    expect((await getJson(app, `/v1/operations/${op.id}`)).status).toBe('succeeded')

    const again = await app.inject({ method: 'GET', url: clusterUrl('labelled') })
    expect(again.headers.etag).toBe(e2)
    const body: Json = again.json()
    expect(body.labels).toEqual({ team: 'b', env: 'dev', owner: 'ops' })
    // Labels are not desired state: same generation, and the running operation keeps the cluster.
    expect(body.generation).toBe(1)
    expect(body.activeOperationId).toBe(busyWith)
  })

  it('a stale If-Match → 412 problem naming the current ETag, and nothing changes', async () => {
    const current = await app.inject({ method: 'GET', url: clusterUrl('labelled') })
    const stale = `"${Number(JSON.parse(current.headers.etag as string)) - 1}"`
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      headers: { 'if-match': stale },
      payload: { labels: { team: 'z' } },
    })
    const p = expectProblem(res, 412)
    expect(p.type).toBe('https://kiln.dev/problems/precondition-failed')
    expect(p['currentETag']).toBe(current.headers.etag)
    const after = await app.inject({ method: 'GET', url: clusterUrl('labelled') })
    expect(after.headers.etag).toBe(current.headers.etag)
    expect(after.json().labels.team).toBe('b')

    // A well-formed ETag this API never issued matches nothing; a header that is no ETag at all is
    // the caller's mistake (400 naming it).
    const foreign = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      headers: { 'if-match': '"banana"' },
      payload: { labels: { team: 'z' } },
    })
    expectProblem(foreign, 412)
    const garbage = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      headers: { 'if-match': 'banana' },
      payload: { labels: { team: 'z' } },
    })
    expect(pointersOf(expectProblem(garbage, 400), 'header')).toEqual(['/If-Match'])
  })

  it('merge-patch semantics: null removes one label; labels: null removes all', async () => {
    const one = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      payload: { labels: { env: null } },
    })
    expect(one.statusCode).toBe(202)
    expect((await getJson(app, clusterUrl('labelled'))).labels).toEqual({ team: 'b', owner: 'ops' })
    const all = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      headers: { 'if-match': '*' },
      payload: { labels: null },
    })
    expect(all.statusCode).toBe(202)
    expect((await getJson(app, clusterUrl('labelled'))).labels).toEqual({})
  })

  it('label keys that are not Kubernetes label keys are 400 on create', async () => {
    const before = await api.db.cluster.count()
    const onCreate = await createCluster(app, 'team-a', {
      name: 'bad-labels',
      template: 'k8s-1.31',
      labels: { 'Bad Key!': 'x' },
    })
    expect(pointersOf(expectProblem(onCreate, 400))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^\/labels/)]),
    )
    expect(await api.db.cluster.count()).toBe(before)
  })

  it('label keys and values are validated on PATCH as on create (400)', async () => {
    const onPatch = await app.inject({
      method: 'PATCH',
      url: clusterUrl('labelled'),
      payload: { labels: { 'Bad Key!': 'not a label value' } },
    })
    expect(pointersOf(expectProblem(onPatch, 400))).toEqual(
      expect.arrayContaining([expect.stringMatching(/^\/labels/)]),
    )
  })

  it('an empty patch is 400; an unknown cluster is 404', async () => {
    expectProblem(await app.inject({ method: 'PATCH', url: clusterUrl('labelled'), payload: {} }), 400)
    expectProblem(
      await app.inject({ method: 'PATCH', url: clusterUrl('nope'), payload: { labels: { a: 'b' } } }),
      404,
    )
  })
})

describe('PATCH features', () => {
  it('on a cluster whose create operation is still active → 409 naming that operation', async () => {
    const create = await createClusterOk(app, 'team-a', 'busy')
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('busy'),
      payload: { features: { monitoring: { enabled: true } } },
    })
    const p = expectProblem(res, 409)
    expect(p.type).toBe('https://kiln.dev/problems/operation-in-progress')
    expect(p['operationId']).toBe(create.id)
    expect(p.detail).toContain(create.id)
    const c: Json = await getJson(app, clusterUrl('busy'))
    expect(c.spec.features.monitoring.enabled).toBe(false)
    expect(c.generation).toBe(1)
    expect(c.activeOperationId).toBe(create.id)
  })

  it('after cancelling the create operation → 202 update-features operation, spec and provenance updated', async () => {
    const create = await createClusterOk(app, 'team-a', 'grow')
    const cancelled = await cancelOk(app, create.id)
    expect(cancelled.steps.every((s) => s.status === 'skipped')).toBe(true)
    const before = await app.inject({ method: 'GET', url: clusterUrl('grow') })
    expect(before.json().activeOperationId).toBeNull()

    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('grow'),
      headers: { 'if-match': before.headers.etag as string },
      payload: { features: { monitoring: { enabled: true } } },
    })
    expect(res.statusCode, res.body).toBe(202)
    const op: OperationBody = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
    expect(res.headers.etag).toMatch(etag)
    expect(op).toMatchObject({
      kind: 'cluster.update-features',
      status: 'pending',
      resource: { kind: 'cluster', name: 'grow', id: create.resource.id },
    })
    expect(op.steps.map((s) => s.name)).toEqual(['install-addons', 'wait-healthy'])

    const after = await app.inject({ method: 'GET', url: clusterUrl('grow') })
    expect(after.headers.etag).toBe(res.headers.etag)
    const c: Json = after.json()
    expect(c.spec.features.monitoring).toEqual({ enabled: true, retentionDays: 15 })
    expect(c.spec.provenance['/features/monitoring/enabled']).toBe('cluster')
    expect(c.spec.provenance['/features/monitoring/retentionDays']).toBe('default')
    expect(c.generation).toBe(2)
    expect(c.activeOperationId).toBe(op.id)

    // And now it is busy with that one.
    const second = await app.inject({
      method: 'PATCH',
      url: clusterUrl('grow'),
      payload: { features: { metricsServer: { enabled: false } } },
    })
    expect(expectProblem(second, 409)['operationId']).toBe(op.id)
  })

  it('a patch that changes no effective value → 202 with an operation already succeeded, nothing to build', async () => {
    await anIdleCluster(app, 'team-a', 'steady')
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('steady'),
      payload: { features: { ingress: { controller: 'traefik' } } },
    })
    expect(res.statusCode, res.body).toBe(202)
    expect(res.json()).toMatchObject({ kind: 'cluster.update-labels', status: 'succeeded', steps: [] })
    const c: Json = await getJson(app, clusterUrl('steady'))
    expect(c.activeOperationId).toBeNull()
    expect(c.generation).toBe(1)
  })

  it('features that cannot change on a live cluster → 422 at /features/<name>', async () => {
    await anIdleCluster(app, 'team-a', 'fixed')
    const cni = await app.inject({
      method: 'PATCH',
      url: clusterUrl('fixed'),
      payload: { features: { cni: { plugin: 'cilium' } } },
    })
    const p = expectProblem(cni, 422)
    expect(pointersOf(p)).toEqual(['/features/cni'])
    const proxy = await app.inject({
      method: 'PATCH',
      url: clusterUrl('fixed'),
      payload: { features: { kubeProxyMode: { mode: 'ipvs' } } },
    })
    expect(pointersOf(expectProblem(proxy, 422))).toEqual(['/features/kubeProxyMode'])
    const c: Json = await getJson(app, clusterUrl('fixed'))
    expect(c.spec.features.cni.plugin).toBe('calico')
    expect(c.activeOperationId).toBeNull()
    expect(c.generation).toBe(1)
  })

  it('the creation rules apply to live changes too (GPU without GPU machines → 422)', async () => {
    await anIdleCluster(app, 'team-a', 'no-gpus')
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('no-gpus'),
      payload: { features: { gpu: { enabled: true } } },
    })
    expect(pointersOf(expectProblem(res, 422))).toContain('/features/gpu/enabled')
  })

  it('an unknown feature or field is 400', async () => {
    const res = await app.inject({
      method: 'PATCH',
      url: clusterUrl('steady'),
      payload: { features: { teleport: { enabled: true } } },
    })
    expect(pointersOf(expectProblem(res, 400))).toContain('/features/teleport')
  })
})

describe('DELETE', () => {
  let create: OperationBody
  let del: OperationBody

  it('answers 202 with a delete operation and supersedes the pending create', async () => {
    create = await createClusterOk(app, 'team-a', 'doomed')
    const res = await app.inject({ method: 'DELETE', url: clusterUrl('doomed') })
    expect(res.statusCode, res.body).toBe(202)
    del = res.json()
    expect(res.headers.location).toBe(`/v1/operations/${del.id}`)
    expect(del).toMatchObject({
      kind: 'cluster.delete',
      status: 'pending',
      resource: { kind: 'cluster', name: 'doomed', id: create.resource.id },
    })
    expect(del.steps.map((s) => s.name)).toEqual([
      'uninstall-addons',
      'drain-workers',
      'release-machines',
      'revoke-certificates',
      'forget-cluster',
    ])

    const c: Json = await getJson(app, clusterUrl('doomed'))
    expect(c.deletionRequested).toBe(true)
    expect(c.activeOperationId).toBe(del.id)
    expect(c.status.phase).toBe('Deleting')
    expect(c.status.conditions).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'Deleting', status: 'True' })]),
    )

    const row = await api.db.operation.findUniqueOrThrow({ where: { id: create.id } })
    expect(row.status).toBe('cancelled')
  })

  it('the superseded create operation can still be read, alone and in the project’s list', async () => {
    const res = await app.inject({ method: 'GET', url: `/v1/operations/${create.id}` })
    expect(res.statusCode, res.body).toBe(200)
    const op: OperationBody = res.json()
    expect(op.status).toBe('cancelled')
    expect(op.error).not.toBeNull()
    const list = await app.inject({
      method: 'GET',
      url: `/v1/projects/team-a/operations?cluster=doomed`,
    })
    expect(list.statusCode, list.body).toBe(200)
    expect(list.json().items.map((o: Json) => o.id)).toEqual([create.id, del.id])
  })

  it('a repeated DELETE answers 202 with the same operation', async () => {
    const again = await app.inject({ method: 'DELETE', url: clusterUrl('doomed') })
    expect(again.statusCode).toBe(202)
    expect(again.json().id).toBe(del.id)
    expect(again.headers.location).toBe(`/v1/operations/${del.id}`)
    expect(
      await api.db.operation.count({ where: { clusterId: create.resource.id, kind: 'cluster.delete' } }),
    ).toBe(1)
  })

  it('while it is going, every change and every new credential is refused with 409 cluster-deleting naming the delete', async () => {
    const before = await rowCounts()
    const read = await app.inject({ method: 'GET', url: clusterUrl('doomed') })
    const refused = {
      'PATCH labels': { method: 'PATCH', url: clusterUrl('doomed'), payload: { labels: { late: 'yes' } } },
      'PATCH features': {
        method: 'PATCH',
        url: clusterUrl('doomed'),
        payload: { features: { monitoring: { enabled: true } } },
      },
      'add a node group': {
        method: 'POST',
        url: `${clusterUrl('doomed')}/nodegroups`,
        payload: { name: 'more', machineClass: 'm1.large', count: 1 },
      },
      resize: {
        method: 'POST',
        url: `${clusterUrl('doomed')}/nodegroups/workers/resize`,
        payload: { count: 4 },
      },
      'PATCH a node group': {
        method: 'PATCH',
        url: `${clusterUrl('doomed')}/nodegroups/workers`,
        payload: { labels: { late: 'yes' } },
      },
      'remove a node group': { method: 'DELETE', url: `${clusterUrl('doomed')}/nodegroups/workers` },
      upgrade: { method: 'POST', url: `${clusterUrl('doomed')}/upgrade`, payload: { template: 'k8s-1.31' } },
      'rotate the CA': {
        method: 'POST',
        url: `${clusterUrl('doomed')}/rotate-ca`,
        payload: { phase: 'start' },
      },
      kubeconfig: { method: 'POST', url: `${clusterUrl('doomed')}/kubeconfig`, payload: {} },
      'sign a CSR': { method: 'POST', url: `${clusterUrl('doomed')}/csr`, payload: { csrPem: 'x' } },
      'retry the superseded create': { method: 'POST', url: `/v1/operations/${create.id}/retry` },
    } as const
    for (const [what, request] of Object.entries(refused)) {
      const res = await app.inject(request)
      expect(res.statusCode, `${what}: ${res.body}`).toBe(409)
      const p = expectProblem(res, 409)
      expect(p.type, what).toBe('https://kiln.dev/problems/cluster-deleting')
      expect(p['operationId'], what).toBe(del.id)
      expect(p.detail, what).toContain(del.id)
    }
    // Nothing was written, and reads still work.
    expect(await rowCounts()).toEqual(before)
    const after = await app.inject({ method: 'GET', url: clusterUrl('doomed') })
    expect(after.statusCode).toBe(200)
    expect(after.headers.etag).toBe(read.headers.etag)
    expect(after.json().labels).toEqual(read.json().labels)
    await getJson(app, `${clusterUrl('doomed')}/nodegroups`)
    await getJson(app, `${clusterUrl('doomed')}/nodegroups/workers`)
  })

  it('a running operation is asked to stop, and the delete waits for it', async () => {
    const running = await createClusterOk(app, 'team-a', 'mid-flight')
    // What the worker does when it picks the operation up.
    await api.db.operation.update({
      where: { id: running.id },
      data: { status: 'running', startedAt: new Date() },
    })
    const res = await app.inject({ method: 'DELETE', url: clusterUrl('mid-flight') })
    expect(res.statusCode).toBe(202)
    const op = await getJson<OperationBody>(app, `/v1/operations/${running.id}`)
    expect(op.status).toBe('running')
    expect(op.cancelRequested).toBe(true)
    const c: Json = await getJson(app, clusterUrl('mid-flight'))
    expect(c.activeOperationId).toBe(res.json().id)
  })

  it('an unknown cluster is 404', async () => {
    expectProblem(await app.inject({ method: 'DELETE', url: clusterUrl('never-was') }), 404)
  })

  it('honours If-Match: a stale ETag → 412 and nothing starts; the current one → 202', async () => {
    await anIdleCluster(app, 'team-a', 'guarded')
    const res = await app.inject({ method: 'GET', url: clusterUrl('guarded') })
    const seen = res.headers.etag as string
    expect(seen).toMatch(etag)
    const patched = await app.inject({
      method: 'PATCH',
      url: clusterUrl('guarded'),
      payload: { labels: { moved: 'on' } },
    })
    // A labels change is applied at once (an operation already succeeded) and moves the ETag.
    expect(patched.statusCode, patched.body).toBe(202)
    expect(patched.json()).toMatchObject({ kind: 'cluster.update-labels', status: 'succeeded' })
    const before = await rowCounts()
    const stale = await app.inject({
      method: 'DELETE',
      url: clusterUrl('guarded'),
      headers: { 'if-match': seen },
    })
    const p = expectProblem(stale, 412)
    expect(p.type).toBe('https://kiln.dev/problems/precondition-failed')
    expect(p['currentETag']).toBe(patched.headers.etag)
    expect(await rowCounts()).toEqual(before)
    expect(((await getJson(app, clusterUrl('guarded'))) as Json).deletionRequested).toBe(false)

    const current = await app.inject({
      method: 'DELETE',
      url: clusterUrl('guarded'),
      headers: { 'if-match': patched.headers.etag as string },
    })
    expect(current.statusCode, current.body).toBe(202)
    // A repeated DELETE (a CI retry with the ETag it had) gets the same operation, not a 412.
    const again = await app.inject({
      method: 'DELETE',
      url: clusterUrl('guarded'),
      headers: { 'if-match': patched.headers.etag as string },
    })
    expect(again.statusCode, again.body).toBe(202)
    expect(again.json().id).toBe(current.json().id)
  })

  it('takes no body: any body, such as {"force":true}, is 400 and nothing starts', async () => {
    await anIdleCluster(app, 'team-a', 'forced')
    const before = await rowCounts()
    for (const payload of [{ force: true }, {}]) {
      const res = await app.inject({ method: 'DELETE', url: clusterUrl('forced'), payload })
      const p = expectProblem(res, 400)
      expect(pointersOf(p, 'body')).toEqual(['/'])
      const group = await app.inject({
        method: 'DELETE',
        url: `${clusterUrl('forced')}/nodegroups/workers`,
        payload,
      })
      expectProblem(group, 400)
    }
    expect(await rowCounts()).toEqual(before)
    expect(((await getJson(app, clusterUrl('forced'))) as Json).deletionRequested).toBe(false)
  })
})

describe('POST …/upgrade of a GPU cluster to a template without GPU support', () => {
  beforeAll(async () => {
    const backend = await api.db.backend.findUniqueOrThrow({ where: { name: 'sim' } })
    await aKubernetesVersion(api.db, '1.32.1')
    const groups = (gpu: boolean) => [
      { name: 'workers', machineClass: 'm1.large', count: 1, minCount: 1, maxCount: 10 },
      ...(gpu ? [{ name: 'gpu', machineClass: 'gpu.a100x4', count: 1, minCount: 0, maxCount: 2 }] : []),
    ]
    for (const [name, kubernetesVersion, gpu] of [
      ['k8s-1.31-gpu', '1.31.4', true],
      ['k8s-1.32', '1.32.1', false],
      ['k8s-1.32-gpu', '1.32.1', true],
    ] as const) {
      await aTemplate(api.db, backend.id, {
        name,
        kubernetesVersion,
        nodeGroups: groups(gpu),
        ...(gpu ? { features: { gpu: { enabled: true } }, lockedFeatures: ['gpu'] } : {}),
      })
    }
    await anIdleCluster(app, 'team-a', 'ml-1', { template: 'k8s-1.31-gpu' })
  })

  it('is 422 at /template naming the GPU node group and the templates that could host it', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `${clusterUrl('ml-1')}/upgrade`,
      payload: { template: 'k8s-1.32' },
    })
    const p = expectProblem(res, 422)
    expect(p.errors).toEqual([
      {
        pointer: '/template',
        in: 'body',
        message:
          "Template k8s-1.32@1 has GPU support off, so it cannot host the cluster's GPU node group 'gpu'. Templates on Kubernetes 1.32.1 that can: k8s-1.32-gpu@1.",
      },
    ])
    expect(await api.db.operation.count({ where: { kind: 'cluster.upgrade' } })).toBe(0)
  })

  it('the template that can host it is accepted', async () => {
    const res = await app.inject({
      method: 'POST',
      url: `${clusterUrl('ml-1')}/upgrade`,
      payload: { template: 'k8s-1.32-gpu' },
    })
    expect(res.statusCode, res.body).toBe(202)
  })
})
