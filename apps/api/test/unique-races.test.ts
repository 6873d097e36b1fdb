import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'
import { testIronicConfig } from '../../../test/support/ironic.ts'
import type { KilnApp } from '../src/app.ts'
import { cancelOk, createClusterOk, expectProblem } from './helpers.ts'

// Concurrent creates of the same name race past the "is it taken?" read; the loser must get the
// very 409 a sequential duplicate gets, never the database's unique violation as a 500.

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  // Enough connections that the racing transactions really run side by side.
  api = await startTestApi({ maxConnections: 10 })
  app = api.app
  await aDataCentre(api.db)
  // Idle, so a node group can be added to it.
  await cancelOk(app, (await createClusterOk(app, 'team-a', 'host')).id)
})

afterAll(async () => {
  await api?.close()
})

const inYear = () => new Date(Date.now() + 30 * 24 * 3600 * 1000).toISOString()

interface Case {
  name: string
  url: string
  body: (name: string) => Record<string, unknown>
}

const cases: Case[] = [
  { name: 'projects', url: '/v1/projects', body: (name) => ({ name }) },
  {
    name: 'clusters',
    url: '/v1/projects/team-a/clusters',
    body: (name) => ({ name, template: 'k8s-1.31' }),
  },
  {
    name: 'members',
    url: '/v1/projects/team-a/members',
    body: (name) => ({ kind: 'user', name, role: 'viewer' }),
  },
  {
    name: 'API tokens',
    url: '/v1/projects/team-a/tokens',
    body: (name) => ({ name, role: 'viewer', expiresAt: inYear() }),
  },
  {
    name: 'backends',
    url: '/v1/backends',
    body: (name) => ({ name, kind: 'ironic', config: testIronicConfig() }),
  },
]

const post = (url: string, payload: Record<string, unknown>) => app.inject({ method: 'POST', url, payload })

/** What a problem says, without what differs per request. */
const gist = (res: LightMyRequestResponse) => {
  const { instance: _i, requestId: _r, ...rest } = expectProblem(res, 409)
  return rest
}

describe.each(cases)('concurrent creates of one name: $name', ({ url, body }) => {
  it('one wins, every other gets the sequential duplicate’s 409', async () => {
    for (let round = 0; round < 4; round++) {
      const name = `race-${round}`
      const answers = await Promise.all(Array.from({ length: 5 }, () => post(url, body(name))))
      const won = answers.filter((r) => r.statusCode < 300)
      expect(won.length, answers.map((r) => `${r.statusCode} ${r.body.slice(0, 200)}`).join('\n')).toBe(1)
      const sequential = gist(await post(url, body(name)))
      for (const lost of answers.filter((r) => r.statusCode >= 300)) {
        expect(gist(lost)).toEqual(sequential)
      }
    }
  })
})

describe('concurrent node groups of one name in a cluster', () => {
  it('one wins, every other gets the sequential duplicate’s 409', async () => {
    const url = '/v1/projects/team-a/clusters/host/nodegroups'
    // The cluster is busy after the first node group, so only one create per cluster can win.
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => post(url, { name: 'gpu', machineClass: 'm1.large', count: 1 })),
    )
    expect(
      answers.filter((r) => r.statusCode < 300),
      answers.map((r) => r.body.slice(0, 200)).join('\n'),
    ).toHaveLength(1)
    for (const lost of answers.filter((r) => r.statusCode >= 300)) expectProblem(lost, 409)
  })
})

describe('concurrent publications of one template name', () => {
  it('each publishes its own next version, as one after the other would', async () => {
    const payload = {
      name: 'raced',
      kubernetesVersion: '1.31.4',
      backend: 'sim',
      controlPlane: { count: 1, machineClass: 'm1.large' },
      nodeGroups: [],
    }
    const answers = await Promise.all(Array.from({ length: 5 }, () => post('/v1/templates', payload)))
    expect(
      answers.map((r) => r.statusCode),
      answers.map((r) => r.body.slice(0, 200)).join('\n'),
    ).toEqual([201, 201, 201, 201, 201])
    expect(answers.map((r) => (r.json() as { version: number }).version).sort()).toEqual([1, 2, 3, 4, 5])
  })
})

describe('a row removed between the read that found it and the write that refers to it', () => {
  it('answers 409 conflict, not 500', async () => {
    // Deterministically what a concurrent delete does: the insert refers to a row that is gone by
    // then. A trigger in this test's own database points the new cluster at a project that is gone.
    await api.db.$executeRawUnsafe(`
      CREATE FUNCTION kiln_test_vanish() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN NEW."projectId" := gen_random_uuid(); RETURN NEW; END $$`)
    await api.db.$executeRawUnsafe(`
      CREATE TRIGGER kiln_test_vanish BEFORE INSERT ON "Cluster" FOR EACH ROW
      WHEN (NEW.name = 'vanished') EXECUTE FUNCTION kiln_test_vanish()`)
    try {
      const res = await post('/v1/projects/team-a/clusters', { name: 'vanished', template: 'k8s-1.31' })
      expectProblem(res, 409)
      expect((res.json() as { detail: string }).detail).toMatch(/removed by another request meanwhile/)
    } finally {
      await api.db.$executeRawUnsafe('DROP TRIGGER kiln_test_vanish ON "Cluster"')
      await api.db.$executeRawUnsafe('DROP FUNCTION kiln_test_vanish()')
    }
  })
})
