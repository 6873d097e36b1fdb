import { createDatabase } from '@kiln/db'
import { Redis } from 'ioredis'
import { loadWorkerConfig } from './config.ts'

// The provisioning engine (dispatcher, step runner, reconciler) is the next issue. Until then the
// worker only proves its wiring: it connects to PostgreSQL and Redis, reports ready, and shuts
// down in order on SIGTERM. Operations stay `pending`, and the API says so.
const config = loadWorkerConfig()
const db = createDatabase({ url: config.databaseUrl, maxConnections: 2 })
const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null })

await db.$queryRaw`SELECT 1`
await redis.ping()
console.log(JSON.stringify({ msg: 'worker ready', engine: 'not yet implemented: operations stay pending' }))

const keepAlive = setInterval(() => {}, 60_000)
async function shutdown(signal: string) {
  clearInterval(keepAlive)
  await Promise.allSettled([db.$disconnect(), redis.quit()])
  console.log(JSON.stringify({ msg: 'worker stopped', signal }))
  process.exit(0)
}
process.once('SIGTERM', () => void shutdown('SIGTERM'))
process.once('SIGINT', () => void shutdown('SIGINT'))
