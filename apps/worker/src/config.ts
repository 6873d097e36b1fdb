import { LogLevelSetting, parseSettings } from '@kiln/domain'
import { type RedisTopology, redisTopologyFromEnv } from '@kiln/jobs'
import { type TracingSettings, tracingSettings } from '@kiln/telemetry'
import Type from 'typebox'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1 }),
  /** A single Redis; optional with KILN_REDIS_SENTINELS or KILN_REDIS_CLUSTER_NODES (see @kiln/jobs redis.ts). */
  REDIS_URL: Type.Optional(Type.String({ minLength: 1 })),
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
  /** Comma-separated base64 master keys, newest first: the first seals, any opens (rotation). */
  KILN_MASTER_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
  /** GET /metrics and /healthz on their own port; 0 turns the server off. */
  KILN_METRICS_HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  KILN_METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9465 }),
  LOG_LEVEL: LogLevelSetting,
})

export interface WorkerConfig {
  databaseUrl: string
  /** A single server, a Sentinel-managed primary or a Redis Cluster. */
  redis: RedisTopology
  queuePrefix: string
  concurrency: number
  leaseMs: number
  healthIntervalMs: number
  /** How often bare-metal backends' machine classes are re-read (0: only at start). */
  catalogueIntervalMs: number
  retryHorizonMs: number
  retryMaxDelayMs: number
  repairGraceMs: number
  /** Base64 of 32 bytes; resolved with masterKeyringFromSettings at boot. */
  masterKey: string | undefined
  masterKeys: string | undefined
  devMode: boolean
  /** Where /metrics and /healthz listen; port 0: nowhere. */
  metrics: { host: string; port: number }
  logLevel: string
  /** The standard OTEL_* variables; off unless they ask for OTLP. */
  tracing: TracingSettings
}

/** Parses the environment once, at boot; refuses to start naming what is missing. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const c = parseSettings(Env, env)
  return {
    databaseUrl: c.DATABASE_URL,
    redis: redisTopologyFromEnv(env),
    queuePrefix: c.KILN_QUEUE_PREFIX,
    concurrency: c.WORKER_CONCURRENCY,
    leaseMs: c.OPERATION_LEASE_MS,
    healthIntervalMs: c.HEALTH_INTERVAL_MS,
    catalogueIntervalMs: c.CATALOGUE_INTERVAL_MS,
    retryHorizonMs: c.KILN_RETRY_HORIZON_SECONDS * 1000,
    retryMaxDelayMs: c.KILN_RETRY_MAX_DELAY_SECONDS * 1000,
    repairGraceMs: c.KILN_REPAIR_GRACE_SECONDS * 1000,
    masterKey: c.KILN_MASTER_KEY,
    masterKeys: c.KILN_MASTER_KEYS,
    devMode: c.KILN_DEV_MODE,
    metrics: { host: c.KILN_METRICS_HOST, port: c.KILN_METRICS_PORT },
    logLevel: c.LOG_LEVEL,
    tracing: tracingSettings(env, 'kiln-worker'),
  }
}
