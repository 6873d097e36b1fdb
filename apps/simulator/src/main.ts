import { createDatabase } from '@kiln/db'
import { masterKeyringFromSettings } from '@kiln/pki'
import { createLogger, logEvent } from '@kiln/telemetry'
import { loadSimulatorConfig } from './config.ts'
import { startApiServer } from './server.ts'

const config = loadSimulatorConfig()
const db = createDatabase({ url: config.databaseUrl, maxConnections: 10 })
const logger = createLogger({ service: 'kiln-simulator', level: config.logLevel })
const log = (event: Record<string, unknown>) => logEvent(logger, event)

const { keyring, development } = masterKeyringFromSettings(config)
if (development) {
  log({ msg: 'dev mode: using the well-known development master key; never use this in production' })
}

await db.$queryRaw`SELECT 1`
const server = await startApiServer({
  db,
  masterKey: keyring,
  host: config.host,
  port: config.port,
  domain: config.domain,
  log,
})
log({
  msg: 'simulator API server ready',
  address: `https://${server.host}:${server.port}`,
  domain: config.domain,
})

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  log({ msg: 'simulator API server stopping', signal })
  await server.close()
  await db.$disconnect()
  log({ msg: 'simulator API server stopped', signal })
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))
