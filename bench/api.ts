/**
 * API benchmark: `npm run bench`.
 *
 * One run builds a throw-away database `kiln_bench_<random>` (migrated with the real
 * `prisma migrate deploy`), seeds one project with 100,000 clusters, starts the Kiln API and two
 * baselines on loopback in this process, drives them with autocannon from a worker thread, prints a
 * table, writes `bench/results/api-<timestamp>.json`, and drops the database, also on error or Ctrl-C.
 *
 *   P1  GET /healthz                              Kiln vs a bare Fastify route        goal ratio >= 0.8
 *   P2  GET /v1/projects/demo/clusters/<name>     Kiln vs one hand-written pg query   goal ratio >= 0.7
 *   P4  GET /v1/projects/demo/clusters?limit=50   page 2,000 (cursor) vs page 1       goal ratio <= 1.2
 *
 * Each pair gets a discarded warm-up per side, then 4 slices per side in A B B A … order, so other load
 * on the machine falls on both sides alike. Latencies come from bench/latency-recorder.cjs (10 µs
 * resolution; autocannon's own histogram floors to whole ms). The seed ends with VACUUM (ANALYZE) so
 * no autovacuum or hint-bit writes run during the measurements.
 *
 * The machine this was written for has 2 cores: server, load generator and Postgres share them, so
 * connections stay at 10 and the absolute numbers are modest; the ratios are what the goals judge.
 * Env: BENCH_DURATION (s, default 8), BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (10), BENCH_CLUSTERS
 * (100000), KILN_BENCH_POSTGRES (postgresql://postgres@127.0.0.1:5432), KILN_BENCH_REDIS.
 */
import os from 'node:os'
import path from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import {
  type ClusterRow,
  createDatabase,
  type Database,
  encodeCursor,
  findClusterInProject,
  findProject,
  listClusters,
  type NodeGroup,
  planCluster,
} from '@kiln/db'
import { initialClusterStatus } from '@kiln/domain'
import autocannon, { type Instance, type Result } from 'autocannon'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import pg from 'pg'
import { buildApp } from '../apps/api/src/app.ts'
import { clusterView } from '../apps/api/src/views.ts'
import {
  createBenchDatabase,
  dbName,
  dbUrl,
  describeMachine,
  envInt,
  explainAnalyze,
  fmt,
  formatTable,
  isCleaningUp,
  log,
  onCleanup,
  openTracedDatabase,
  printReport,
  redisUrl,
  root,
  round,
  runBench,
  runId,
  writeResults,
} from './harness.ts'

const CONFIG = {
  clusters: envInt('BENCH_CLUSTERS', 100_000),
  pageLimit: 50,
  connections: envInt('BENCH_CONNECTIONS', 10),
  durationSeconds: envInt('BENCH_DURATION', 8),
  warmupSeconds: envInt('BENCH_WARMUP', 2),
  /** Load generation runs in one worker thread, so it does not share the servers' event loop. */
  loadWorkers: 1,
  poolSize: 10,
  project: 'demo',
  template: 'k8s-1.31',
}
const PAGE = 2_000
const clusterName = (i: number) => `c-${String(i).padStart(6, '0')}`
/** The autocannon run in progress, so cleanup can stop it. */
let currentLoad: Instance | undefined

// ---------------------------------------------------------------------------------------------
// Database: seed (harness.ts creates and migrates it).

interface Seeded {
  projectId: string
  templateId: string
  nodeGroupsPerCluster: number
  clusterRows: number
  nodeGroupRows: number
  clusterTableBytes: string
  specBytes: number
  timingsMs: Record<string, number>
}

async function seed(db: Database, pool: pg.Pool): Promise<Seeded> {
  const timingsMs: Record<string, number> = {}
  const t0 = performance.now()
  // The catalogue rows the test builders make (test/support/builders.ts).
  const backend = await db.backend.create({
    data: { name: 'sim', kind: 'simulator', capabilities: { zones: ['zone-a', 'zone-b'] } },
  })
  await db.machineClass.create({
    data: {
      name: 'm1.large',
      backendId: backend.id,
      cpu: 4,
      memoryMiB: 16384,
      gpuModel: null,
      gpuCount: 0,
      zones: ['zone-a', 'zone-b'],
    },
  })
  await db.kubernetesVersion.create({ data: { version: '1.31.4', lifecycle: 'supported' } })
  const template = await db.clusterTemplate.create({
    data: {
      name: CONFIG.template,
      version: 1,
      projectId: null,
      kubernetesVersion: '1.31.4',
      backendId: backend.id,
      controlPlane: { count: 1, machineClass: 'm1.large' },
      nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 10 }],
      features: {},
      lockedFeatures: [],
    },
  })
  const project = await db.project.create({ data: { name: CONFIG.project, displayName: 'Demo' } })

  // What POST /clusters with body { name, template } resolves and stores (see createCluster):
  // request = the overrides ({}), spec = plan.resolved.spec, status = initialClusterStatus(now),
  // one node group row per resolved node group.
  const plan = await planCluster(db, project.id, {
    name: clusterName(0),
    template: CONFIG.template,
    overrides: {},
  })
  timingsMs.catalogue = performance.now() - t0

  // createdAt one second apart, oldest first, all in the past: the list order is fully determined.
  const base = new Date(Math.floor(Date.now() / 1000) * 1000 - (CONFIG.clusters + 3_600) * 1000)
  const spec = JSON.stringify(plan.resolved.spec)
  const t1 = performance.now()
  await pool.query(
    `INSERT INTO "Cluster"
       (id, "projectId", name, "templateId", request, spec, status, labels, "createdAt", "updatedAt")
     SELECT gen_random_uuid(), $1::uuid, 'c-' || lpad(i::text, 6, '0'), $2::uuid,
            $3::jsonb, $4::jsonb, $5::jsonb,
            jsonb_build_object('env', 'bench', 'shard', (i % 16)::text),
            $6::timestamptz + make_interval(secs => i), $6::timestamptz + make_interval(secs => i)
     FROM generate_series(1, $7::int) AS i`,
    [
      project.id,
      template.id,
      JSON.stringify({}),
      spec,
      JSON.stringify(initialClusterStatus(base)),
      base,
      CONFIG.clusters,
    ],
  )
  timingsMs.clusters = performance.now() - t1

  const t2 = performance.now()
  for (const ng of plan.resolved.nodeGroups) {
    await pool.query(
      `INSERT INTO "NodeGroup"
         (id, "clusterId", name, role, "machineClass", count, "minCount", "maxCount", zones, labels, taints,
          "maxSurge", "maxUnavailable", features, provenance, "createdAt", "updatedAt")
       SELECT gen_random_uuid(), c.id, $2, $3::"NodeGroupRole", $4, $5, $6, $7, $8::text[], $9::jsonb,
              $10::jsonb, $11, $12, $13::jsonb, $14::jsonb, c."createdAt", c."createdAt"
       FROM "Cluster" c WHERE c."projectId" = $1::uuid`,
      [
        project.id,
        ng.name,
        ng.role,
        ng.machineClass,
        ng.count,
        ng.minCount,
        ng.maxCount,
        ng.zones,
        JSON.stringify(ng.labels),
        JSON.stringify(ng.taints),
        ng.maxSurge,
        ng.maxUnavailable,
        JSON.stringify(ng.features),
        JSON.stringify(ng.provenance),
      ],
    )
  }
  timingsMs.nodeGroups = performance.now() - t2

  // VACUUM as well as ANALYZE: sets hint bits and the visibility map now, so neither the first reads
  // nor an insert-triggered autovacuum of 170 MB compete with the measurements for the two CPUs.
  const t3 = performance.now()
  await pool.query('VACUUM (ANALYZE) "Cluster", "NodeGroup"')
  await pool.query('ANALYZE')
  timingsMs.vacuumAnalyze = performance.now() - t3

  const { rows } = await pool.query<{ clusters: string; nodegroups: string; size: string }>(
    `SELECT (SELECT count(*) FROM "Cluster") AS clusters, (SELECT count(*) FROM "NodeGroup") AS nodegroups,
            pg_size_pretty(pg_total_relation_size('"Cluster"')) AS size`,
  )
  return {
    projectId: project.id,
    templateId: template.id,
    nodeGroupsPerCluster: plan.resolved.nodeGroups.length,
    clusterRows: Number(rows[0]!.clusters),
    nodeGroupRows: Number(rows[0]!.nodegroups),
    clusterTableBytes: rows[0]!.size,
    specBytes: Buffer.byteLength(spec),
    timingsMs,
  }
}

// ---------------------------------------------------------------------------------------------
// Baselines.

function bareApp(): FastifyInstance {
  const app = Fastify({ logger: false })
  app.get('/healthz', async () => ({ status: 'ok' }))
  return app
}

type RawClusterRow = Omit<ClusterRow, 'template' | 'nodeGroups'> & {
  templateName: string
  templateVersion: number
  /** json_agg rows: timestamps arrive as strings. */
  nodeGroups: (Omit<NodeGroup, 'createdAt' | 'updatedAt'> & { createdAt: string; updatedAt: string })[]
}

/** One round trip: project, cluster, template and node groups (json_agg) by project and cluster name. */
const RAW_CLUSTER_SQL = `
  SELECT c.*, t.name AS "templateName", t.version AS "templateVersion",
         COALESCE((SELECT json_agg(ng ORDER BY ng."createdAt", ng.name)
                   FROM "NodeGroup" ng WHERE ng."clusterId" = c.id), '[]'::json) AS "nodeGroups"
  FROM "Project" p
  JOIN "Cluster" c ON c."projectId" = p.id
  JOIN "ClusterTemplate" t ON t.id = c."templateId"
  WHERE p.name = $1 AND c.name = $2`

/**
 * The raw-pg baseline: the same data in one query, plain pool.query (no prepared statement), the
 * API's own clusterView for the same body, and Fastify's default JSON.stringify (no response schema).
 * So P2 measures Prisma (4 queries, result mapping) and the schema serializer, not the view.
 */
function rawPgApp(pool: pg.Pool): FastifyInstance {
  const app = Fastify({ logger: false })
  app.get<{ Params: { project: string; cluster: string } }>(
    '/v1/projects/:project/clusters/:cluster',
    async (request, reply) => {
      const { rows } = await pool.query<RawClusterRow>(RAW_CLUSTER_SQL, [
        request.params.project,
        request.params.cluster,
      ])
      const row = rows[0]
      if (!row) return reply.code(404).send({ status: 404, title: 'Not found' })
      const { templateName, templateVersion, nodeGroups, ...cluster } = row
      reply.header('etag', `"${row.revision}"`)
      return clusterView(
        {
          ...cluster,
          template: { name: templateName, version: templateVersion },
          nodeGroups: nodeGroups.map((ng) => ({
            ...ng,
            createdAt: new Date(ng.createdAt),
            updatedAt: new Date(ng.updatedAt),
          })),
        },
        request.params.project,
      )
    },
  )
  return app
}

// ---------------------------------------------------------------------------------------------
// Load.

interface Latency {
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
}

interface Slice {
  order: number
  seconds: number
  requests: number
  reqPerSec: number
  autocannonP50: number
  autocannonP99: number
}

interface Measured {
  url: string
  requests: number
  reqPerSec: number
  /** Every response of every slice, at 10 µs resolution (bench/latency-recorder.cjs). */
  latencyMs: Latency
  /** autocannon's own per-slice figures (its histogram floors latencies to whole milliseconds). */
  slices: Slice[]
  non2xx: number
  errors: number
  timeouts: number
  bytesPerResponse: number
}

const BUCKET_MS = 0.01
const BUCKETS = 500_000 // 0 .. 5 s in 10 µs steps; slower responses land in the last bucket

function fromHistogram(buckets: Uint32Array): Latency & { count: number } {
  let count = 0
  let sum = 0
  let max = 0
  for (let i = 0; i < buckets.length; i++) {
    const n = buckets[i]!
    if (n === 0) continue
    count += n
    sum += n * i * BUCKET_MS
    max = i * BUCKET_MS
  }
  const at = (q: number) => {
    const rank = Math.ceil(q * count)
    let seen = 0
    for (let i = 0; i < buckets.length; i++) {
      seen += buckets[i]!
      if (seen >= rank) return i * BUCKET_MS
    }
    return max
  }
  return {
    count,
    p50: round(at(0.5)),
    p90: round(at(0.9)),
    p99: round(at(0.99)),
    max: round(max),
    mean: count ? round(sum / count) : Number.NaN,
  }
}

class Target {
  readonly histogram = new SharedArrayBuffer(BUCKETS * Uint32Array.BYTES_PER_ELEMENT)
  readonly slices: Slice[] = []
  non2xx = 0
  errors = 0
  timeouts = 0
  bytes = 0
  constructor(
    readonly label: string,
    readonly url: string,
  ) {}

  private async load(seconds: number, histogram?: SharedArrayBuffer): Promise<Result> {
    currentLoad = autocannon({
      url: this.url,
      connections: CONFIG.connections,
      workers: CONFIG.loadWorkers,
      duration: seconds,
      setupClient: path.join(root, 'bench', 'latency-recorder.cjs'),
      ...(histogram ? { latencyHistogram: histogram } : {}),
    })
    const r = await currentLoad
    currentLoad = undefined
    if (isCleaningUp()) throw new Error('interrupted')
    return r
  }

  warmUp() {
    return this.load(CONFIG.warmupSeconds)
  }

  async slice(order: number, seconds: number) {
    const r = await this.load(seconds, this.histogram)
    this.slices.push({
      order,
      seconds: r.duration,
      requests: r['2xx'],
      reqPerSec: r['2xx'] / r.duration,
      autocannonP50: r.latency.p50,
      autocannonP99: r.latency.p99,
    })
    this.non2xx += r.non2xx
    this.errors += r.errors
    this.timeouts += r.timeouts
    this.bytes += r.throughput.total
  }

  result(): Measured {
    const requests = this.slices.reduce((n, s) => n + s.requests, 0)
    const seconds = this.slices.reduce((n, s) => n + s.seconds, 0)
    const { count, ...latencyMs } = fromHistogram(new Uint32Array(this.histogram))
    if (this.non2xx || this.errors || this.timeouts) {
      throw new Error(
        `${this.label}: ${this.non2xx} non-2xx, ${this.errors} errors, ${this.timeouts} timeouts against ${this.url}`,
      )
    }
    if (count < requests) throw new Error(`${this.label}: the latency recorder saw ${count} of ${requests}`)
    return {
      url: this.url,
      requests,
      reqPerSec: requests / seconds,
      latencyMs,
      slices: this.slices,
      non2xx: this.non2xx,
      errors: this.errors,
      timeouts: this.timeouts,
      bytesPerResponse: requests ? this.bytes / requests : 0,
    }
  }
}

/**
 * Measures two targets under the same conditions: a discarded warm-up each, then `rounds` slices
 * each in A B B A A B … order, so load from anything else on the machine and slow drift (GC, caches)
 * fall on both alike. Each target's figures are over all of its slices.
 */
async function measurePair(a: Target, b: Target, rounds = 4) {
  const seconds = Math.max(1, Math.round(CONFIG.durationSeconds / rounds))
  log(
    `${a.label} vs ${b.label}: ${CONFIG.warmupSeconds}s warm-up each, then ${rounds} × ${seconds}s each, interleaved`,
  )
  await a.warmUp()
  await b.warmUp()
  const load = os.loadavg()[0]!
  for (let i = 0; i < rounds; i++) {
    const [first, second] = i % 2 === 0 ? [a, b] : [b, a]
    await first.slice(2 * i, seconds)
    await second.slice(2 * i + 1, seconds)
  }
  const ra = a.result()
  const rb = b.result()
  for (const [t, r] of [
    [a, ra],
    [b, rb],
  ] as const) {
    log(
      `  ${t.label}: ${r.reqPerSec.toFixed(0)} req/s, p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, mean ${r.latencyMs.mean} ms`,
    )
  }
  return { a: ra, b: rb, loadAverage: { before: load, after: os.loadavg()[0]! } }
}

interface Comparison {
  id: string
  title: string
  kilnLabel: string
  baselineLabel: string
  kiln: Measured
  baseline: Measured
  /** 1-minute load average before and after the pair: anything else running shows here. */
  loadAverage: { before: number; after: number }
  ratioName: string
  ratio: number
  goal: string
  pass: boolean
}

// ---------------------------------------------------------------------------------------------
// Diagnostics: which SQL Prisma sends, and how Postgres runs the list query.

interface LoggedQuery {
  query: string
  params: string
  durationMs: number
}

async function capture(queries: LoggedQuery[], work: () => Promise<unknown>) {
  queries.length = 0
  await work()
  return queries.splice(0)
}

async function explain(pool: pg.Pool, q: LoggedQuery) {
  const lines = await explainAnalyze(pool, q.query, JSON.parse(q.params) as unknown[])
  const text = lines.join('\n')
  return {
    usesCursorIndex: text.includes('Cluster_projectId_createdAt_id_idx'),
    sort: lines.some((l) => /^\s*(->\s*)?(Incremental )?Sort\b/.test(l)),
    executionMs: Number(/Execution Time: ([\d.]+) ms/.exec(text)?.[1] ?? Number.NaN),
    plan: lines,
  }
}

/** JSON pointers where two parsed JSON values differ (first 10). */
function differences(a: unknown, b: unknown, at = ''): string[] {
  if (isDeepStrictEqual(a, b)) return []
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)])
    return [...keys]
      .flatMap((k) =>
        differences((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${at}/${k}`),
      )
      .slice(0, 10)
  }
  return [at || '/']
}

// ---------------------------------------------------------------------------------------------
// Report.

function table(comparisons: Comparison[]): string {
  const header = [
    'P',
    'kiln (what)',
    'kiln req/s',
    'kiln p50/p99 ms',
    'kiln mean ms',
    'baseline (what)',
    'base req/s',
    'base p50/p99 ms',
    'base mean ms',
    'ratio',
    'goal',
    'result',
  ]
  const rows = comparisons.map((c) => [
    c.id,
    c.kilnLabel,
    fmt(c.kiln.reqPerSec),
    `${c.kiln.latencyMs.p50}/${c.kiln.latencyMs.p99}`,
    fmt(c.kiln.latencyMs.mean, 2),
    c.baselineLabel,
    fmt(c.baseline.reqPerSec),
    `${c.baseline.latencyMs.p50}/${c.baseline.latencyMs.p99}`,
    fmt(c.baseline.latencyMs.mean, 2),
    `${fmt(c.ratio, 2)}x`,
    c.goal,
    c.pass ? 'PASS' : 'MISS',
  ])
  return formatTable(header, rows)
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now()
  log(
    `run ${runId}: ${os.cpus().length} CPUs, node ${process.version}, ${CONFIG.connections} connections, ${CONFIG.durationSeconds}s (+${CONFIG.warmupSeconds}s warm-up) per target`,
  )

  const migrateMs = await createBenchDatabase()

  const db = createDatabase({ url: dbUrl, maxConnections: CONFIG.poolSize })
  onCleanup('prisma (kiln)', () => db.$disconnect())
  const pool = new pg.Pool({ connectionString: dbUrl, max: CONFIG.poolSize })
  pool.on('error', (e) => log(`pg pool (baseline): ${e.message}`))
  onCleanup('pg pool (baseline)', () => pool.end())
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, keyPrefix: `kiln-bench-${runId}:` })
  redis.on('error', () => {})
  onCleanup('redis', () => redis.quit())

  const t = performance.now()
  const seeded = await seed(db, pool)
  log(
    `seeded ${seeded.clusterRows} clusters + ${seeded.nodeGroupRows} node groups (Cluster table ${seeded.clusterTableBytes}, spec ${seeded.specBytes} B) in ${fmt(performance.now() - t)} ms`,
  )

  // Servers.
  const kiln = await buildApp({ db, redis, logger: false })
  onCleanup('kiln server', () => kiln.close())
  const bare = bareApp()
  onCleanup('bare server', () => bare.close())
  const raw = rawPgApp(pool)
  onCleanup('raw pg server', () => raw.close())
  const kilnUrl = await kiln.listen({ host: '127.0.0.1', port: 0 })
  const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 })
  const rawUrl = await raw.listen({ host: '127.0.0.1', port: 0 })
  log(`kiln ${kilnUrl}, bare ${bareUrl}, raw pg ${rawUrl}`)

  // The page-2,000 cursor: nextCursor of page 1,999 = the row at offset 1,999 × 50 − 1 = 99,949,
  // encoded with the API's own encodeCursor. Page 2,000 then holds rows 99,950..99,999.
  const cursorOffset = (PAGE - 1) * CONFIG.pageLimit - 1
  const cursorRow = async (offset: number) => {
    const { rows } = await pool.query<{ createdAt: Date; id: string }>(
      `SELECT "createdAt", id FROM "Cluster" WHERE "projectId" = $1
       ORDER BY "createdAt", id OFFSET $2 LIMIT 1`,
      [seeded.projectId, offset],
    )
    if (!rows[0])
      throw new Error(
        `no cluster at offset ${offset}; the page-${PAGE} cursor needs ≥ ${offset + 1} clusters, seeded ${CONFIG.clusters}`,
      )
    return encodeCursor(rows[0])
  }
  const page2000Cursor = await cursorRow(cursorOffset)
  const probeName = clusterName(Math.ceil(CONFIG.clusters / 2))
  const paths = {
    health: '/healthz',
    cluster: `/v1/projects/${CONFIG.project}/clusters/${probeName}`,
    page1: `/v1/projects/${CONFIG.project}/clusters?limit=${CONFIG.pageLimit}`,
    page2000: `/v1/projects/${CONFIG.project}/clusters?limit=${CONFIG.pageLimit}&cursor=${page2000Cursor}`,
  }

  // Sanity checks before timing anything.
  const get = async (base: string, p: string) => {
    const res = await fetch(base + p)
    if (res.status !== 200) throw new Error(`GET ${base}${p}: ${res.status} ${await res.text()}`)
    return {
      body: (await res.json()) as Record<string, unknown>,
      bytes: Number(res.headers.get('content-length')),
    }
  }
  const kilnCluster = await get(kilnUrl, paths.cluster)
  const rawCluster = await get(rawUrl, paths.cluster)
  const sameClusterBody = isDeepStrictEqual(kilnCluster.body, rawCluster.body)
  const bodyDiff = differences(kilnCluster.body, rawCluster.body)
  if (!sameClusterBody) log(`warning: the raw pg route's JSON differs from Kiln's at ${bodyDiff.join(', ')}`)
  type ListBody = { items: { name: string }[]; nextCursor: string | null }
  const page1 = (await get(kilnUrl, paths.page1)).body as unknown as ListBody
  const page2000 = (await get(kilnUrl, paths.page2000)).body as unknown as ListBody
  const page1999 = (await get(kilnUrl, paths.page1.concat(`&cursor=${await cursorRow(cursorOffset - 50)}`)))
    .body as unknown as ListBody
  const checks = {
    sameClusterBody,
    clusterBodyDifferences: bodyDiff,
    clusterBytes: { kiln: kilnCluster.bytes, raw: rawCluster.bytes },
    page1: { items: page1.items.length, first: page1.items[0]?.name, hasNext: page1.nextCursor !== null },
    page2000: {
      items: page2000.items.length,
      first: page2000.items[0]?.name,
      last: page2000.items.at(-1)?.name,
      hasNext: page2000.nextCursor !== null,
    },
    page1999NextCursorMatches: page1999.nextCursor === page2000Cursor,
  }
  if (
    page1.items.length !== CONFIG.pageLimit ||
    page2000.items.length !== CONFIG.pageLimit ||
    page2000.items[0]?.name !== clusterName(cursorOffset + 2) ||
    !checks.page1999NextCursorMatches
  ) {
    throw new Error(`pagination check failed: ${JSON.stringify(checks)}`)
  }

  // Diagnostics: the SQL Prisma sends for GET cluster and for the page-2,000 list, and their plans.
  const queries: LoggedQuery[] = []
  const tracedDb = openTracedDatabase(2, (e) =>
    queries.push({ query: e.query, params: e.params, durationMs: e.duration }),
  )
  await findProject(tracedDb, CONFIG.project) // connect outside the capture
  const getClusterSql = await capture(queries, async () => {
    await findClusterInProject(tracedDb, CONFIG.project, probeName)
  })
  const listSql = await capture(queries, async () => {
    const project = await findProject(tracedDb, CONFIG.project)
    await listClusters(tracedDb, { projectId: project.id, limit: CONFIG.pageLimit, cursor: page2000Cursor })
  })
  const page1Sql = await capture(queries, () =>
    listClusters(tracedDb, { projectId: seeded.projectId, limit: CONFIG.pageLimit }),
  )
  const isClusterList = (q: LoggedQuery) =>
    /FROM "public"\."Cluster"/.test(q.query) && /ORDER BY/.test(q.query)
  const listQuery = listSql.find(isClusterList)
  const nodeGroupQuery = listSql.find((q) => /FROM "public"\."NodeGroup"/.test(q.query))
  const page1Query = page1Sql.find(isClusterList)
  const plans = {
    page2000: listQuery ? await explain(pool, listQuery) : null,
    page1: page1Query ? await explain(pool, page1Query) : null,
    page2000NodeGroups: nodeGroupQuery ? await explain(pool, nodeGroupQuery) : null,
    rawCluster: await explain(pool, {
      query: RAW_CLUSTER_SQL,
      params: JSON.stringify([CONFIG.project, probeName]),
      durationMs: 0,
    }),
  }

  // Load. Registered last, so the first thing cleanup does is stop a run in progress.
  onCleanup('load generator', async () => currentLoad?.stop())
  const comparisons: Comparison[] = []
  const p1 = await measurePair(
    new Target('P1 kiln /healthz', kilnUrl + paths.health),
    new Target('P1 bare /healthz', bareUrl + paths.health),
  )
  comparisons.push({
    id: 'P1',
    title: 'GET /healthz',
    kilnLabel: 'kiln /healthz',
    baselineLabel: 'bare fastify',
    kiln: p1.a,
    baseline: p1.b,
    loadAverage: p1.loadAverage,
    ratioName: 'kiln req/s ÷ bare req/s',
    ratio: p1.a.reqPerSec / p1.b.reqPerSec,
    goal: '>= 0.80x',
    pass: p1.a.reqPerSec / p1.b.reqPerSec >= 0.8,
  })
  const p2 = await measurePair(
    new Target('P2 kiln GET cluster', kilnUrl + paths.cluster),
    new Target('P2 raw pg GET cluster', rawUrl + paths.cluster),
  )
  comparisons.push({
    id: 'P2',
    title: `GET /v1/projects/${CONFIG.project}/clusters/${probeName}`,
    kilnLabel: 'kiln GET cluster',
    baselineLabel: 'raw pg 1 query',
    kiln: p2.a,
    baseline: p2.b,
    loadAverage: p2.loadAverage,
    ratioName: 'kiln req/s ÷ raw pg req/s',
    ratio: p2.a.reqPerSec / p2.b.reqPerSec,
    goal: '>= 0.70x',
    pass: p2.a.reqPerSec / p2.b.reqPerSec >= 0.7,
  })
  const p4 = await measurePair(
    new Target(`P4 kiln list page ${PAGE}`, kilnUrl + paths.page2000),
    new Target('P4 kiln list page 1', kilnUrl + paths.page1),
  )
  const p4ratio = p4.a.latencyMs.mean / p4.b.latencyMs.mean
  comparisons.push({
    id: 'P4',
    title: `GET /v1/projects/${CONFIG.project}/clusters?limit=${CONFIG.pageLimit} (${seeded.clusterRows} clusters)`,
    kilnLabel: `list page ${PAGE}`,
    baselineLabel: 'list page 1',
    kiln: p4.a,
    baseline: p4.b,
    loadAverage: p4.loadAverage,
    ratioName: `mean latency page ${PAGE} ÷ page 1`,
    ratio: p4ratio,
    goal: '<= 1.20x',
    pass: p4ratio <= 1.2,
  })

  // Report.
  const printed = table(comparisons)
  const summarisePlan = (p: Awaited<ReturnType<typeof explain>> | null) =>
    p
      ? `${p.usesCursorIndex ? 'uses Cluster_projectId_createdAt_id_idx' : 'does NOT use the cursor index'}, ${p.sort ? 'with a Sort node' : 'no Sort'}, execution ${fmt(p.executionMs, 3)} ms`
      : 'not captured'
  const notes = [
    `${seeded.clusterRows} clusters + ${seeded.nodeGroupRows} node groups in project '${CONFIG.project}'; ${CONFIG.connections} connections, ${CONFIG.durationSeconds}s per target in 4 interleaved slices (ABBA…) after a ${CONFIG.warmupSeconds}s warm-up each, load from ${CONFIG.loadWorkers} worker thread on a ${os.cpus().length}-CPU machine (servers, load generator and Postgres share the CPUs).`,
    `Ratios: P1/P2 = kiln req/s ÷ baseline req/s; P4 = mean latency page ${PAGE} ÷ page 1. Latencies are per response at 10 µs resolution (autocannon's own whole-ms figures are in the JSON, per slice).`,
    `P2: Kiln sends ${getClusterSql.length} statement(s) per GET cluster (findClusterInProject), the raw route 1; bodies ${sameClusterBody ? 'identical' : 'DIFFER'} (${kilnCluster.bytes} vs ${rawCluster.bytes} bytes).`,
    `P4 list SQL, page ${PAGE}: ${summarisePlan(plans.page2000)}; page 1: ${summarisePlan(plans.page1)}; ${listSql.length} queries per list request.`,
  ]
  printReport('Kiln API benchmark', printed, notes)

  const results = {
    runId,
    startedAt: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    machine: describeMachine(),
    config: CONFIG,
    seed: { ...seeded, migrateMs },
    checks,
    comparisons,
    sql: {
      getCluster: getClusterSql,
      listPage2000: listSql,
      listPage1: page1Sql,
      rawCluster: RAW_CLUSTER_SQL.trim(),
    },
    plans,
    notes,
    table: printed,
  }
  await writeResults('api', started, results)

  // Plans, for the curious (stderr keeps stdout to the table).
  for (const [name, p] of Object.entries(plans)) {
    if (p) log(`EXPLAIN ANALYZE ${name}:\n    ${p.plan.join('\n    ')}`)
  }
  log(`GET cluster SQL (${getClusterSql.length}):\n    ${getClusterSql.map((q) => q.query).join('\n    ')}`)
}

await runBench(main, {
  cleanupTimeoutMs: 15_000,
  interrupting: `stopping and dropping ${dbName}`,
  cleanedUp: `${dbName} dropped`,
})
