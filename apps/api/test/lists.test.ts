import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import {
  aBackend,
  aDataCentre,
  aKubernetesVersion,
  aMachineClass,
  aTemplate,
} from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { createClusterOk, expectProblem, pointersOf } from './helpers.ts'

// Every list answers one envelope, `{ items, nextCursor }`, paged with ?limit= and ?cursor= as the
// cluster list is: here the lists that were once answered whole.

type Json = Record<string, unknown>
interface Page {
  items: Json[]
  nextCursor: string | null
}

let api: TestApi
let app: KilnApp

const cluster = '/v1/projects/team-a/clusters/listed'

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  const { backend } = await aDataCentre(api.db)
  await aMachineClass(api.db, backend.id, { name: 'm1.xlarge', cpu: 8, memoryMiB: 32768 })
  await aBackend(api.db, { name: 'sim-2' })
  await aBackend(api.db, { name: 'sim-3' })
  await aKubernetesVersion(api.db, '1.32.1')
  await aTemplate(api.db, backend.id, { name: 'k8s-1.32', kubernetesVersion: '1.32.1' })
  await aTemplate(api.db, backend.id, { name: 'k8s-1.31', version: 2 })
  await createClusterOk(app, 'team-a', 'listed', {
    templateVersion: 1,
    nodeGroups: [
      { name: 'batch', machineClass: 'm1.large', count: 1 },
      { name: 'edge', machineClass: 'm1.large', count: 1 },
    ],
  })
})

afterAll(async () => {
  await api?.close()
})

async function page(url: string): Promise<Page> {
  const res = await app.inject({ method: 'GET', url })
  expect(res.statusCode, res.body).toBe(200)
  const body = res.json() as Page
  expect(Object.keys(body).sort()).toEqual(['items', 'nextCursor'])
  return body
}

/** Walks the list one item per page, following nextCursor. */
async function walk(url: string): Promise<Json[]> {
  const seen: Json[] = []
  let cursor: string | null = null
  const join = url.includes('?') ? '&' : '?'
  do {
    const next: Page = await page(`${url}${join}limit=1${cursor ? `&cursor=${cursor}` : ''}`)
    expect(next.items.length).toBeLessThanOrEqual(1)
    seen.push(...next.items)
    cursor = next.nextCursor
    expect(seen.length).toBeLessThan(100)
  } while (cursor)
  return seen
}

const lists: [string, string, (item: Json) => unknown, unknown[]][] = [
  [
    'features (catalogue order)',
    '/v1/features',
    (f) => f.name,
    ['gpu', 'ingress', 'monitoring', 'cni', 'kubeProxyMode', 'metricsServer', 'autoscaler'],
  ],
  [
    'machine classes (by name)',
    '/v1/machine-classes',
    (m) => m.name,
    ['gpu.a100x4', 'm1.large', 'm1.xlarge'],
  ],
  ['machine classes, filtered', '/v1/machine-classes?gpu=false', (m) => m.name, ['m1.large', 'm1.xlarge']],
  [
    'Kubernetes versions (newest first)',
    '/v1/kubernetes-versions',
    (v) => v.version,
    ['1.32.1', '1.31.4', '1.29.12'],
  ],
  ['backends (by name)', '/v1/backends', (b) => b.name, ['sim', 'sim-2', 'sim-3']],
  [
    'upgrade targets (newest Kubernetes first)',
    `${cluster}/upgrades`,
    (t) => `${t.name}@${t.version}`,
    ['k8s-1.32@1', 'k8s-1.31@2'],
  ],
  // Groups created together (in one transaction) share createdAt: then by name.
  [
    'node groups (oldest first, then by name)',
    `${cluster}/nodegroups`,
    (g) => g.name,
    ['batch', 'edge', 'workers'],
  ],
]

describe.each(lists)('%s', (_, url, keyOf, expected) => {
  it('answers the envelope, everything on one page by default', async () => {
    const all = await page(url)
    expect(all.items.map(keyOf)).toEqual(expected)
    expect(all.nextCursor).toBeNull()
  })

  it('pages with ?limit= and ?cursor=, each item once, in the same order', async () => {
    expect((await walk(url)).map(keyOf)).toEqual(expected)
  })

  it('refuses a cursor it did not issue (422) and a limit out of range (400)', async () => {
    const join = url.includes('?') ? '&' : '?'
    for (const cursor of ['not-a-cursor', Buffer.from('{"a":1}').toString('base64url')]) {
      const p = expectProblem(await app.inject({ method: 'GET', url: `${url}${join}cursor=${cursor}` }), 422)
      expect(pointersOf(p, 'query')).toEqual(['/cursor'])
    }
    expectProblem(await app.inject({ method: 'GET', url: `${url}${join}limit=501` }), 400)
  })
})

describe('a cluster’s CA certificates', () => {
  it('answer the same envelope (empty until the create operation issues them) and take ?limit=', async () => {
    expect(await page(`${cluster}/ca?limit=1`)).toEqual({ items: [], nextCursor: null })
  })
})
