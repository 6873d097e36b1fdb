import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import {
  aDataCentre,
  aKubernetesVersion,
  aMachineClass,
  aProject,
  aTemplate,
} from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import {
  anIdleCluster,
  cancelOk,
  createCluster,
  createClusterOk,
  expectProblem,
  getJson,
  type ProblemBody,
  pointersOf,
} from './helpers.ts'

// Quotas per project, through the real API on a real database: checked and reserved in the
// transaction that accepts a create or a resize, shown by dry runs, set and read by their routes.
// Each describe block has a project of its own, so their quotas and usage do not meet.

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

interface QuotaLine {
  resource: string
  limit: number | null
  usage: number
  request: number
  remaining: number | null
  exceeded: boolean
}

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  // More connections than the quota fits clusters: the 20 creates really run side by side, so
  // without the project lock more than 5 would see room (checked by removing the lock).
  api = await startTestApi({ maxConnections: 12 })
  app = api.app
  const { backend } = await aDataCentre(api.db)
  await aMachineClass(api.db, backend.id, {
    name: 'gpu.h100x8',
    cpu: 64,
    memoryMiB: 524288,
    gpuModel: 'nvidia-h100',
    gpuCount: 8,
    zones: ['zone-b'],
  })
  await aKubernetesVersion(api.db, '1.32.1')
  await aTemplate(api.db, backend.id, { name: 'k8s-1.32', kubernetesVersion: '1.32.1' })
  for (const name of ['race', 'race-gpu', 'gpu-q', 'resize-q', 'dry', 'settings', 'usage-q', 'upgrade-q']) {
    await aProject(api.db, name)
  }
})

afterAll(async () => {
  await api?.close()
})

const quotaUrl = (project: string) => `/v1/projects/${project}/quota`

async function putQuota(
  project: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  return app.inject({ method: 'PUT', url: quotaUrl(project), payload: body, headers })
}

async function setQuota(project: string, body: Record<string, unknown>) {
  const res = await putQuota(project, body)
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as Json
}

/** A 422 quota-exceeded, with its exceeded lines. */
function expectQuotaExceeded(res: Parameters<typeof expectProblem>[0]) {
  const problem = expectProblem(res, 422) as ProblemBody & { exceeded: QuotaLine[] }
  expect(problem.type).toBe('https://kiln.dev/problems/quota-exceeded')
  expect(problem.title).toBe('Quota exceeded')
  expect(Array.isArray(problem.exceeded)).toBe(true)
  expect(problem.exceeded.length).toBeGreaterThan(0)
  for (const line of problem.exceeded) expect(line.exceeded).toBe(true)
  return problem
}

async function projectCounts(project: string) {
  const { id } = await api.db.project.findUniqueOrThrow({ where: { name: project } })
  const [clusters, nodeGroups, operations, audit] = await Promise.all([
    api.db.cluster.count({ where: { projectId: id } }),
    api.db.nodeGroup.count({ where: { cluster: { projectId: id } } }),
    api.db.operation.count({ where: { projectId: id } }),
    api.db.auditEvent.count({ where: { projectId: id } }),
  ])
  return { clusters, nodeGroups, operations, audit }
}

const usageOf = (project: string) => getJson<Json>(app, `/v1/projects/${project}/usage`)
const resourceOf = (lines: { resource: string }[], resource: string) =>
  lines.find((l) => l.resource === resource)

describe('an upgrade’s surge machines', () => {
  // From the template: 1 control-plane and 3 worker m1.large machines, maxSurge 1. A rolling upgrade
  // holds one extra machine at a time, so it needs room for one more node.
  const upgrade = () =>
    app.inject({
      method: 'POST',
      url: '/v1/projects/upgrade-q/clusters/up/upgrade',
      payload: { template: 'k8s-1.32' },
    })

  it('are refused (422 at /template) when the quota has no room for them, and nothing starts', async () => {
    await anIdleCluster(app, 'upgrade-q', 'up')
    await setQuota('upgrade-q', { nodes: 4, vcpus: 16 })
    const problem = expectQuotaExceeded(await upgrade())
    expect(problem.exceeded).toEqual([
      { resource: 'nodes', limit: 4, usage: 4, request: 1, remaining: 0, exceeded: true },
      { resource: 'vcpus', limit: 16, usage: 16, request: 4, remaining: 0, exceeded: true },
    ])
    // One error per exceeded resource, each at the field that asked for it.
    expect(pointersOf(problem, 'body')).toEqual(['/template', '/template'])
    const cluster = await api.db.cluster.findFirstOrThrow({
      where: { name: 'up' },
      include: { template: true },
    })
    expect([cluster.activeOperationId, cluster.template.name]).toEqual([null, 'k8s-1.31'])
  })

  it('are accepted once the quota has room for one more machine', async () => {
    await setQuota('upgrade-q', { nodes: 5, vcpus: 20 })
    const res = await upgrade()
    expect(res.statusCode, res.body).toBe(202)
    expect((res.json() as Json).kind).toBe('cluster.upgrade')
  })
})

describe('20 parallel creates against a quota that fits 5', () => {
  it('by cluster count: exactly 5 accepted, 15 refused, 5 clusters and 5 operations written', async () => {
    await setQuota('race', { clusters: 5 })
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        createCluster(app, 'race', { name: `c-${i}`, template: 'k8s-1.31' }),
      ),
    )
    const statuses = responses.map((r) => r.statusCode)
    expect(
      statuses.filter((s) => s === 202),
      responses.map((r) => r.body).join('\n'),
    ).toHaveLength(5)
    expect(statuses.filter((s) => s === 422)).toHaveLength(15)
    for (const res of responses.filter((r) => r.statusCode === 422)) {
      const problem = expectQuotaExceeded(res)
      // Every refusal saw all five reservations: none was refused while a slot was free.
      expect(problem.exceeded).toEqual([
        { resource: 'clusters', limit: 5, usage: 5, request: 1, remaining: 0, exceeded: true },
      ])
    }
    const accepted = responses
      .filter((r) => r.statusCode === 202)
      .map((r) => (r.json() as Json).resource.name)
    const counts = await projectCounts('race')
    expect(counts.clusters).toBe(5)
    expect(counts.operations).toBe(5)
    const rows = await api.db.cluster.findMany({
      where: { project: { name: 'race' } },
      select: { name: true },
    })
    expect(rows.map((r) => r.name).sort()).toEqual(accepted.sort())
    expect((await usageOf('race')).usage.clusters).toBe(5)
  })

  it('by GPUs of one model: 20 A100s fit 5 clusters of one 4-GPU machine each', async () => {
    await setQuota('race-gpu', { gpusByModel: { 'nvidia-a100': 20 } })
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        createCluster(app, 'race-gpu', {
          name: `g-${i}`,
          template: 'k8s-1.31',
          nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1 }],
        }),
      ),
    )
    const statuses = responses.map((r) => r.statusCode)
    expect(
      statuses.filter((s) => s === 202),
      responses.map((r) => r.body).join('\n'),
    ).toHaveLength(5)
    expect(statuses.filter((s) => s === 422)).toHaveLength(15)
    for (const res of responses.filter((r) => r.statusCode === 422)) {
      expect(expectQuotaExceeded(res).exceeded).toEqual([
        { resource: 'gpus:nvidia-a100', limit: 20, usage: 20, request: 4, remaining: 0, exceeded: true },
      ])
    }
    const counts = await projectCounts('race-gpu')
    expect(counts).toMatchObject({ clusters: 5, operations: 5, nodeGroups: 10 })
  })
})

describe('GPU quota by model', () => {
  it('refuses more A100s than allowed, naming gpus:nvidia-a100, the limit, the usage and the request', async () => {
    await setQuota('gpu-q', { gpus: 16, gpusByModel: { 'nvidia-a100': 8 } })
    const before = await projectCounts('gpu-q')
    const res = await createCluster(app, 'gpu-q', {
      name: 'too-many',
      template: 'k8s-1.31',
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 3 }],
    })
    const problem = expectQuotaExceeded(res)
    expect(problem.exceeded).toEqual([
      { resource: 'gpus:nvidia-a100', limit: 8, usage: 0, request: 12, remaining: 8, exceeded: true },
    ])
    expect(problem.detail).toContain(
      'gpus:nvidia-a100: the limit is 8, 0 are in use and this request needs 12 more.',
    )
    // The node group that asks for them, by its place in the request.
    expect(pointersOf(problem, 'body')).toEqual(['/nodeGroups/0'])
    expect(await projectCounts('gpu-q')).toEqual(before)
  })

  it('accepts up to the limit, then refuses the next A100 machine', async () => {
    await createClusterOk(app, 'gpu-q', 'eight', {
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 2 }],
    })
    const res = await createCluster(app, 'gpu-q', {
      name: 'one-more',
      template: 'k8s-1.31',
      nodeGroups: [
        { name: 'workers', count: 1 },
        { name: 'gpus', machineClass: 'gpu.a100x4', count: 1 },
      ],
    })
    expect(expectQuotaExceeded(res).exceeded).toEqual([
      { resource: 'gpus:nvidia-a100', limit: 8, usage: 8, request: 4, remaining: 0, exceeded: true },
    ])
    expect(pointersOf(expectProblem(res, 422))).toEqual(['/nodeGroups/1'])
  })

  it('a model the quota does not name is bounded by the total only', async () => {
    // 8 A100s in use; 8 H100s fit the total of 16, a second 8 do not.
    await createClusterOk(app, 'gpu-q', 'hopper', {
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.h100x8', count: 1 }],
    })
    const res = await createCluster(app, 'gpu-q', {
      name: 'hopper-2',
      template: 'k8s-1.31',
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.h100x8', count: 1 }],
    })
    expect(expectQuotaExceeded(res).exceeded).toEqual([
      { resource: 'gpus', limit: 16, usage: 16, request: 8, remaining: 0, exceeded: true },
    ])
  })
})

describe('resizes and new node groups', () => {
  const resize = (cluster: string, count: number) =>
    app.inject({
      method: 'POST',
      url: `/v1/projects/resize-q/clusters/${cluster}/nodegroups/workers/resize`,
      payload: { count },
    })

  beforeAll(async () => {
    // Each from the template: 1 control-plane and 3 worker m1.large machines (4 nodes, 16 vCPUs).
    // `grow` is idle; `busy` still has its create operation.
    await anIdleCluster(app, 'resize-q', 'grow')
    busyCreate = await createClusterOk(app, 'resize-q', 'busy')
    await setQuota('resize-q', { nodes: 10, vcpus: 1000 })
  })
  let busyCreate: Json

  it('refuses a resize beyond the quota with 422 at /count, and writes nothing', async () => {
    const before = await projectCounts('resize-q')
    const problem = expectQuotaExceeded(await resize('grow', 6))
    expect(problem.exceeded).toEqual([
      { resource: 'nodes', limit: 10, usage: 8, request: 3, remaining: 2, exceeded: true },
    ])
    expect(pointersOf(problem, 'body')).toEqual(['/count'])
    expect(await projectCounts('resize-q')).toEqual(before)
    const ng = await api.db.nodeGroup.findFirstOrThrow({
      where: { name: 'workers', cluster: { name: 'grow' } },
    })
    expect(ng.count).toBe(3)
  })

  it('accepts a resize within the quota, which counts at once', async () => {
    const res = await resize('grow', 5)
    expect(res.statusCode, res.body).toBe(202)
    await cancelOk(app, (res.json() as Json).id)
    expect((await usageOf('resize-q')).usage.nodes).toBe(10)
  })

  it('refuses a new node group beyond the quota with 422 at /count', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/resize-q/clusters/grow/nodegroups',
      payload: { name: 'extra', machineClass: 'm1.large', count: 1 },
    })
    const problem = expectQuotaExceeded(res)
    expect(problem.exceeded).toEqual([
      { resource: 'nodes', limit: 10, usage: 10, request: 1, remaining: 0, exceeded: true },
    ])
    expect(pointersOf(problem, 'body')).toEqual(['/count'])
    expect(await api.db.nodeGroup.count({ where: { name: 'extra' } })).toBe(0)
  })

  it('a busy cluster is 409 before it is over quota', async () => {
    expectProblem(await resize('busy', 5), 409)
    await cancelOk(app, busyCreate.id)
  })

  it('a shrinking group keeps its machines’ share until they are released', async () => {
    const cluster = await api.db.cluster.findFirstOrThrow({
      where: { name: 'grow', project: { name: 'resize-q' } },
      include: { nodeGroups: true },
    })
    const workers = cluster.nodeGroups.find((g) => g.name === 'workers')!
    // What the engine records for five allocated workers (the release test drives the real engine).
    await api.db.machine.createMany({
      data: [0, 1, 2, 3, 4].map((ordinal) => ({
        clusterId: cluster.id,
        nodeGroupId: workers.id,
        name: `grow-workers-${ordinal}`,
        role: 'worker',
        machineClass: 'm1.large',
        ordinal,
        phase: 'Running',
      })),
    })
    const down = await resize('grow', 1)
    expect(down.statusCode, down.body).toBe(202)
    await cancelOk(app, (down.json() as Json).id)
    // Desired 1, held 5: the group still claims 5 workers, so nothing new fits.
    expect((await usageOf('resize-q')).usage.nodes).toBe(10)
    expectQuotaExceeded(
      await app.inject({
        method: 'POST',
        url: '/v1/projects/resize-q/clusters/grow/nodegroups',
        payload: { name: 'extra', machineClass: 'm1.large', count: 1 },
      }),
    )
    // Released (the worker deletes the rows): the share is back.
    await api.db.machine.deleteMany({ where: { nodeGroupId: workers.id, ordinal: { gte: 1 } } })
    expect((await usageOf('resize-q')).usage.nodes).toBe(6)
  })

  it('giving back is never refused, even under a limit lowered below the usage', async () => {
    await setQuota('resize-q', { nodes: 1 })
    expectQuotaExceeded(await resize('grow', 2))
    const down = await resize('busy', 1)
    expect(down.statusCode, down.body).toBe(202)
    await cancelOk(app, (down.json() as Json).id)
  })
})

describe('planCluster against the quota', () => {
  beforeAll(async () => {
    await createClusterOk(app, 'dry', 'first')
  })

  it('without a quota, shows usage and the request with nothing limited', async () => {
    const res = await createCluster(app, 'dry', { name: 'second', template: 'k8s-1.31' })
    expect(res.statusCode).toBe(202)
    await cancelOk(app, (res.json() as Json).id)
    const plan = await app.inject({
      method: 'POST',
      url: '/v1/projects/dry/cluster-plans',
      payload: { name: 'third', template: 'k8s-1.31' },
    })
    expect(plan.statusCode, plan.body).toBe(200)
    const quota = (plan.json() as Json).quota
    expect(quota.accepted).toBe(true)
    expect(resourceOf(quota.resources, 'nodes')).toEqual({
      resource: 'nodes',
      limit: null,
      usage: 8,
      request: 4,
      remaining: null,
      exceeded: false,
    })
  })

  it('shows usage, request, limit and remaining per resource and whether it would be accepted, writing nothing', async () => {
    await setQuota('dry', { clusters: 2, vcpus: 100, gpusByModel: { 'nvidia-a100': 4 } })
    const before = await projectCounts('dry')
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/dry/cluster-plans',
      payload: {
        name: 'planned',
        template: 'k8s-1.31',
        nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1 }],
      },
    })
    expect(res.statusCode, res.body).toBe(200)
    const plan = res.json() as Json
    expect(plan.consumption).toMatchObject({ clusters: 1, nodes: 5, vcpus: 48, gpus: 4 })
    expect(plan.quota).toEqual({
      accepted: false,
      resources: [
        { resource: 'clusters', limit: 2, usage: 2, request: 1, remaining: 0, exceeded: true },
        { resource: 'nodes', limit: null, usage: 8, request: 5, remaining: null, exceeded: false },
        { resource: 'vcpus', limit: 100, usage: 32, request: 48, remaining: 68, exceeded: false },
        {
          resource: 'memoryMiB',
          limit: null,
          usage: 131072,
          request: 4 * 16384 + 262144,
          remaining: null,
          exceeded: false,
        },
        { resource: 'gpus', limit: null, usage: 0, request: 4, remaining: null, exceeded: false },
        { resource: 'gpus:nvidia-a100', limit: 4, usage: 0, request: 4, remaining: 4, exceeded: false },
      ],
    })
    expect(await projectCounts('dry')).toEqual(before)
    // The real request is refused for the same reason.
    const real = await createCluster(app, 'dry', {
      name: 'planned',
      template: 'k8s-1.31',
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1 }],
    })
    expect(expectQuotaExceeded(real).exceeded.map((l) => l.resource)).toEqual(['clusters'])
    expect(pointersOf(expectProblem(real, 422))).toEqual(['/'])
    expect(await projectCounts('dry')).toEqual(before)
  })
})

describe('GET and PUT /v1/projects/{project}/quota', () => {
  it('a project without a quota is unlimited', async () => {
    const res = await app.inject({ method: 'GET', url: quotaUrl('settings') })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.headers.etag).toBe('"0"')
    expect(res.json()).toEqual({
      project: 'settings',
      limits: { clusters: null, nodes: null, vcpus: null, memoryMiB: null, gpus: null, gpusByModel: {} },
      updatedBy: null,
      updatedAt: null,
    })
  })

  it('sets the whole quota, returns it with an ETag, and audits the change', async () => {
    const res = await putQuota('settings', { clusters: 3, gpus: 8, gpusByModel: { 'nvidia-a100': 4 } })
    expect(res.statusCode, res.body).toBe(200)
    const body = res.json() as Json
    expect(body).toMatchObject({
      project: 'settings',
      limits: {
        clusters: 3,
        nodes: null,
        vcpus: null,
        memoryMiB: null,
        gpus: 8,
        gpusByModel: { 'nvidia-a100': 4 },
      },
      updatedBy: 'user:local-operator',
    })
    expect(res.headers.etag).toMatch(/^"\d+"$/)
    const read = await app.inject({ method: 'GET', url: quotaUrl('settings') })
    expect(read.json()).toEqual(body)
    expect(read.headers.etag).toBe(res.headers.etag)

    const audit = await api.db.auditEvent.findMany({
      where: { action: 'quota.update', projectId: await projectId('settings') },
    })
    expect(audit).toHaveLength(1)
    expect(audit[0]).toMatchObject({ actor: 'user:local-operator', targetKind: 'project' })
    expect(audit[0]!.data).toEqual({
      before: { clusters: null, nodes: null, vcpus: null, memoryMiB: null, gpus: null, gpusByModel: {} },
      after: body.limits,
    })

    // PUT replaces: what is left out becomes unlimited.
    const replaced = await setQuota('settings', { nodes: 10 })
    expect(replaced.limits).toEqual({
      clusters: null,
      nodes: 10,
      vcpus: null,
      memoryMiB: null,
      gpus: null,
      gpusByModel: {},
    })
  })

  it('honours If-Match: a stale ETag is 412 and changes nothing', async () => {
    const current = await app.inject({ method: 'GET', url: quotaUrl('settings') })
    const etag = current.headers.etag as string
    const ok = await putQuota('settings', { nodes: 11 }, { 'if-match': etag })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(ok.headers.etag).not.toBe(etag)
    expectProblem(await putQuota('settings', { nodes: 12 }, { 'if-match': etag }), 412)
    expect((await getJson<Json>(app, quotaUrl('settings'))).limits.nodes).toBe(11)
  })

  it('takes only non-negative integers and GPU model names', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ gpus: -1 }, '/gpus'],
      [{ nodes: 1.5 }, '/nodes'],
      [{ clusters: '3' }, '/clusters'],
      [{ vcpus: 2_147_483_648 }, '/vcpus'],
      [{ gpusByModel: { 'nvidia-a100': -4 } }, '/gpusByModel/nvidia-a100'],
      [{ gpusByModel: { 'NVIDIA A100': 4 } }, '/gpusByModel/NVIDIA A100'],
      [{ cpus: 4 }, '/cpus'],
    ]
    for (const [body, pointer] of cases) {
      const problem = expectProblem(await putQuota('settings', body), 400)
      expect(pointersOf(problem, 'body'), JSON.stringify(body)).toContain(pointer)
    }
    expect((await getJson<Json>(app, quotaUrl('settings'))).limits.nodes).toBe(11)
  })

  it('another project’s quota, or a project that does not exist, is 404', async () => {
    expectProblem(await app.inject({ method: 'GET', url: quotaUrl('nope') }), 404)
    expectProblem(await putQuota('nope', { clusters: 1 }), 404)
    expectProblem(await app.inject({ method: 'GET', url: '/v1/projects/nope/usage' }), 404)
  })
})

async function projectId(name: string) {
  return (await api.db.project.findUniqueOrThrow({ where: { name } })).id
}

describe('GET /v1/projects/{project}/usage', () => {
  it('sums what the clusters claim, per resource and GPU model, against the limits', async () => {
    await setQuota('usage-q', { clusters: 10, vcpus: 200, gpusByModel: { 'nvidia-a100': 8 } })
    await createClusterOk(app, 'usage-q', 'cpu')
    const gpu = await createClusterOk(app, 'usage-q', 'gpu', {
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1 }],
    })
    const usage = await usageOf('usage-q')
    // cpu: 4 × m1.large; gpu: 4 × m1.large + 1 × gpu.a100x4.
    expect(usage).toEqual({
      project: 'usage-q',
      usage: {
        clusters: 2,
        nodes: 9,
        vcpus: 8 * 4 + 32,
        memoryMiB: 8 * 16384 + 262144,
        gpus: 4,
        gpusByModel: { 'nvidia-a100': 4 },
      },
      limits: {
        clusters: 10,
        nodes: null,
        vcpus: 200,
        memoryMiB: null,
        gpus: null,
        gpusByModel: { 'nvidia-a100': 8 },
      },
      resources: [
        { resource: 'clusters', usage: 2, limit: 10, remaining: 8 },
        { resource: 'nodes', usage: 9, limit: null, remaining: null },
        { resource: 'vcpus', usage: 64, limit: 200, remaining: 136 },
        { resource: 'memoryMiB', usage: 393216, limit: null, remaining: null },
        { resource: 'gpus', usage: 4, limit: null, remaining: null },
        { resource: 'gpus:nvidia-a100', usage: 4, limit: 8, remaining: 4 },
      ],
    })

    // A cluster being deleted claims only the machines it still holds: this one holds none yet.
    await cancelOk(app, gpu.id)
    const del = await app.inject({ method: 'DELETE', url: '/v1/projects/usage-q/clusters/gpu' })
    expect(del.statusCode, del.body).toBe(202)
    expect((await usageOf('usage-q')).usage).toEqual({
      clusters: 1,
      nodes: 4,
      vcpus: 16,
      memoryMiB: 65536,
      gpus: 0,
      gpusByModel: {},
    })
  })

  it('a deleting cluster keeps counting the machines it holds', async () => {
    const op = await createClusterOk(app, 'usage-q', 'held', {
      nodeGroups: [{ name: 'gpus', machineClass: 'gpu.a100x4', count: 1 }],
    })
    await cancelOk(app, op.id)
    const cluster = await api.db.cluster.findFirstOrThrow({
      where: { name: 'held', project: { name: 'usage-q' } },
      include: { nodeGroups: true },
    })
    const gpus = cluster.nodeGroups.find((g) => g.name === 'gpus')!
    await api.db.machine.create({
      data: {
        clusterId: cluster.id,
        nodeGroupId: gpus.id,
        name: 'held-gpus-0',
        role: 'worker',
        machineClass: 'gpu.a100x4',
        phase: 'Running',
      },
    })
    const del = await app.inject({ method: 'DELETE', url: '/v1/projects/usage-q/clusters/held' })
    expect(del.statusCode, del.body).toBe(202)
    // Only the GPU machine it still holds, and the cluster itself, until that machine is released.
    expect((await usageOf('usage-q')).usage).toEqual({
      clusters: 2,
      nodes: 5,
      vcpus: 16 + 32,
      memoryMiB: 65536 + 262144,
      gpus: 4,
      gpusByModel: { 'nvidia-a100': 4 },
    })
    await api.db.machine.deleteMany({ where: { clusterId: cluster.id } })
    expect((await usageOf('usage-q')).usage.clusters).toBe(1)
  })
})
