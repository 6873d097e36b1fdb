import { createDatabase } from '@kiln/db'
import { closeQueueConnection, queueConnection, queuePrefixFor, startMetricsServer } from '@kiln/jobs'
import { masterKeyringFromSettings } from '@kiln/pki'
import { loadWorkerConfig } from './config.ts'
import { startEngine } from './engine.ts'
import { WorkerMetrics } from './metrics.ts'

const config = loadWorkerConfig()
const db = createDatabase({ url: config.databaseUrl, maxConnections: config.concurrency + 4 })
// One JSON line per event; errors go to stderr, everything else (expected conditions too) to stdout.
const log = (event: Record<string, unknown>) => {
  const line = JSON.stringify({ time: new Date().toISOString(), level: 'info', ...event })
  if (event.level === 'error') console.error(line)
  else console.log(line)
}

const { keyring, development } = masterKeyringFromSettings(config)
if (development) {
  log({
    msg: 'dev mode: cluster keys are sealed with the well-known development master key; never use this in production',
  })
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
  log,
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
log({
  msg: 'worker ready',
  workerId: engine.workerId,
  concurrency: config.concurrency,
  metricsPort: metricsServer?.port ?? null,
})

async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  log({ msg: 'worker stopping', signal })
  await engine.stop()
  await metricsServer?.close()
  await closeQueueConnection(connection)
  await db.$disconnect()
  log({ msg: 'worker stopped', signal })
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))
