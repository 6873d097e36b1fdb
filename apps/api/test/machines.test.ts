import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import { anIdleCluster, expectProblem, getJson } from './helpers.ts'

// GET …/clusters/{cluster}/machines: what a cluster holds at its backend, whatever the phase, so a
// failed or half-built cluster's reservations are visible (issue 20).

// biome-ignore lint/suspicious/noExplicitAny: response bodies are checked field by field
type Json = any

let api: TestApi
let clusterId: string

const machinesUrl = (cluster: string, project = 'team-a') =>
  `/v1/projects/${project}/clusters/${cluster}/machines`

beforeAll(async () => {
  api = await startTestApi()
  await aDataCentre(api.db)
  await aProject(api.db, 'team-b')
  await anIdleCluster(api.app, 'team-a', 'held')
  await anIdleCluster(api.app, 'team-a', 'empty')
  const cluster = await api.db.cluster.findFirstOrThrow({
    where: { name: 'held' },
    include: { nodeGroups: true },
  })
  clusterId = cluster.id
  const workers = cluster.nodeGroups.find((ng) => ng.name === 'workers')!
  const observedAt = new Date('2026-12-07T12:00:00.000Z')
  // As the worker leaves them: a running control plane (observed unhealthy by the health checker),
  // one worker running, one allocated, one still only reserved.
  await api.db.machine.createMany({
    data: [
      {
        clusterId,
        name: 'k-held-ng-workers-1',
        role: 'worker',
        nodeGroupId: workers.id,
        machineClass: 'm1.large',
        zone: 'zone-b',
        ordinal: 1,
        phase: 'Reserved',
        kubernetesVersion: '1.31.4',
      },
      {
        clusterId,
        name: 'k-held-cp-0',
        role: 'control-plane',
        machineClass: 'm1.large',
        zone: 'zone-a',
        ordinal: 0,
        phase: 'Running',
        externalId: 'dc/zone-a-r01/m1.large/1',
        kubernetesVersion: '1.31.4',
        health: 'Unhealthy',
        healthReason: 'kubelet stopped posting status',
        unhealthySince: observedAt,
        observedAt,
      },
      {
        clusterId,
        name: 'k-held-ng-workers-0',
        role: 'worker',
        nodeGroupId: workers.id,
        machineClass: 'm1.large',
        zone: 'zone-a',
        ordinal: 0,
        phase: 'Running',
        externalId: 'dc/zone-a-r01/m1.large/2',
        kubernetesVersion: '1.31.4',
        health: 'Healthy',
        observedAt,
      },
      {
        clusterId,
        name: 'k-held-ng-workers-2',
        role: 'worker',
        nodeGroupId: workers.id,
        machineClass: 'm1.large',
        zone: 'zone-a',
        ordinal: 2,
        phase: 'Allocated',
        externalId: 'dc/zone-a-r02/m1.large/1',
        kubernetesVersion: '1.31.4',
      },
    ],
  })
})

afterAll(async () => {
  await api?.close()
})

describe('GET /v1/projects/{project}/clusters/{cluster}/machines', () => {
  it('lists every machine the cluster holds with its phase, control plane first', async () => {
    const page = await getJson<Json>(api.app, machinesUrl('held'))
    expect(page.nextCursor).toBeNull()
    expect(page.items.map((m: Json) => [m.name, m.phase])).toEqual([
      ['k-held-cp-0', 'Running'],
      ['k-held-ng-workers-0', 'Running'],
      ['k-held-ng-workers-1', 'Reserved'],
      ['k-held-ng-workers-2', 'Allocated'],
    ])
    expect(page.items[0]).toEqual({
      name: 'k-held-cp-0',
      role: 'control-plane',
      nodeGroup: null,
      machineClass: 'm1.large',
      zone: 'zone-a',
      phase: 'Running',
      externalId: 'dc/zone-a-r01/m1.large/1',
      kubernetesVersion: '1.31.4',
      health: 'Unhealthy',
      healthReason: 'kubelet stopped posting status',
      unhealthySince: '2026-12-07T12:00:00.000Z',
      observedAt: '2026-12-07T12:00:00.000Z',
      createdAt: expect.any(String),
    })
    // A reservation: the backend has not handed it out, nobody has observed it.
    expect(page.items[2]).toMatchObject({
      role: 'worker',
      nodeGroup: 'workers',
      zone: 'zone-b',
      externalId: null,
      health: null,
      healthReason: null,
      unhealthySince: null,
      observedAt: null,
    })
  })

  it('is found by the cluster’s id too', async () => {
    const page = await getJson<Json>(api.app, machinesUrl(clusterId))
    expect(page.items).toHaveLength(4)
  })

  it('pages like every other list', async () => {
    const first = await getJson<Json>(api.app, `${machinesUrl('held')}?limit=3`)
    expect(first.items).toHaveLength(3)
    expect(first.nextCursor).toEqual(expect.any(String))
    const second = await getJson<Json>(
      api.app,
      `${machinesUrl('held')}?limit=3&cursor=${encodeURIComponent(first.nextCursor)}`,
    )
    expect(second.items.map((m: Json) => m.name)).toEqual(['k-held-ng-workers-2'])
    expect(second.nextCursor).toBeNull()
  })

  it('answers an empty page for a cluster that holds nothing', async () => {
    expect(await getJson<Json>(api.app, machinesUrl('empty'))).toEqual({ items: [], nextCursor: null })
  })

  it('answers 404 for a cluster that does not exist, or lives in another project', async () => {
    expectProblem(await api.app.inject({ method: 'GET', url: machinesUrl('nope') }), 404)
    expectProblem(await api.app.inject({ method: 'GET', url: machinesUrl('held', 'team-b') }), 404)
  })
})
