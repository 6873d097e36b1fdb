import { createDatabase } from '@kiln/db'
import { closeQueueConnection, queueConnection, queuePrefixFor, startMetricsServer } from '@kiln/jobs'
import { masterKeyringFromSettings } from '@kiln/pki'
import { createLogger, startTracing } from '@kiln/telemetry'
import { loadWorkerConfig } from './config.ts'
import { startEngine } from './engine.ts'
import { WorkerMetrics } from './metrics.ts'

const config = loadWorkerConfig()
const tracing = await startTracing(config.tracing)
const logger = createLogger({ service: 'kiln-worker', level: config.logLevel })
const db = createDatabase({ url: config.databaseUrl, maxConnections: config.concurrency + 4 })

const { keyring, development } = masterKeyringFromSettings(config)
if (development) {
  logger.warn(
    'dev mode: cluster keys are sealed with the well-known development master key; never use this in production',
  )
}

await db.$queryRaw`SELECT 1`
const metrics = new WorkerMetrics()
// BullMQ workers must never give up on Redis commands: a restarted (or failed-over) Redis is waited for.
const connection = queueConnection(config.redis, { maxRetriesPerRequest: null })
const engine = await startEngine({
  db,
  masterKey: keyring,
  databaseUrl: config.databaseUrl,
  connection,
  prefix: queuePrefixFor(config.redis, config.queuePrefix),
  concurrency: config.concurrency,
  leaseMs: config.leaseMs,
  healthIntervalMs: config.healthIntervalMs,
  catalogueIntervalMs: config.catalogueIntervalMs,
  retryHorizonMs: config.retryHorizonMs,
  retryMaxDelayMs: config.retryMaxDelayMs,
  repairGraceMs: config.repairGraceMs,
  logger,
  metrics,
})
let stopping = false
const metricsServer =
  config.metrics.port > 0
    ? await startMetricsServer({
        ...config.metrics,
        metrics: () => metrics.registry.metrics(),
        healthy: () => !stopping && engine.running(),
      })
    : undefined
logger.info(
  { workerId: engine.workerId, concurrency: config.concurrency, metricsPort: metricsServer?.port ?? null },
  'worker ready',
)

async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  logger.info({ signal }, 'worker stopping')
  await engine.stop()
  await metricsServer?.close()
  await closeQueueConnection(connection)
  await db.$disconnect()
  // After the last step: the spans of the operations it finished are exported before it exits.
  await tracing.shutdown()
  logger.info({ signal }, 'worker stopped')
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))
