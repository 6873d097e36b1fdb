import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Registry } from 'prom-client'

// The series types come from here too: prom-client is one dependency of one package.
export { AggregatorRegistry, Counter, Gauge, Histogram, Registry } from 'prom-client'

// What the API's and the worker's /metrics share: the registry (with the process metrics every
// Node service exports), the histogram buckets and the small HTTP server that serves it apart from
// the API's own port, so Prometheus scrapes neither through authentication nor through rate limits.

/** Request and driver-call latencies: 5 ms to 2 min. */
export const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

/** Steps: a tenth of a second (a checkpoint) to an hour (a bare-metal provision). */
export const stepBuckets = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600]

/**
 * A registry for one process. `processMetrics` adds prom-client's default series (CPU, memory,
 * event-loop lag, GC); off for registries built only to be read (tests) or embedded twice in one
 * process (the in-process test stack).
 */
export function createMetricsRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry()
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry })
  return registry
}

export interface MetricsServerOptions {
  host: string
  /** 0 picks a free port (tests); the configuration uses 0 to mean "no server" before calling this. */
  port: number
  /** The Prometheus text to serve: `registry.metrics()`, or a node:cluster aggregate. */
  metrics: () => Promise<string>
  contentType?: string
  /** With it, `GET /healthz` answers 200 while it returns true and 503 otherwise. */
  healthy?: () => boolean
}

export interface MetricsServer {
  port: number
  close(): Promise<void>
}

/** Serves `GET /metrics` (and `GET /healthz` when `healthy` is given) on its own port. */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const contentType = options.contentType ?? Registry.PROMETHEUS_CONTENT_TYPE
  const answer = (res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8') => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
    res.end(body)
  }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'GET only\n')
    if (path === '/metrics') {
      options.metrics().then(
        (text) => answer(res, 200, text, contentType),
        (error: unknown) => answer(res, 500, `metrics failed: ${String(error)}\n`),
      )
      return
    }
    if (path === '/healthz' && options.healthy) {
      const ok = options.healthy()
      return answer(res, ok ? 200 : 503, ok ? 'ok\n' : 'stopping\n')
    }
    answer(res, 404, 'not found: GET /metrics\n')
  })
  // A scrape is one short request; idle keep-alive sockets must not hold shutdown up.
  server.keepAliveTimeout = 5000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/**
 * `load`, at most once per `ttlMs`: gauges read from PostgreSQL or Redis on scrape share one
 * answer between close scrapes (several Prometheus replicas) instead of one query each. Calls made
 * while a load runs wait for it; a failed load is not kept.
 */
export function cachedFor<T>(ttlMs: number, load: () => Promise<T>): () => Promise<T> {
  let kept: { at: number; value: Promise<T> } | undefined
  return () => {
    const now = Date.now()
    if (kept && now - kept.at < ttlMs) return kept.value
    const value = load()
    const entry = { at: now, value }
    kept = entry
    value.catch(() => {
      if (kept === entry) kept = undefined
    })
    return value
  }
}
