import { performance } from 'node:perf_hooks'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { poolOf } from '../../../packages/db/src/index.ts'
import { builtinResources } from '../src/resources.ts'
import { listQuery, ObjectStore } from '../src/store.ts'
import { type SimulatedCluster, startSimulatedCluster } from './support.ts'

// Lists by label selector on a kind with thousands of objects, as a Cluster API management
// cluster's controllers list Machines by cluster name: results must be exact whichever part of the
// selector the store narrows in SQL and whichever part is left to the in-memory filter.

let c: SimulatedCluster
const namespace = 'fleet'
const count = 3000
const groups = 300
const configMaps = builtinResources.find((t) => t.resource === 'configmaps')!

interface Fixture {
  name: string
  labels: Record<string, string>
}

// 10 objects per group; parity and a rare label to mix with; a few without labels at all.
const fixtures: Fixture[] = Array.from({ length: count }, (_, i) => ({
  name: `cm-${String(i).padStart(4, '0')}`,
  labels:
    i % 500 === 499
      ? {}
      : {
          group: `g${i % groups}`,
          parity: i % 2 === 0 ? 'even' : 'odd',
          ...(i % 7 === 0 ? { rare: i % 14 === 0 ? '' : 'yes' } : {}),
        },
}))

const namesWhere = (holds: (labels: Record<string, string>) => boolean, names = fixtures) =>
  names
    .filter((f) => holds(f.labels))
    .map((f) => f.name)
    .sort()

const namesOf = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.replace(/^configmap\//, ''))
    .sort()

const listPath = (selector: string, field?: string) =>
  `/api/v1/namespaces/${namespace}/configmaps?labelSelector=${encodeURIComponent(selector)}${
    field ? `&fieldSelector=${encodeURIComponent(field)}` : ''
  }`

async function rawNames(path: string): Promise<string[]> {
  const res = await c.request('GET', path, { Accept: 'application/json' })
  expect(res.status).toBe(200)
  return (res.body.items as { metadata: { name: string } }[]).map((o) => o.metadata.name).sort()
}

beforeAll(async () => {
  c = await startSimulatedCluster({ name: 'labels' })
  expect((await c.kubectl(['create', 'namespace', namespace])).code).toBe(0)
  const store = new ObjectStore(poolOf(c.stack.db)!)
  // A few kB each, as a Machine is: what a list that reads every object pays for.
  const payload = 'x'.repeat(2048)
  for (let i = 0; i < count; i += 100)
    await Promise.all(
      fixtures.slice(i, i + 100).map((f) =>
        store.create(c.clusterId, configMaps, {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: f.name,
            namespace,
            uid: `00000000-0000-4000-8000-${f.name.slice(3).padStart(12, '0')}`,
            creationTimestamp: '2026-01-01T00:00:00Z',
            ...(Object.keys(f.labels).length > 0 ? { labels: f.labels } : {}),
          },
          data: { payload },
        }),
      ),
    )
}, 300_000)

afterAll(async () => {
  await c?.close()
})

describe('list with a label selector', () => {
  const cases: [string, (l: Record<string, string>) => boolean][] = [
    ['group=g7', (l) => l.group === 'g7'],
    ['group==g7', (l) => l.group === 'g7'],
    ['group in (g7)', (l) => l.group === 'g7'],
    ['group in (g7,g8)', (l) => l.group === 'g7' || l.group === 'g8'],
    ['group=g7,parity=odd', (l) => l.group === 'g7' && l.parity === 'odd'],
    ['group=g8,parity!=odd', (l) => l.group === 'g8' && l.parity !== 'odd'],
    ['group=g14,parity in (even,none),rare', (l) => l.group === 'g14' && l.parity === 'even' && 'rare' in l],
    ['group=g14,!rare', (l) => l.group === 'g14' && !('rare' in l)],
    [
      'group notin (g1,g2),rare=yes,parity=odd',
      (l) => !['g1', 'g2'].includes(l.group!) && l.rare === 'yes' && l.parity === 'odd',
    ],
    ['rare=', (l) => l.rare === ''],
    ['group=g7,group=g8', () => false],
    ['group=nothing', () => false],
    ['!group', (l) => !('group' in l)],
  ]

  it.each(cases)('kubectl get cm -l %s lists exactly the matching objects', async (selector, holds) => {
    const got = await c.kubectl(['get', 'configmaps', '-n', namespace, '-l', selector, '-o', 'name'])
    expect(got.code, got.stderr).toBe(0)
    expect(namesOf(got.stdout)).toEqual(namesWhere(holds))
  })

  it.each(cases)(
    'GET …/configmaps?labelSelector=%s lists exactly the matching objects',
    async (selector, holds) => {
      expect(await rawNames(listPath(selector))).toEqual(namesWhere(holds))
    },
  )

  it('narrows the same way across all namespaces and with a table', async () => {
    const all = await c.request(
      'GET',
      `/api/v1/configmaps?labelSelector=${encodeURIComponent('group=g21,parity=odd')}`,
      { Accept: 'application/json' },
    )
    expect((all.body.items as { metadata: { name: string } }[]).map((o) => o.metadata.name).sort()).toEqual(
      namesWhere((l) => l.group === 'g21' && l.parity === 'odd'),
    )
    const wide = await c.kubectl(['get', 'configmaps', '-A', '-l', 'group=g21', '--no-headers'])
    expect(wide.code, wide.stderr).toBe(0)
    expect(wide.stdout.trim().split('\n')).toHaveLength(10)
  })

  it('combines a label selector with a metadata.name field selector', async () => {
    expect(await rawNames(listPath('group=g7', 'metadata.name=cm-0307'))).toEqual(['cm-0307'])
    expect(await rawNames(listPath('group=g7', 'metadata.name=cm-0308'))).toEqual([])
    expect(await rawNames(listPath('group=g7', 'metadata.name!=cm-0307'))).toEqual(
      namesWhere((l) => l.group === 'g7').filter((n) => n !== 'cm-0307'),
    )
    expect(await rawNames(listPath('', 'metadata.name==cm-2999'))).toEqual(['cm-2999'])
    const got = await c.kubectl([
      'get',
      'configmaps',
      '-n',
      namespace,
      '--field-selector',
      'metadata.name=cm-0042',
      '-o',
      'name',
    ])
    expect(got.code, got.stderr).toBe(0)
    expect(namesOf(got.stdout)).toEqual(['cm-0042'])
  })

  it('refuses a malformed field selector even when the labels leave nothing to match', async () => {
    const res = await c.request('GET', listPath('group=nothing', 'metadata.name'), {
      Accept: 'application/json',
    })
    expect(res.status).toBe(400)
    expect(res.body.message).toMatch(/invalid field selector/)
  })

  it('watches by label: the current matching objects, then changes that match', async () => {
    const watch = c.kubectlUntil(
      ['get', 'configmaps', '-n', namespace, '-l', 'group=g33,parity=odd', '-w', '-o', 'name'],
      /cm-late/,
    )
    // kubectl's list comes before its watch; give it that moment before the change.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    await c.kubectl(['create', 'configmap', 'cm-other', '-n', namespace])
    const created = await c.kubectl(
      ['apply', '-f', '-'],
      `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: cm-late, namespace: ${namespace}, labels: { group: g33, parity: odd } }\n`,
    )
    expect(created.code, created.stderr).toBe(0)
    const output = await watch.done
    watch.stop()
    expect(namesOf(output)).toEqual(
      [...namesWhere((l) => l.group === 'g33' && l.parity === 'odd'), 'cm-late'].sort(),
    )
  })

  it('deletes a collection by label and nothing else', async () => {
    const deleted = await c.kubectl(['delete', 'configmaps', '-n', namespace, '-l', 'group=g299,parity=odd'])
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(await rawNames(listPath('group=g299'))).toEqual(
      namesWhere((l) => l.group === 'g299' && l.parity === 'even'),
    )
    expect(await rawNames(listPath('group=g298'))).toHaveLength(10)
  })

  it('finds objects by an equality selector through the labels index, not by reading the kind', async () => {
    const pool = poolOf(c.stack.db)!
    // What autovacuum does after thousands of inserts; the plan depends on these statistics.
    await pool.query('ANALYZE simulator.kube_objects')
    const query = listQuery(c.clusterId, configMaps, namespace, { labels: { group: 'g7' } })
    const { rows } = await pool.query<{ 'QUERY PLAN': string }>({
      text: `EXPLAIN ${query.text}`,
      values: query.values,
    })
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n')
    console.log(`EXPLAIN of list by group=g7 among ${count}:\n${plan}`)
    expect(plan).toMatch(/Bitmap Index Scan on kube_objects_labels/)
    expect((await pool.query(query)).rows).toHaveLength(10)
  })

  it('answers a selective list in time that does not read every object (figures logged)', async () => {
    const time = async (path: string) => {
      const samples: number[] = []
      for (let i = 0; i < 15; i++) {
        const started = performance.now()
        await c.request('GET', path, { Accept: 'application/json' })
        samples.push(performance.now() - started)
      }
      return samples.sort((a, b) => a - b)[7]!
    }
    const byLabel = await time(listPath('group=g5'))
    const mixed = await time(listPath('group=g5,parity in (odd),!rare'))
    const everything = await time(`/api/v1/namespaces/${namespace}/configmaps`)
    console.log(
      `list of ${count} ConfigMaps, median of 15: by label ${byLabel.toFixed(1)} ms, mixed selector ${mixed.toFixed(1)} ms, unfiltered ${everything.toFixed(1)} ms`,
    )
    expect(await rawNames(listPath('group=g5'))).toHaveLength(10)
  })
})
