import { DomainError, ErrorCode, type QuotaLine } from '@kiln/domain'
import { Counter, createMetricsRegistry, Histogram, latencyBuckets, type Registry } from '@kiln/jobs'
import type { FastifyInstance } from 'fastify'

// The API's series (see README "Metrics"); what the worker knows better (operations, queue, CAs)
// is the worker's alone, so a deployment with several API processes counts it once.

export interface ApiMetrics {
  registry: Registry
  httpRequests: Counter<'method' | 'route' | 'status'>
  httpDuration: Histogram<'method' | 'route' | 'status'>
  kubeconfigsIssued: Counter<'kind'>
  quotaRefusals: Counter<'resource'>
}

/** The API's registry and series; `processMetrics` as in createMetricsRegistry. */
export function createApiMetrics(options: { processMetrics?: boolean } = {}): ApiMetrics {
  const registry = createMetricsRegistry(options)
  const registers = [registry]
  const labelNames = ['method', 'route', 'status'] as const
  return {
    registry,
    httpRequests: new Counter({
      name: 'kiln_http_requests_total',
      help: 'Requests answered, by method, route pattern ("unmatched" when no route matched) and status.',
      labelNames,
      registers,
    }),
    httpDuration: new Histogram({
      name: 'kiln_http_request_duration_seconds',
      help: 'Time to answer a request, by method, route pattern and status.',
      labelNames,
      buckets: latencyBuckets,
      registers,
    }),
    kubeconfigsIssued: new Counter({
      name: 'kiln_kubeconfigs_issued_total',
      help: 'Cluster credentials issued: kind "kubeconfig" (POST …/kubeconfig) or "csr" (a signed CSR).',
      labelNames: ['kind'],
      registers,
    }),
    quotaRefusals: new Counter({
      name: 'kiln_quota_refusals_total',
      help: 'Requests refused (422 quota-exceeded), once per resource the request would take past its limit.',
      labelNames: ['resource'],
      registers,
    }),
  }
}

/** Counts and times every answer by its route pattern, and every quota refusal by resource. */
export function registerRequestMetrics(app: FastifyInstance, metrics: ApiMetrics) {
  app.addHook('onResponse', async (request, reply) => {
    // The pattern, never the URL: one series per route, whatever ids and names clients send.
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      status: String(reply.statusCode),
    }
    metrics.httpRequests.inc(labels)
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000)
  })
  // Every quota check refuses with the same DomainError, whichever route asked.
  app.addHook('onError', async (_request, _reply, error) => {
    if (!(error instanceof DomainError) || error.code !== ErrorCode.quotaExceeded) return
    const exceeded = (error.extensions['exceeded'] ?? []) as QuotaLine[]
    for (const line of exceeded) metrics.quotaRefusals.inc({ resource: line.resource })
  })
}
