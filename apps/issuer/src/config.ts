import { LogLevelSetting, parseSettings } from '@kiln/domain'
import Type from 'typebox'

const Env = Type.Object({
  KILN_ISSUER_HOST: Type.String({ default: '127.0.0.1' }),
  KILN_ISSUER_PORT: Type.Integer({ minimum: 1, maximum: 65535, default: 8081 }),
  /** The API, whose /v1/auth/callback the portal client redirects to. */
  KILN_PUBLIC_URL: Type.String({ default: 'http://127.0.0.1:8080' }),
  /** The resource indicator and `aud` of access tokens for the API (Kiln's KILN_OIDC_AUDIENCE). */
  KILN_OIDC_AUDIENCE: Type.String({ minLength: 1, default: 'urn:kiln:api' }),
  KILN_OIDC_CLIENT_ID: Type.String({ minLength: 1, default: 'kiln-portal' }),
  KILN_OIDC_CLIENT_SECRET: Type.String({ minLength: 1, default: 'kiln-portal-dev-secret' }),
  ISSUER_ACCESS_TOKEN_TTL_SECONDS: Type.Integer({ minimum: 30, maximum: 86_400, default: 600 }),
  LOG_LEVEL: LogLevelSetting,
})

export interface IssuerConfig {
  host: string
  port: number
  apiUrl: string
  audience: string
  portalClientId: string
  portalClientSecret: string
  accessTokenTtlSeconds: number
  logLevel: string
}

/** Parses the environment once, at boot, naming every bad variable. */
export function loadIssuerConfig(env: NodeJS.ProcessEnv = process.env): IssuerConfig {
  const c = parseSettings(Env, env)
  return {
    host: c.KILN_ISSUER_HOST,
    port: c.KILN_ISSUER_PORT,
    apiUrl: c.KILN_PUBLIC_URL,
    audience: c.KILN_OIDC_AUDIENCE,
    portalClientId: c.KILN_OIDC_CLIENT_ID,
    portalClientSecret: c.KILN_OIDC_CLIENT_SECRET,
    accessTokenTtlSeconds: c.ISSUER_ACCESS_TOKEN_TTL_SECONDS,
    logLevel: c.LOG_LEVEL,
  }
}
