import { createLogger } from '@kiln/telemetry'
import { loadIssuerConfig } from './config.ts'
import { cliClient, demoUsers, portalClient, startIssuer } from './provider.ts'

// Kiln's development OIDC issuer: `scripts/up.sh` runs it for the demo. Never for production: its
// users and passwords are the well-known demo ones and its keys are made fresh at every start.

const config = loadIssuerConfig()
const logger = createLogger({ service: 'kiln-issuer', level: config.logLevel })
const issuer = await startIssuer({
  host: config.host,
  port: config.port,
  audience: config.audience,
  accessTokenTtlSeconds: config.accessTokenTtlSeconds,
  users: demoUsers,
  clients: [
    portalClient({
      apiUrl: config.apiUrl,
      clientId: config.portalClientId,
      clientSecret: config.portalClientSecret,
    }),
    cliClient,
  ],
})
logger.warn(
  `Development OIDC issuer on ${issuer.issuer} (users ${demoUsers.map((u) => `${u.username}/${u.password}`).join(', ')}; ` +
    `access tokens for ${config.audience}). Not for production.`,
)

let stopping = false
async function shutdown() {
  if (stopping) return
  stopping = true
  await issuer.close()
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown())
process.on('SIGINT', () => void shutdown())
