import { availableParallelism } from 'node:os'
import { fileURLToPath } from 'node:url'
import { LogLevelSetting, parseSettings } from '@kiln/domain'
import { type RedisTopology, redisTopologyFromEnv } from '@kiln/jobs'
import { type TracingSettings, tracingSettings } from '@kiln/telemetry'
import Type from 'typebox'
import { defaultAllowedAlgorithms, defaultScopes, type OidcSettings } from './oidc.ts'
import type { RateLimits } from './rate-limits.ts'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1, description: 'PostgreSQL connection string.' }),
  REDIS_URL: Type.Optional(
    Type.String({
      minLength: 1,
      description: 'Redis connection string; optional with KILN_REDIS_SENTINELS or KILN_REDIS_CLUSTER_NODES.',
    }),
  ),
  HOST: Type.String({ default: '127.0.0.1' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
  LOG_LEVEL: LogLevelSetting,
  KILN_PUBLIC_URL: Type.String({ default: 'http://127.0.0.1:8080' }),
  DATABASE_POOL_SIZE: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
  /** API processes on one port (node:cluster); default one per core; 1 runs no cluster. */
  KILN_API_PROCESSES: Type.Optional(Type.Integer({ minimum: 1, maximum: 256 })),
  BODY_LIMIT_BYTES: Type.Integer({ minimum: 1024, default: 262_144 }),
  KILN_QUEUE_PREFIX: Type.String({ minLength: 1, default: 'kiln' }),
  /** Base64 of 32 bytes: opens a cluster's CA key to sign the credentials it issues. */
  KILN_MASTER_KEY: Type.Optional(Type.String({ minLength: 1 })),
  /** Comma-separated base64 master keys, newest first: the first seals, any opens (rotation). */
  KILN_MASTER_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
  /** Comma-separated OIDC groups whose members are platform admins. */
  KILN_PLATFORM_ADMIN_GROUPS: Type.String({ default: '' }),
  /** OIDC for people (see oidc.ts); all optional until KILN_OIDC_ISSUER is set. */
  KILN_OIDC_ISSUER: Type.Optional(Type.String({ pattern: '^https?://' })),
  KILN_OIDC_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  KILN_OIDC_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  KILN_OIDC_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  KILN_OIDC_CLI_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  KILN_OIDC_GROUPS_CLAIM: Type.String({ minLength: 1, default: 'groups' }),
  KILN_OIDC_SCOPES: Type.String({ minLength: 1, default: defaultScopes.join(' ') }),
  KILN_OIDC_ALGORITHMS: Type.String({ minLength: 1, default: defaultAllowedAlgorithms.join(',') }),
  KILN_OIDC_CLOCK_SKEW_SECONDS: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
  KILN_OIDC_REDIRECT_URI: Type.Optional(Type.String({ pattern: '^https?://' })),
  KILN_OIDC_POST_LOGIN_REDIRECT: Type.Optional(Type.String({ pattern: '^https?://' })),
  /** Where the built portal is; default apps/portal/dist of this checkout. */
  KILN_PORTAL_DIR: Type.Optional(Type.String({ minLength: 1 })),
  /** Base64 of 32 bytes sealing session cookies; default: derived from the master keys (see oidcRuntime). */
  KILN_SESSION_KEY: Type.Optional(Type.String({ minLength: 44, maxLength: 44 })),
  KILN_SESSION_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 7 * 24 * 3600, default: 8 * 3600 }),
  /** Requests per window for one API token or user; 0 turns the limit off. */
  KILN_RATE_LIMIT_PER_IDENTITY: Type.Integer({ minimum: 0, default: 600 }),
  /** Requests per window from one client address (before authentication); 0 turns the limit off. */
  KILN_RATE_LIMIT_PER_ADDRESS: Type.Integer({ minimum: 0, default: 1200 }),
  KILN_RATE_LIMIT_WINDOW_SECONDS: Type.Integer({ minimum: 1, maximum: 3600, default: 60 }),
  /**
   * Behind a reverse proxy: whose X-Forwarded-For to believe for the client address (`true`, or
   * comma-separated proxy addresses/CIDRs). Unset: the peer address is the client's.
   */
  KILN_TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  /** GET /metrics on its own port (never behind authentication or rate limits); 0 turns it off. */
  KILN_METRICS_HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  KILN_METRICS_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 9464 }),
})

export interface ApiConfig {
  databaseUrl: string
  /** A single server, a Sentinel-managed primary or a Redis Cluster. */
  redis: RedisTopology
  host: string
  port: number
  logLevel: string
  publicUrl: string
  portalDir: string
  databasePoolSize: number
  /** API processes sharing the port (each with its own pool of databasePoolSize connections). */
  processes: number
  bodyLimitBytes: number
  queuePrefix: string
  /** Resolved with masterKeyringFromSettings at boot. */
  masterKey: string | undefined
  masterKeys: string | undefined
  devMode: boolean
  /** OIDC groups whose members are platform admins (templates, backends, projects, quotas). */
  platformAdminGroups: string[]
  /**
   * Requests without credentials: 401 (`required`), or the local operator (`local`, the embedded
   * single-user mode) — only in dev mode without an OIDC issuer.
   */
  authentication: 'local' | 'required'
  /** Set when KILN_OIDC_ISSUER is: main.ts discovers the issuer at boot. */
  oidc: OidcSettings | undefined
  rateLimits: RateLimits
  trustProxy: boolean | string[] | undefined
  /** Where /metrics listens; port 0: nowhere. */
  metrics: { host: string; port: number }
  /** The standard OTEL_* variables; off unless they ask for OTLP. */
  tracing: TracingSettings
}

/** Parses the environment once, at boot. Refuses to start, naming every missing or bad variable. */
export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const c = parseSettings(Env, env)
  return {
    databaseUrl: c.DATABASE_URL,
    redis: redisTopologyFromEnv(env),
    host: c.HOST,
    port: c.PORT,
    logLevel: c.LOG_LEVEL,
    publicUrl: c.KILN_PUBLIC_URL,
    portalDir: c.KILN_PORTAL_DIR ?? fileURLToPath(new URL('../../portal/dist', import.meta.url)),
    databasePoolSize: c.DATABASE_POOL_SIZE,
    processes: c.KILN_API_PROCESSES ?? availableParallelism(),
    bodyLimitBytes: c.BODY_LIMIT_BYTES,
    queuePrefix: c.KILN_QUEUE_PREFIX,
    masterKey: c.KILN_MASTER_KEY,
    masterKeys: c.KILN_MASTER_KEYS,
    devMode: c.KILN_DEV_MODE,
    platformAdminGroups: c.KILN_PLATFORM_ADMIN_GROUPS.split(',')
      .map((g) => g.trim())
      .filter((g) => g.length > 0),
    authentication: c.KILN_DEV_MODE && !c.KILN_OIDC_ISSUER ? 'local' : 'required',
    oidc: oidcSettingsOf(c),
    rateLimits: {
      perIdentity: c.KILN_RATE_LIMIT_PER_IDENTITY,
      perAddress: c.KILN_RATE_LIMIT_PER_ADDRESS,
      windowMs: c.KILN_RATE_LIMIT_WINDOW_SECONDS * 1000,
    },
    trustProxy: trustProxyOf(c.KILN_TRUST_PROXY),
    metrics: { host: c.KILN_METRICS_HOST, port: c.KILN_METRICS_PORT },
    tracing: tracingSettings(env, 'kiln-api'),
  }
}

/** `true`/`false`, or a list of proxy addresses and CIDRs. */
function trustProxyOf(value: string | undefined): ApiConfig['trustProxy'] {
  if (value === undefined) return undefined
  if (value === 'true' || value === 'false') return value === 'true'
  return csv(value, /[\s,]+/)
}

const csv = (text: string, separator: RegExp) => text.split(separator).filter((s) => s.length > 0)

/** The OIDC settings, or undefined without an issuer; the issuer needs an audience and a client id. */
function oidcSettingsOf(c: Type.Static<typeof Env>): OidcSettings | undefined {
  if (!c.KILN_OIDC_ISSUER) return undefined
  const missing = (['KILN_OIDC_AUDIENCE', 'KILN_OIDC_CLIENT_ID'] as const).filter((name) => !c[name])
  if (missing.length > 0) {
    throw new Error(
      `Invalid configuration:\n  ${missing.map((name) => `/${name}: required when KILN_OIDC_ISSUER is set`).join('\n  ')}`,
    )
  }
  const publicUrl = c.KILN_PUBLIC_URL.replace(/\/+$/, '')
  return {
    issuer: c.KILN_OIDC_ISSUER,
    audience: c.KILN_OIDC_AUDIENCE!,
    clientId: c.KILN_OIDC_CLIENT_ID!,
    ...(c.KILN_OIDC_CLIENT_SECRET ? { clientSecret: c.KILN_OIDC_CLIENT_SECRET } : {}),
    ...(c.KILN_OIDC_CLI_CLIENT_ID ? { cliClientId: c.KILN_OIDC_CLI_CLIENT_ID } : {}),
    groupsClaim: c.KILN_OIDC_GROUPS_CLAIM,
    scopes: csv(c.KILN_OIDC_SCOPES, /[\s,]+/),
    allowedAlgorithms: csv(c.KILN_OIDC_ALGORITHMS, /[\s,]+/),
    clockSkewSeconds: c.KILN_OIDC_CLOCK_SKEW_SECONDS,
    redirectUri: c.KILN_OIDC_REDIRECT_URI ?? `${publicUrl}/v1/auth/callback`,
    // Until a portal is served, landing on "who am I" shows that the login worked.
    postLoginRedirect: c.KILN_OIDC_POST_LOGIN_REDIRECT ?? `${publicUrl}/portal/`,
    ...(c.KILN_SESSION_KEY ? { sessionKey: c.KILN_SESSION_KEY } : {}),
    sessionTtlSeconds: c.KILN_SESSION_TTL_SECONDS,
  }
}
