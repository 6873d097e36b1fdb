import { parseSettings } from '@kiln/domain'
import Type from 'typebox'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1, description: 'PostgreSQL connection string.' }),
  REDIS_URL: Type.String({ minLength: 1, description: 'Redis connection string.' }),
  HOST: Type.String({ default: '127.0.0.1' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
  LOG_LEVEL: Type.Union(
    ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
    { default: 'info' },
  ),
  KILN_PUBLIC_URL: Type.String({ default: 'http://127.0.0.1:8080' }),
  DATABASE_POOL_SIZE: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, default: 262_144 }),
  KILN_QUEUE_PREFIX: Type.String({ minLength: 1, default: 'kiln' }),
  /** Base64 of 32 bytes: opens a cluster's CA key to sign the credentials it issues. */
  KILN_MASTER_KEY: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
})

export interface ApiConfig {
  databaseUrl: string
  redisUrl: string
  host: string
  port: number
  logLevel: string
  publicUrl: string
  databasePoolSize: number
  bodyLimitBytes: number
  queuePrefix: string
  /** Resolved with masterKeyFromSettings at boot. */
  masterKey: string | undefined
  devMode: boolean
}

/** Parses the environment once, at boot. Refuses to start, naming every missing or bad variable. */
export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const c = parseSettings(Env, env)
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    host: c.HOST,
    port: c.PORT,
    logLevel: c.LOG_LEVEL,
    publicUrl: c.KILN_PUBLIC_URL,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    bodyLimitBytes: c.BODY_LIMIT_BYTES,
    queuePrefix: c.KILN_QUEUE_PREFIX,
    masterKey: c.KILN_MASTER_KEY,
    devMode: c.KILN_DEV_MODE,
  }
}
