import cluster from 'node:cluster'
import { createDatabase } from '@kiln/db'
import {
  AggregatorRegistry,
  createRedisClient,
  queueConnection,
  queuePrefixFor,
  startMetricsServer,
} from '@kiln/jobs'
import { masterKeyringFromSettings } from '@kiln/pki'
import { createLogger, startTracing } from '@kiln/telemetry'
import { buildApp } from './app.ts'
import { superviseApiProcesses } from './cluster.ts'
import { loadApiConfig } from './config.ts'
import { createApiMetrics } from './metrics.ts'
import { OidcVerifier } from './oidc.ts'

const config = loadApiConfig()
const logger = createLogger({ service: 'kiln-api', level: config.logLevel })
// KILN_API_PROCESSES > 1: this process only supervises that many API processes (this file again).
if (cluster.isPrimary && config.processes > 1) {
  // One scrape of the primary answers for every API process: prom-client asks each over IPC and sums.
  if (config.metrics.port > 0) {
    const aggregator = new AggregatorRegistry()
    await startMetricsServer({ ...config.metrics, metrics: () => aggregator.clusterMetrics() })
  }
  await superviseApiProcesses(config.processes, logger)
}
const tracing = await startTracing(config.tracing)
const db = createDatabase({ url: config.databaseUrl, maxConnections: config.databasePoolSize })
const redis = createRedisClient(config.redis, {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  lazyConnect: false,
})
redis.on('error', () => {
  // Reported by /readyz and as 503s; ioredis reconnects by itself.
})
const { keyring } = masterKeyringFromSettings(config)
// The issuer is discovered once, here: a Kiln configured for OIDC that cannot reach it does not start.
let oidc: { verifier: OidcVerifier; settings: NonNullable<typeof config.oidc> } | undefined
if (config.oidc) {
  try {
    oidc = { verifier: await OidcVerifier.discover(config.oidc), settings: config.oidc }
  } catch (error) {
    logger.fatal(
      `Cannot start: OIDC discovery of KILN_OIDC_ISSUER=${config.oidc.issuer} failed: ${error instanceof Error ? error.message : String(error)}`,
    )
    process.exit(1)
  }
}
const metrics = createApiMetrics()
const app = await buildApp({
  db,
  metrics,
  redis,
  // New operations go to the workers at once; the worker's dispatcher is the fallback when Redis is down.
  queue: {
    connection: queueConnection(config.redis, { maxRetriesPerRequest: 1 }),
    prefix: queuePrefixFor(config.redis, config.queuePrefix),
  },
  masterKey: keyring,
  logger,
  bodyLimitBytes: config.bodyLimitBytes,
  ...(oidc ? { oidc } : {}),
  authentication: config.authentication,
  platformAdminGroups: config.platformAdminGroups,
  portalDir: config.portalDir,
  rateLimits: config.rateLimits,
  ...(config.trustProxy !== undefined ? { trustProxy: config.trustProxy } : {}),
})
// An API process under a primary hands its registry to the primary's scrape instead of listening.
// (Constructing one is what installs prom-client's IPC listener in this process.)
if (cluster.isWorker) {
  new AggregatorRegistry()
  AggregatorRegistry.setRegistries([metrics.registry])
}
const metricsServer =
  config.metrics.port > 0 && cluster.isPrimary
    ? await startMetricsServer({ ...config.metrics, metrics: () => metrics.registry.metrics() })
    : undefined
if (config.authentication === 'required' && !oidc) {
  app.log.warn('No OIDC issuer (KILN_OIDC_ISSUER) outside dev mode: only API tokens are accepted.')
}

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  app.log.info({ signal }, 'shutting down')
  // Stop accepting requests and finish in-flight ones, then release the clients. server.close() drops
  // only the keep-alive connections idle at that moment; one that finishes its request later would
  // hold the close open until its keep-alive timeout, so each is closed as soon as it goes idle.
  const closeIdle = setInterval(() => app.server.closeIdleConnections(), 100)
  await app.close()
  clearInterval(closeIdle)
  await Promise.allSettled([db.$disconnect(), redis.quit(), metricsServer?.close(), tracing.shutdown()])
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))

await app.listen({ host: config.host, port: config.port })
