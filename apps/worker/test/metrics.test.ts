import { createServer } from 'node:net'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { operationCatalogue } from '../../../packages/domain/src/index.ts'
import { type MetricsServer, startMetricsServer } from '../../../packages/jobs/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import { testIronicConfig } from '../../../test/support/ironic.ts'
import { type Sample, samplesOf, scrape, sumOf } from '../../../test/support/prometheus-text.ts'
import { createApiMetrics } from '../../api/src/metrics.ts'
import { WorkerMetrics } from '../src/metrics.ts'
import {
  aSimulatedBackend,
  clusterUrl,
  createCluster,
  eventually,
  getOperation,
  PROJECT,
  waitForOperation,
} from './support.ts'

// The metrics of a real create: the API and the engine in this process as in the other engine
// tests, each registry served over HTTP by the server main.ts starts, scraped while the operation
// runs and after it ends.

const createSteps = operationCatalogue['cluster.create']
const createRoute = { method: 'POST', route: '/v1/projects/:project/clusters' }

let stack: TestStack
const apiMetrics = createApiMetrics()
// A short cache so the scrape after a change sees it; production reads at most every 5 s.
const workerMetrics = new WorkerMetrics({ cacheMs: 50, caCacheMs: 50 })
let apiServer: MetricsServer
let workerServer: MetricsServer
const scrapeApi = () => scrape(`http://127.0.0.1:${apiServer.port}/metrics`)
const scrapeWorker = () => scrape(`http://127.0.0.1:${workerServer.port}/metrics`)

beforeAll(async () => {
  stack = await startTestStack({ engine: { metrics: workerMetrics }, api: { metrics: apiMetrics } })
  // The bootstrap takes long enough to scrape the operation while it runs.
  await aSimulatedBackend(
    stack.db,
    'sim',
    testDataCentre({ latency: { bootstrap: { minMs: 1500, maxMs: 1500 } } }),
    { name: 'k8s-1.31' },
  )
  apiServer = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    metrics: () => apiMetrics.registry.metrics(),
  })
  workerServer = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    metrics: () => workerMetrics.registry.metrics(),
    healthy: () => stack.engine?.running() ?? false,
  })
})

afterAll(async () => {
  await apiServer?.close()
  await workerServer?.close()
  await stack?.close()
})

const stepSeries = (samples: Sample[], step: string) =>
  sumOf(samples, 'kiln_operation_step_duration_seconds_count', {
    kind: 'cluster.create',
    step,
    backend: 'sim',
  })

describe('metrics of a create, scraped over HTTP', () => {
  let operationId: string

  it('while the create runs: started, its first steps timed, the simulator called, in progress', async () => {
    const before = await scrapeApi()
    const accepted = await createCluster(stack.app, { name: 'metered', template: 'k8s-1.31' })
    operationId = accepted.id
    await eventually('the bootstrap step to run', async () => {
      const op = await getOperation(stack.app, operationId)
      return op.steps.find((s) => s.name === 'bootstrap-control-plane')?.status === 'running' ? op : undefined
    })

    const api = await scrapeApi()
    expect(sumOf(api, 'kiln_http_requests_total', { ...createRoute, status: '202' })).toBe(
      sumOf(before, 'kiln_http_requests_total', { ...createRoute, status: '202' }) + 1,
    )
    expect(
      sumOf(api, 'kiln_http_request_duration_seconds_count', { ...createRoute, status: '202' }),
    ).toBeGreaterThanOrEqual(1)
    // The route pattern, never the URL with its ids.
    for (const s of samplesOf(api, 'kiln_http_requests_total'))
      expect(s.labels['route']).not.toMatch(/metered|[0-9a-f]{8}-/)

    const worker = await scrapeWorker()
    expect(sumOf(worker, 'kiln_operations_started_total', { kind: 'cluster.create' })).toBe(1)
    expect(sumOf(worker, 'kiln_operations_finished_total')).toBe(0)
    expect(sumOf(worker, 'kiln_operations_in_progress', { kind: 'cluster.create' })).toBe(1)
    expect(sumOf(worker, 'kiln_operation_oldest_in_progress_seconds')).toBeGreaterThan(0)
    for (const step of createSteps.slice(0, 3)) expect(stepSeries(worker, step), step).toBe(1)
    expect(stepSeries(worker, 'bootstrap-control-plane')).toBe(0)
    expect(
      sumOf(worker, 'kiln_driver_call_duration_seconds_count', {
        backend: 'sim',
        call: 'ensureMachines',
        outcome: 'succeeded',
      }),
    ).toBeGreaterThanOrEqual(1)
    expect(sumOf(worker, 'kiln_backend_up', { backend: 'sim' })).toBe(1)
    // This worker holds the job: the queue says so.
    const queue = { queue: 'operations' }
    expect(samplesOf(worker, 'kiln_queue_jobs', queue).map((s) => s.labels['state'])).toEqual(
      expect.arrayContaining(['waiting', 'active', 'delayed', 'failed', 'completed']),
    )
    expect(sumOf(worker, 'kiln_queue_jobs', { ...queue, state: 'active' })).toBe(1)
    expect(samplesOf(worker, 'kiln_queue_oldest_waiting_seconds', queue)).toHaveLength(1)
    // The process series prom-client adds to every registry.
    expect(samplesOf(worker, 'process_cpu_user_seconds_total')).toHaveLength(1)
    expect(samplesOf(api, 'nodejs_eventloop_lag_seconds')).toHaveLength(1)
  })

  it('after it: succeeded, every step timed, add-ons applied, the CA expiry known, nothing in progress', async () => {
    const done = await waitForOperation(stack.app, operationId)
    expect(done.status).toBe('succeeded')
    const worker = await scrapeWorker()
    expect(
      sumOf(worker, 'kiln_operations_finished_total', {
        kind: 'cluster.create',
        outcome: 'succeeded',
        error_class: 'none',
      }),
    ).toBe(1)
    expect(sumOf(worker, 'kiln_operations_finished_total')).toBe(1)
    for (const step of createSteps) expect(stepSeries(worker, step), step).toBe(1)
    // The bootstrap's histogram holds the simulator's 1.5 s.
    expect(
      sumOf(worker, 'kiln_operation_step_duration_seconds_sum', { step: 'bootstrap-control-plane' }),
    ).toBeGreaterThanOrEqual(1.4)
    for (const call of ['ensureMachines', 'bootstrap', 'joinMachines'])
      expect(
        sumOf(worker, 'kiln_driver_call_duration_seconds_count', {
          backend: 'sim',
          call,
          outcome: 'succeeded',
        }),
        call,
      ).toBeGreaterThanOrEqual(1)
    expect(sumOf(worker, 'kiln_driver_call_errors_total', { backend: 'sim' })).toBe(0)
    const applied = samplesOf(worker, 'kiln_addon_applies_total', { outcome: 'succeeded' })
    expect(applied.length).toBeGreaterThan(0)
    for (const s of applied) expect(s.value, s.labels['addon']).toBe(1)
    const ca = samplesOf(worker, 'kiln_cluster_ca_expiry_timestamp_seconds', {
      project: PROJECT,
      cluster: 'metered',
    })
    expect(ca).toHaveLength(1)
    // A ten-year CA, issued a moment ago.
    const years = (ca[0]!.value - Date.now() / 1000) / (365 * 86_400)
    expect(years).toBeGreaterThan(9.9)
    expect(years).toBeLessThan(10.1)
    // The gauges are read on scrape through their short cache.
    await vi.waitFor(async () => {
      const now = await scrapeWorker()
      expect(sumOf(now, 'kiln_operations_in_progress')).toBe(0)
      expect(sumOf(now, 'kiln_operation_oldest_in_progress_seconds')).toBe(0)
      expect(sumOf(now, 'kiln_queue_jobs', { state: 'active' })).toBe(0)
      expect(sumOf(now, 'kiln_queue_oldest_waiting_seconds')).toBe(0)
    })
  })

  it('counts an issued kubeconfig and a signed CSR by kind', async () => {
    const before = await scrapeApi()
    const res = await stack.app.inject({
      method: 'POST',
      url: `${clusterUrl('metered')}/kubeconfig`,
      payload: { ttlSeconds: 600 },
    })
    expect(res.statusCode, res.body).toBe(201)
    const after = await scrapeApi()
    expect(sumOf(after, 'kiln_kubeconfigs_issued_total', { kind: 'kubeconfig' })).toBe(
      sumOf(before, 'kiln_kubeconfigs_issued_total', { kind: 'kubeconfig' }) + 1,
    )
    expect(sumOf(after, 'kiln_kubeconfigs_issued_total', { kind: 'csr' })).toBe(0)
    expect(
      sumOf(after, 'kiln_http_requests_total', {
        method: 'POST',
        route: '/v1/projects/:project/clusters/:cluster/kubeconfig',
        status: '201',
      }),
    ).toBe(1)
  })

  it('counts a quota refusal by resource, and an unmatched URL as route "unmatched"', async () => {
    const quota = await stack.app.inject({
      method: 'PUT',
      url: `/v1/projects/${PROJECT}/quota`,
      payload: { clusters: 1 },
    })
    expect(quota.statusCode, quota.body).toBe(200)
    const refused = await stack.app.inject({
      method: 'POST',
      url: `/v1/projects/${PROJECT}/clusters`,
      payload: { name: 'one-too-many', template: 'k8s-1.31' },
    })
    expect(refused.statusCode, refused.body).toBe(422)
    expect((refused.json() as { type: string }).type).toBe('https://kiln.dev/problems/quota-exceeded')
    const missing = await stack.app.inject({ method: 'GET', url: '/v1/no-such-thing/42' })
    expect(missing.statusCode).toBe(404)

    const api = await scrapeApi()
    expect(sumOf(api, 'kiln_quota_refusals_total', { resource: 'clusters' })).toBe(1)
    expect(sumOf(api, 'kiln_quota_refusals_total')).toBe(1)
    expect(sumOf(api, 'kiln_http_requests_total', { ...createRoute, status: '422' })).toBe(1)
    expect(sumOf(api, 'kiln_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(
      1,
    )
  })

  it('marks a backend that does not answer as down, and counts its failed call', async () => {
    // A port nothing listens on: the Ironic driver's calls are refused.
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number }
        probe.close(() => resolve(port))
      })
    })
    await stack.db.backend.create({
      data: {
        name: 'metal-down',
        kind: 'ironic',
        capabilities: { zones: ['zone-a'] },
        config: testIronicConfig({ url: `http://127.0.0.1:${port}` }) as object,
      },
    })
    const [sync] = (await stack.engine!.syncCatalogueOnce()).filter((r) => r.backend === 'metal-down')
    expect(sync?.error).toBeDefined()
    const worker = await scrapeWorker()
    expect(sumOf(worker, 'kiln_backend_up', { backend: 'metal-down' })).toBe(0)
    expect(sumOf(worker, 'kiln_backend_up', { backend: 'sim' })).toBe(1)
    expect(
      sumOf(worker, 'kiln_driver_call_errors_total', {
        backend: 'metal-down',
        call: 'capabilities',
        error_class: 'retryable',
      }),
    ).toBe(1)
  })

  it('answers /healthz while the engine runs and 503 once it stopped; anything else is 404', async () => {
    const base = `http://127.0.0.1:${workerServer.port}`
    expect((await fetch(`${base}/healthz`)).status).toBe(200)
    expect((await fetch(`${base}/nothing`)).status).toBe(404)
    expect((await fetch(`http://127.0.0.1:${apiServer.port}/healthz`)).status).toBe(404)
    await stack.stopEngine()
    expect((await fetch(`${base}/healthz`)).status).toBe(503)
  })
})
