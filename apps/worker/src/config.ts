import { LogLevelSetting, parseSettings } from '@kiln/domain'
import { type TracingSettings, tracingSettings } from '@kiln/telemetry'
import Type from 'typebox'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1 }),
  REDIS_URL: Type.String({ minLength: 1 }),
  KILN_QUEUE_PREFIX: Type.String({ minLength: 1, default: 'kiln' }),
  WORKER_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 256, default: 16 }),
  OPERATION_LEASE_MS: Type.Integer({ minimum: 1000, default: 15_000 }),
  HEALTH_INTERVAL_MS: Type.Integer({ minimum: 0, default: 10_000 }),
  CATALOGUE_INTERVAL_MS: Type.Integer({ minimum: 0, default: 60_000 }),
  /** How long a step keeps retrying a retryable failure (a backend outage) before it gives up. */
  KILN_RETRY_HORIZON_SECONDS: Type.Integer({ minimum: 1, default: 1800 }),
  /** The longest wait between two attempts of a failing step. */
  KILN_RETRY_MAX_DELAY_SECONDS: Type.Integer({ minimum: 1, default: 30 }),
  /** How long a machine the backend does not call failed must stay unhealthy before repair replaces it. */
  KILN_REPAIR_GRACE_SECONDS: Type.Integer({ minimum: 0, default: 300 }),
  /** Base64 of 32 bytes: wraps every cluster private key at rest. */
  KILN_MASTER_KEY: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
  LOG_LEVEL: LogLevelSetting,
})

export interface WorkerConfig {
  databaseUrl: string
  redisUrl: string
  queuePrefix: string
  concurrency: number
  leaseMs: number
  healthIntervalMs: number
  /** How often bare-metal backends' machine classes are re-read (0: only at start). */
  catalogueIntervalMs: number
  retryHorizonMs: number
  retryMaxDelayMs: number
  repairGraceMs: number
  /** Base64 of 32 bytes; resolved with masterKeyFromSettings at boot. */
  masterKey: string | undefined
  devMode: boolean
  logLevel: string
  /** The standard OTEL_* variables; off unless they ask for OTLP. */
  tracing: TracingSettings
}

/** Parses the environment once, at boot; refuses to start naming what is missing. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const c = parseSettings(Env, env)
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    queuePrefix: c.KILN_QUEUE_PREFIX,
    concurrency: c.WORKER_CONCURRENCY,
    leaseMs: c.OPERATION_LEASE_MS,
    healthIntervalMs: c.HEALTH_INTERVAL_MS,
    catalogueIntervalMs: c.CATALOGUE_INTERVAL_MS,
    retryHorizonMs: c.KILN_RETRY_HORIZON_SECONDS * 1000,
    retryMaxDelayMs: c.KILN_RETRY_MAX_DELAY_SECONDS * 1000,
    repairGraceMs: c.KILN_REPAIR_GRACE_SECONDS * 1000,
    masterKey: c.KILN_MASTER_KEY,
    devMode: c.KILN_DEV_MODE,
    logLevel: c.LOG_LEVEL,
    tracing: tracingSettings(env, 'kiln-worker'),
  }
}
