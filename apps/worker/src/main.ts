import { createDatabase } from '@kiln/db'
import { masterKeyFromSettings } from '@kiln/pki'
import { createLogger, startTracing } from '@kiln/telemetry'
import { loadWorkerConfig } from './config.ts'
import { startEngine } from './engine.ts'

const config = loadWorkerConfig()
const tracing = await startTracing(config.tracing)
const logger = createLogger({ service: 'kiln-worker', level: config.logLevel })
const db = createDatabase({ url: config.databaseUrl, maxConnections: config.concurrency + 4 })

const { masterKey, development } = masterKeyFromSettings(config)
if (development) {
  logger.warn(
    'dev mode: cluster keys are sealed with the well-known development master key; never use this in production',
  )
}

await db.$queryRaw`SELECT 1`
const engine = await startEngine({
  db,
  masterKey,
  databaseUrl: config.databaseUrl,
  // BullMQ workers must never give up on Redis commands: a restarted Redis is waited for.
  connection: { url: config.redisUrl, maxRetriesPerRequest: null },
  prefix: config.queuePrefix,
  concurrency: config.concurrency,
  leaseMs: config.leaseMs,
  healthIntervalMs: config.healthIntervalMs,
  catalogueIntervalMs: config.catalogueIntervalMs,
  retryHorizonMs: config.retryHorizonMs,
  retryMaxDelayMs: config.retryMaxDelayMs,
  repairGraceMs: config.repairGraceMs,
  logger,
})
logger.info({ workerId: engine.workerId, concurrency: config.concurrency }, 'worker ready')

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  logger.info({ signal }, 'worker stopping')
  await engine.stop()
  await db.$disconnect()
  // After the last step: the spans of the operations it finished are exported before it exits.
  await tracing.shutdown()
  logger.info({ signal }, 'worker stopped')
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))
