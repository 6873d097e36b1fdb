import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { aDataCentre } from '../../../test/support/builders.ts'
import { createTestDatabase } from '../../../test/support/database.ts'
import { clusterListStatement, createDatabase, type Database, listClusters, poolOf } from '../src/index.ts'

// The cluster list's label selector at scale: 10,000 clusters in one project, each label value
// shared by 1 % of them, each row about as large as a real one (≈ 1.5 kB: the resolved spec with its
// provenance, and the status). The plan PostgreSQL picks for the exact statement the list runs must use the
// GIN index on labels, never read the whole table.

const clusters = 10_000

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  Plans?: PlanNode[]
}

const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)]

describe('the cluster list at 10,000 clusters', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let db: Database
  let projectId: string

  beforeAll(async () => {
    database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
    db = createDatabase({ url: database.url, maxConnections: 2 })
    const { project, template } = await aDataCentre(db)
    projectId = project.id
    await db.$executeRawUnsafe(
      `INSERT INTO "Cluster" (id, "projectId", name, "templateId", request, spec, status, labels, "createdAt", "updatedAt")
       SELECT gen_random_uuid(), $1::uuid, 'c-' || i, $2::uuid, '{}',
              jsonb_build_object('padding', (SELECT string_agg(md5(i::text || g), '') FROM generate_series(1, 42) g)),
              '{"phase":"Ready"}',
              jsonb_build_object('team', 't' || (i % 100), 'shard', 's' || (i % 7)),
              now() - (i || ' seconds')::interval, now()
       FROM generate_series(1, ${clusters}) AS i`,
      project.id,
      template.id,
    )
    await db.$executeRawUnsafe('ANALYZE "Cluster"')
    const [{ size }] = await db.$queryRawUnsafe<[{ size: number }]>(
      'SELECT avg(pg_column_size(c.*))::int AS size FROM "Cluster" c',
    )
    expect(size).toBeGreaterThan(1400)
  })
  afterAll(async () => {
    await db?.$disconnect()
    await database?.drop()
  })

  async function planOf(statement: { text: string; values: unknown[] }): Promise<PlanNode[]> {
    const { rows } = await poolOf(db)!.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) ${statement.text}`,
      statement.values,
    )
    return nodesOf(rows[0]!['QUERY PLAN'][0].Plan)
  }

  it('a label selector is answered from the GIN index on labels, not a sequential scan', async () => {
    const statement = clusterListStatement({ projectId, limit: 50, labels: { team: 't7' } })
    const nodes = await planOf(statement)
    const summary = nodes.map((n) => `${n['Node Type']} ${n['Index Name'] ?? n['Relation Name'] ?? ''}`)
    expect(summary.filter((s) => s.startsWith('Seq Scan'))).toEqual([])
    expect(
      nodes.some((n) => n['Index Name'] === 'Cluster_labels_idx'),
      summary.join(' > '),
    ).toBe(true)
  })

  it('two selectors, phase and a cursor keep to the index too', async () => {
    const first = await listClusters(db, { projectId, limit: 10, labels: { team: 't7', shard: 's3' } })
    expect(first.nextCursor).not.toBeNull()
    const statement = clusterListStatement({
      projectId,
      limit: 10,
      labels: { team: 't7', shard: 's3' },
      phase: 'Ready',
      cursor: first.nextCursor!,
    })
    const nodes = await planOf(statement)
    expect(nodes.filter((n) => n['Node Type'] === 'Seq Scan')).toEqual([])
    expect(nodes.some((n) => n['Index Name'] === 'Cluster_labels_idx')).toBe(true)
  })

  it('returns the matching clusters in (createdAt, id) order, page after page', async () => {
    const expected = await db.cluster.findMany({
      where: { projectId },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      select: { name: true, labels: true },
    })
    const want = expected
      .filter((c) => (c.labels as Record<string, string>)['team'] === 't7')
      .map((c) => c.name)
    expect(want).toHaveLength(clusters / 100)
    const got: string[] = []
    let cursor: string | undefined
    do {
      const page = await listClusters(db, {
        projectId,
        limit: 30,
        labels: { team: 't7' },
        ...(cursor ? { cursor } : {}),
      })
      got.push(...page.items.map((c) => c.name))
      cursor = page.nextCursor ?? undefined
    } while (cursor)
    expect(got).toEqual(want)
  })
})
