import { createHash } from 'node:crypto'
import { parseSettings } from '@kiln/domain'
import Type from 'typebox'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1 }),
  REDIS_URL: Type.String({ minLength: 1 }),
  KILN_QUEUE_PREFIX: Type.String({ minLength: 1, default: 'kiln' }),
  WORKER_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 256, default: 16 }),
  OPERATION_LEASE_MS: Type.Integer({ minimum: 1000, default: 15_000 }),
  HEALTH_INTERVAL_MS: Type.Integer({ minimum: 0, default: 10_000 }),
  /** Base64 of 32 bytes: wraps every cluster private key at rest. */
  KILN_MASTER_KEY: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
})

export interface WorkerConfig {
  databaseUrl: string
  redisUrl: string
  queuePrefix: string
  concurrency: number
  leaseMs: number
  healthIntervalMs: number
  /** Base64; in dev mode without one, a fixed development key. */
  masterKeyBase64: string
  devMode: boolean
}

/** A well-known key for local development only: anything sealed with it is readable by anyone. */
export const devMasterKeyBase64 = createHash('sha256').update('kiln development master key').digest('base64')

/** Parses the environment once, at boot; refuses to start naming what is missing. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const c = parseSettings(Env, env)
  if (!c.KILN_MASTER_KEY && !c.KILN_DEV_MODE) {
    throw new Error(
      'Invalid configuration:\n  /KILN_MASTER_KEY: required outside dev mode (32 random bytes, base64: `openssl rand -base64 32`); set KILN_DEV_MODE=true only on a development machine.',
    )
  }
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    queuePrefix: c.KILN_QUEUE_PREFIX,
    concurrency: c.WORKER_CONCURRENCY,
    leaseMs: c.OPERATION_LEASE_MS,
    healthIntervalMs: c.HEALTH_INTERVAL_MS,
    masterKeyBase64: c.KILN_MASTER_KEY ?? devMasterKeyBase64,
    devMode: c.KILN_DEV_MODE,
  }
}
