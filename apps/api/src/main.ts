import { createDatabase } from '@kiln/db'
import { masterKeyFromSettings } from '@kiln/pki'
import { createLogger, startTracing } from '@kiln/telemetry'
import { Redis } from 'ioredis'
import { buildApp } from './app.ts'
import { loadApiConfig } from './config.ts'
import { OidcVerifier } from './oidc.ts'

const config = loadApiConfig()
const tracing = await startTracing(config.tracing)
const logger = createLogger({ service: 'kiln-api', level: config.logLevel })
const db = createDatabase({ url: config.databaseUrl, maxConnections: config.databasePoolSize })
const redis = new Redis(config.redisUrl, {
  maxRetriesPerRequest: 1,
  enableOfflineQueue: false,
  lazyConnect: false,
})
redis.on('error', () => {
  // Reported by /readyz and as 503s; ioredis reconnects by itself.
})
const { masterKey } = masterKeyFromSettings(config)
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
const app = await buildApp({
  db,
  redis,
  masterKey,
  logger,
  bodyLimitBytes: config.bodyLimitBytes,
  ...(oidc ? { oidc } : {}),
  authentication: config.authentication,
  platformAdminGroups: config.platformAdminGroups,
  portalDir: config.portalDir,
  rateLimits: config.rateLimits,
  ...(config.trustProxy !== undefined ? { trustProxy: config.trustProxy } : {}),
})
if (config.authentication === 'required' && !oidc) {
  app.log.warn('No OIDC issuer (KILN_OIDC_ISSUER) outside dev mode: only API tokens are accepted.')
}

let stopping = false
async function shutdown(signal: string) {
  if (stopping) return
  stopping = true
  app.log.info({ signal }, 'shutting down')
  // Stop accepting requests and finish in-flight ones, then release the clients.
  await app.close()
  await Promise.allSettled([db.$disconnect(), redis.quit(), tracing.shutdown()])
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))

await app.listen({ host: config.host, port: config.port })
