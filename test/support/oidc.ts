import { createHmac, createPublicKey, randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { importJWK, type JWK, type JWTPayload, SignJWT } from 'jose'
import type { ClientMetadata } from 'oidc-provider'
import { inject } from 'vitest'
import { buildApp, type KilnApp } from '../../apps/api/src/app.ts'
import { defaultAllowedAlgorithms, type OidcSettings, OidcVerifier } from '../../apps/api/src/oidc.ts'
import {
  cliClient,
  demoUsers,
  type IssuerUser,
  portalClient,
  type RunningIssuer,
  startIssuer,
} from '../../apps/issuer/src/index.ts'
import { createDatabase, type Database } from '../../packages/db/src/index.ts'
import { parseMasterKey } from '../../packages/pki/src/index.ts'
import { redisUrl } from './api.ts'
import { createTestDatabase } from './database.ts'

// A real OIDC issuer (oidc-provider, in-process on a free loopback port) for the API's tests, and
// tokens signed with its own keys for the cases its endpoints never issue (expired, wrong audience …).

export const testAudience = 'urn:kiln:api'

/** A free loopback port (closed again, so the caller can listen on it). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      )
    })
  })
}

/** The dev issuer with the demo users, the CLI client and the portal client of an API at `apiUrl`. */
export async function startTestIssuer(
  options: { apiUrl?: string; users?: IssuerUser[]; clients?: ClientMetadata[] } = {},
): Promise<RunningIssuer> {
  return startIssuer({
    audience: testAudience,
    users: options.users ?? demoUsers,
    clients: [
      cliClient,
      portalClient({ apiUrl: options.apiUrl ?? 'http://127.0.0.1:1' }),
      ...(options.clients ?? []),
    ],
    accessTokenTtlSeconds: 300,
  })
}

/**
 * The API's settings for the test issuer's portal client; `apiUrl` is where the API listens
 * (nothing does at the default, for tests that only verify tokens).
 */
export function testOidcSettings(
  issuer: RunningIssuer,
  options: { apiUrl?: string; postLoginRedirect?: string; scopes?: string[] } = {},
): OidcSettings {
  const apiUrl = options.apiUrl ?? 'http://127.0.0.1:1'
  return {
    issuer: issuer.issuer,
    audience: testAudience,
    clientId: 'kiln-portal',
    clientSecret: 'kiln-portal-dev-secret',
    groupsClaim: 'groups',
    allowedAlgorithms: defaultAllowedAlgorithms,
    clockSkewSeconds: 30,
    redirectUri: `${apiUrl}/v1/auth/callback`,
    postLoginRedirect: options.postLoginRedirect ?? `${apiUrl}/`,
    ...(options.scopes ? { scopes: options.scopes } : {}),
    sessionKey: randomKey(),
  }
}

const now = () => Math.floor(Date.now() / 1000)

/** A JWT signed (RS256) with one of the issuer's keys: by default a valid access token for demo. */
export async function signedToken(
  key: JWK,
  claims: JWTPayload & Record<string, unknown>,
  header: Record<string, unknown> = {},
): Promise<string> {
  const privateKey = await importJWK(key, 'RS256')
  return new SignJWT({ iat: now(), exp: now() + 300, ...claims })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: key.kid!, ...header })
    .sign(privateKey)
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** An unsigned token (`alg: none`) with the given claims. */
export const unsignedToken = (claims: JWTPayload) =>
  `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`

/**
 * The key-confusion attack: HS256 "signed" with the issuer's public key (as PEM text), which a
 * verifier that lets the token choose its algorithm would accept.
 */
export function hs256WithPublicKey(key: JWK, claims: JWTPayload): string {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = key
  const pem = createPublicKey({ key: publicJwk as import('node:crypto').JsonWebKey, format: 'jwk' })
    .export({ type: 'spki', format: 'pem' })
    .toString()
  const input = `${b64url({ alg: 'HS256', typ: 'JWT', kid: key.kid })}.${b64url(claims)}`
  return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`
}

/** The same token with its signature altered (one byte of the decoded signature flipped). */
export function withBadSignature(jwt: string): string {
  const [header, payload, signature] = jwt.split('.') as [string, string, string]
  const bytes = Buffer.from(signature, 'base64url')
  bytes[0] = (bytes[0] ?? 0) ^ 0xff
  return `${header}.${payload}.${bytes.toString('base64url')}`
}

/** Base64 of 32 random bytes, e.g. a KILN_SESSION_KEY. */
export const randomKey = () => randomBytes(32).toString('base64')

export interface OidcApi {
  issuer: RunningIssuer
  settings: OidcSettings
  /** Where the API listens (a free loopback port). */
  apiUrl: string
  db: Database
  redis: Redis
  app: KilnApp
  close(): Promise<void>
}

/**
 * The API on its own database with OIDC against a test issuer, listening on a loopback port, as a
 * browser or the CLI reaches it. `settings` adjusts the defaults of testOidcSettings.
 */
export async function startOidcApi(options: {
  tag: string
  settings?: (defaults: OidcSettings, apiUrl: string) => OidcSettings
  authentication?: 'local' | 'required'
}): Promise<OidcApi> {
  const port = await freePort()
  const apiUrl = `http://127.0.0.1:${port}`
  const issuer = await startTestIssuer({ apiUrl })
  const defaults = testOidcSettings(issuer, { apiUrl })
  const settings = options.settings ? options.settings(defaults, apiUrl) : defaults
  const database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  const db = createDatabase({ url: database.url, maxConnections: 3 })
  const redis = new Redis(redisUrl, {
    maxRetriesPerRequest: 1,
    keyPrefix: `kiln-test-${inject('runId')}-${options.tag}:`,
  })
  const app = await buildApp({
    db,
    redis,
    ...(options.authentication ? { authentication: options.authentication } : {}),
    oidc: { verifier: await OidcVerifier.discover(settings), settings },
    masterKey: parseMasterKey(randomKey()),
  })
  await app.listen({ host: '127.0.0.1', port })
  return {
    issuer,
    settings,
    apiUrl,
    db,
    redis,
    app,
    async close() {
      await app.close()
      await db.$disconnect()
      redis.disconnect()
      await database.drop()
      await issuer.close()
    },
  }
}
