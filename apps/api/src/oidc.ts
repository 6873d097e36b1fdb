import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'
import type { RedisClient as Redis } from '@kiln/jobs'
import { keyringKeys, type MasterKeyring } from '@kiln/pki'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  type JWTPayload,
  type JWTVerifyGetKey,
  errors as jose,
  jwtVerify,
} from 'jose'
import * as client from 'openid-client'
import type { ProblemSlug } from './problem-types.ts'
import { HttpProblem } from './problems.ts'

// OIDC for people: bearer JWTs from the issuer, and the portal's login as a backend-for-frontend whose
// session lives in an encrypted cookie. openid-client does discovery and the code flow; jose checks
// every JWT against the issuer's JWKS. Which roles an identity has is auth.ts's business.

/** Who a validated token or session says the caller is. */
export interface VerifiedIdentity {
  /** The issuer's `sub`: stable per issuer, never reassigned. */
  subject: string
  issuer: string
  /** From the configured groups claim; `[]` when the token has none. */
  groups: string[]
  email?: string
  name?: string
}

/**
 * Why a credential was refused; each maps to a 401 (or 403 for `csrf`, 503 for
 * `issuer-unavailable`) with the reason as the problem's `reason`.
 */
export type AuthenticationFailure =
  | 'missing-token'
  | 'malformed-token'
  | 'token-unknown'
  | 'token-revoked'
  | 'token-expired'
  | 'alg-none'
  | 'alg-symmetric'
  | 'alg-not-allowed'
  | 'unknown-key'
  | 'bad-signature'
  | 'wrong-issuer'
  | 'wrong-audience'
  | 'expired'
  | 'not-yet-valid'
  | 'missing-claim'
  | 'invalid-claim'
  | 'issuer-unavailable'
  | 'session-invalid'
  | 'session-expired'
  | 'session-revoked'
  | 'csrf'

/** Status, problem slug, title and challenge of each failure: 401 unless the caller is not at fault. */
function failureResponse(
  reason: AuthenticationFailure,
  message: string,
): { status: number; slug: ProblemSlug; title: string; headers: Record<string, string> } {
  if (reason === 'csrf') {
    return { status: 403, slug: 'csrf-rejected', title: 'Cross-site request refused', headers: {} }
  }
  if (reason === 'issuer-unavailable') {
    return {
      status: 503,
      slug: 'service-unavailable',
      title: 'The identity provider is unavailable',
      headers: { 'retry-after': '5' },
    }
  }
  // RFC 6750 section 3: a bare challenge when nothing was presented, `invalid_token` otherwise.
  const challenge =
    reason === 'missing-token'
      ? 'Bearer realm="kiln"'
      : `Bearer realm="kiln", error="invalid_token", error_description="${message.replaceAll('"', "'")}"`
  return {
    status: 401,
    slug: 'unauthenticated',
    title: 'Authentication required',
    headers: { 'www-authenticate': challenge },
  }
}

/**
 * A credential was presented and refused (or none was, where one is needed). It is an HttpProblem,
 * so thrown anywhere it answers 401 problem+json with a `WWW-Authenticate: Bearer` challenge (403 for
 * `csrf`, 503 for `issuer-unavailable`), with the `reason` in the document.
 */
export class AuthenticationError extends HttpProblem {
  constructor(
    readonly reason: AuthenticationFailure,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    const response = failureResponse(reason, message)
    super(response.status, response.slug, response.title, message, [], response.headers, { reason })
    this.name = 'AuthenticationError'
    if (options.cause !== undefined) this.cause = options.cause
  }
}

/** What Kiln needs to know about its OpenID Connect issuer. Parsed from KILN_OIDC_* in config.ts. */
export interface OidcSettings {
  /** The issuer identifier, exactly as the discovery document's `issuer`. */
  issuer: string
  /** The `aud` bearer tokens for the API must carry. */
  audience: string
  clientId: string
  /** For a confidential client (client_secret_basic); without it the portal login is a public client. */
  clientSecret?: string
  /** Where groups are in the claims; a dotted path (`realm_access.roles`) reaches into objects. */
  groupsClaim: string
  /** JWS algorithms accepted; asymmetric only (`none` and HS* are refused at start-up). */
  allowedAlgorithms: string[]
  /** Leeway for `exp` and `nbf`. */
  clockSkewSeconds: number
  /** The API's callback as the issuer knows it: `<public URL>/v1/auth/callback`. */
  redirectUri: string
  /** Where the browser goes after login (and after logout at the issuer): the portal. Default `<public URL>/v1/auth/me`. */
  postLoginRedirect: string
  /** Scopes the portal login asks for. Default `openid profile email`; Dex and the dev issuer need `groups` too. */
  scopes?: string[]
  /**
   * The public client (code + PKCE, loopback redirect, RFC 8252) `kiln login --oidc` signs in as;
   * unset: the command line logs in with API tokens only.
   */
  cliClientId?: string
  /** Base64 of 32 bytes that protects session cookies; without it a key derived from the master key does. */
  sessionKey?: string
  /** How long a portal session lasts. Default 8 h. */
  sessionTtlSeconds?: number
}

export const defaultAllowedAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]
export const defaultScopes = ['openid', 'profile', 'email']
const defaultSessionTtlSeconds = 8 * 60 * 60

/** Tuning for tests and operators; the defaults suit production. */
export interface DiscoverOptions {
  /** After a JWKS fetch, how long an unknown `kid` is refused before the JWKS is fetched again. Default 30 s. */
  jwksCooldownMs?: number
  /** How long a fetched JWKS is trusted before it is fetched again anyway. Default 10 min. */
  jwksMaxAgeMs?: number
  /** Per request to the issuer. Default 5 s. */
  timeoutMs?: number
}

/** Refuses settings that would weaken verification, naming the variable. */
function checkSettings(settings: OidcSettings) {
  const problems: string[] = []
  if (settings.allowedAlgorithms.length === 0) problems.push('KILN_OIDC_ALGORITHMS: names no algorithm')
  for (const alg of settings.allowedAlgorithms) {
    if (alg.toLowerCase() === 'none' || /^HS/i.test(alg)) {
      problems.push(`KILN_OIDC_ALGORITHMS: ${alg} is not allowed (unsigned or symmetric)`)
    }
  }
  if (!settings.audience) problems.push('KILN_OIDC_AUDIENCE: required')
  if (!settings.clientId) problems.push('KILN_OIDC_CLIENT_ID: required')
  if (problems.length > 0) throw new Error(`Invalid configuration:\n  ${problems.join('\n  ')}`)
}

const isLoopback = (url: URL) =>
  url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(url.hostname)

/**
 * The issuer, discovered once at boot: verifies bearer JWTs against its JWKS and runs the portal's
 * authorization-code + PKCE flow.
 */
export class OidcVerifier {
  private constructor(
    readonly settings: OidcSettings,
    /** openid-client's view of the issuer and of Kiln as its client. */
    readonly configuration: client.Configuration,
    private readonly keys: JWTVerifyGetKey,
  ) {}

  /**
   * Fetches the issuer's discovery document (openid-client checks that its `issuer` is the one
   * configured) and prepares its JWKS. Plain http is accepted for a loopback issuer only (the dev issuer).
   */
  static async discover(settings: OidcSettings, options: DiscoverOptions = {}): Promise<OidcVerifier> {
    checkSettings(settings)
    const issuerUrl = new URL(settings.issuer)
    const insecure = issuerUrl.protocol === 'http:'
    if (insecure && !isLoopback(issuerUrl)) {
      throw new Error(`The OIDC issuer ${settings.issuer} is plain http; only a loopback issuer may be.`)
    }
    const configuration = await client.discovery(
      issuerUrl,
      settings.clientId,
      { redirect_uris: [settings.redirectUri], response_types: ['code'] },
      settings.clientSecret ? client.ClientSecretBasic(settings.clientSecret) : client.None(),
      {
        timeout: Math.ceil((options.timeoutMs ?? 5_000) / 1000),
        ...(insecure ? { execute: [client.allowInsecureRequests] } : {}),
      },
    )
    const metadata = configuration.serverMetadata()
    if (!metadata.jwks_uri) throw new Error(`The OIDC issuer ${settings.issuer} publishes no jwks_uri.`)
    const keys = createRemoteJWKSet(new URL(metadata.jwks_uri), {
      cooldownDuration: options.jwksCooldownMs ?? 30_000,
      cacheMaxAge: options.jwksMaxAgeMs ?? 600_000,
      timeoutDuration: options.timeoutMs ?? 5_000,
    })
    return new OidcVerifier(settings, configuration, keys)
  }

  /** The discovered issuer identifier. */
  get issuer(): string {
    return this.configuration.serverMetadata().issuer
  }

  /** Validates a bearer JWT for the API: signature, `iss`, `aud`, `exp`/`nbf` (with skew), algorithm. */
  verify(jwt: string): Promise<VerifiedIdentity> {
    return this.verifyJwt(jwt, this.settings.audience).then(({ payload }) => this.identityOf(payload))
  }

  /**
   * Validates an ID token from the code exchange for this client (its `aud`), signature included
   * (openid-client checks the claims and the nonce but, per OIDC Core 3.1.3.7, not the signature).
   */
  async verifyIdToken(jwt: string): Promise<VerifiedIdentity> {
    const { payload } = await this.verifyJwt(jwt, this.settings.clientId)
    return this.identityOf(payload)
  }

  private async verifyJwt(jwt: string, audience: string) {
    if (typeof jwt !== 'string' || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(jwt)) {
      throw new AuthenticationError(
        'malformed-token',
        'The token is not a compact JWS (header.payload.signature).',
      )
    }
    let alg: unknown
    try {
      alg = decodeProtectedHeader(jwt).alg
      decodeJwt(jwt)
    } catch {
      throw new AuthenticationError('malformed-token', 'The token header or payload is not base64url JSON.')
    }
    // Checked before any key is looked at: an unsigned token, or one "signed" with a shared secret
    // (e.g. HS256 keyed with the issuer's public key), never reaches signature verification.
    if (typeof alg !== 'string') throw new AuthenticationError('malformed-token', 'The token names no alg.')
    if (alg.toLowerCase() === 'none') {
      throw new AuthenticationError('alg-none', 'Unsigned tokens (alg "none") are refused.')
    }
    if (/^HS/i.test(alg)) {
      throw new AuthenticationError('alg-symmetric', `Symmetrically signed tokens (${alg}) are refused.`)
    }
    if (!this.settings.allowedAlgorithms.includes(alg)) {
      throw new AuthenticationError('alg-not-allowed', `Tokens signed with ${alg} are not accepted.`)
    }
    const options = {
      issuer: this.settings.issuer,
      audience,
      algorithms: this.settings.allowedAlgorithms,
      clockTolerance: this.settings.clockSkewSeconds,
      requiredClaims: ['sub', 'exp'],
    }
    try {
      return await jwtVerify(jwt, this.keys, options)
    } catch (error) {
      const failure = authenticationErrorOf(error)
      if (failure.reason !== 'issuer-unavailable') throw failure
    }
    // Once more when the keys could not be fetched: a pooled connection the issuer had just closed
    // fails at once, and a second fetch on a new one succeeds.
    try {
      return await jwtVerify(jwt, this.keys, options)
    } catch (error) {
      throw authenticationErrorOf(error)
    }
  }

  private identityOf(payload: JWTPayload): VerifiedIdentity {
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) {
      throw new AuthenticationError('invalid-claim', 'The token has no subject.')
    }
    const identity: VerifiedIdentity = {
      subject: payload.sub,
      issuer: payload.iss ?? this.settings.issuer,
      groups: groupsOf(payload, this.settings.groupsClaim),
    }
    if (typeof payload['email'] === 'string') identity.email = payload['email']
    const name = payload['name'] ?? payload['preferred_username']
    if (typeof name === 'string') identity.name = name
    return identity
  }

  /** The issuer's RP-initiated logout URL, when it has one. */
  endSessionUrl(): string | null {
    if (!this.configuration.serverMetadata().end_session_endpoint) return null
    return client
      .buildEndSessionUrl(this.configuration, {
        client_id: this.settings.clientId,
        post_logout_redirect_uri: this.settings.postLoginRedirect,
      })
      .toString()
  }
}

function authenticationErrorOf(error: unknown): AuthenticationError {
  if (error instanceof AuthenticationError) return error
  if (error instanceof jose.JWTExpired) return new AuthenticationError('expired', 'The token has expired.')
  if (error instanceof jose.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss':
        return new AuthenticationError('wrong-issuer', 'The token is from another issuer.')
      case 'aud':
        return new AuthenticationError('wrong-audience', 'The token is not meant for this API.')
      case 'nbf':
        return new AuthenticationError('not-yet-valid', 'The token is not valid yet.')
    }
    if (error.reason === 'missing') {
      return new AuthenticationError('missing-claim', `The token has no "${error.claim}" claim.`)
    }
    return new AuthenticationError('invalid-claim', `The token's "${error.claim}" claim is invalid.`)
  }
  if (error instanceof jose.JWSSignatureVerificationFailed) {
    return new AuthenticationError('bad-signature', 'The token signature does not verify.')
  }
  if (error instanceof jose.JWKSNoMatchingKey) {
    return new AuthenticationError('unknown-key', "The token is signed by a key the issuer doesn't publish.")
  }
  if (error instanceof jose.JOSEAlgNotAllowed || error instanceof jose.JOSENotSupported) {
    return new AuthenticationError('alg-not-allowed', 'The token algorithm is not accepted.')
  }
  if (error instanceof jose.JWTInvalid || error instanceof jose.JWSInvalid) {
    return new AuthenticationError('malformed-token', 'The token is not a valid JWT.')
  }
  // JWKSTimeout, JWKSInvalid, a refused connection: the issuer, not the caller, is at fault.
  return new AuthenticationError(
    'issuer-unavailable',
    'The issuer keys could not be fetched; retry shortly.',
    {
      cause: error,
    },
  )
}

/** Reads the groups claim; a dotted name reaches into objects when no claim has the whole name. */
export function groupsOf(claims: Record<string, unknown>, claim: string): string[] {
  let value: unknown = claims[claim]
  if (value === undefined && claim.includes('.')) {
    value = claim
      .split('.')
      .reduce<unknown>(
        (at, key) => (at && typeof at === 'object' ? (at as Record<string, unknown>)[key] : undefined),
        claims,
      )
  }
  if (typeof value === 'string') return value.length > 0 ? [value] : []
  return Array.isArray(value) ? value.filter((g): g is string => typeof g === 'string') : []
}

// ---------------------------------------------------------------------------------------------------
// Sessions: AES-256-GCM sealed cookies; no server-side store except a Redis deny-list for logged-out ones.

/** A portal session, sealed into the cookie. */
export interface SessionPayload {
  v: 1
  /** Random id; logout deny-lists it until `exp`. */
  sid: string
  identity: VerifiedIdentity
  /** Seconds since the epoch. */
  iat: number
  exp: number
}

/** The login in flight: what the callback must see again. */
export interface LoginState {
  v: 1
  state: string
  nonce: string
  codeVerifier: string
  returnTo: string
  exp: number
}

type SealPurpose = 'session' | 'login'

/**
 * Seals small JSON values for cookies: AES-256-GCM, the purpose bound in as associated data. Seals
 * with the first key material and opens with any, so a master-key rotation keeps sessions alive for
 * as long as the old key stays configured.
 */
export class CookieSealer {
  readonly #keys: Buffer[]

  constructor(...keyMaterials: [Buffer, ...Buffer[]]) {
    // HKDF so one master key never serves two purposes directly.
    this.#keys = keyMaterials.map((material) =>
      Buffer.from(hkdfSync('sha256', material, 'kiln', 'kiln-session-cookie-v1', 32)),
    )
  }

  get #sealingKey(): Buffer {
    return this.#keys[0]!
  }

  seal(purpose: SealPurpose, value: object): string {
    const nonce = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.#sealingKey, nonce)
    cipher.setAAD(Buffer.from(`kiln:${purpose}:v1`))
    const body = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()])
    return `v1.${Buffer.concat([nonce, body, cipher.getAuthTag()]).toString('base64url')}`
  }

  /** The sealed value, or undefined when it was altered, sealed under another key or for another purpose. */
  open<T>(purpose: SealPurpose, sealed: string): T | undefined {
    if (!sealed.startsWith('v1.')) return undefined
    const raw = Buffer.from(sealed.slice(3), 'base64url')
    if (raw.length < 12 + 16 + 2) return undefined
    for (const key of this.#keys) {
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
        decipher.setAAD(Buffer.from(`kiln:${purpose}:v1`))
        decipher.setAuthTag(raw.subarray(raw.length - 16))
        const text = Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()])
        return JSON.parse(text.toString('utf8')) as T
      } catch {
        // Sealed under another key (or altered): try the next.
      }
    }
    return undefined
  }
}

/** Everything the session helpers need, hung on the Fastify instance by registerOidcRoutes. */
export interface OidcRuntime {
  verifier: OidcVerifier
  settings: OidcSettings
  sealer: CookieSealer
  redis: Redis
  cookies: CookieNames & { secure: boolean }
  /** Origins whose pages may send cookie-authenticated unsafe requests. */
  allowedOrigins: Set<string>
  sessionTtlSeconds: number
}

export interface CookieNames {
  session: string
  login: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Set by registerOidcRoutes when OIDC is configured; null otherwise. */
    kilnOidc: OidcRuntime | null
  }
}

/**
 * Builds the runtime from settings. The session key is KILN_SESSION_KEY, else derived from the master
 * keys: sealed with the newest, opened with any, so sessions survive a rotation until the old key is
 * removed from KILN_MASTER_KEYS (then their holders log in again; KILN_SESSION_KEY avoids that).
 */
export function oidcRuntime(options: {
  verifier: OidcVerifier
  settings: OidcSettings
  redis: Redis
  masterKey?: MasterKeyring | null
}): OidcRuntime {
  const { settings } = options
  let keyMaterials: [Buffer, ...Buffer[]]
  const masterKeys = options.masterKey ? keyringKeys(options.masterKey) : []
  if (settings.sessionKey) {
    keyMaterials = [Buffer.from(settings.sessionKey, 'base64')]
    if (keyMaterials[0].length !== 32) {
      throw new Error(
        'Invalid configuration:\n  KILN_SESSION_KEY: must be 32 random bytes, base64 (`openssl rand -base64 32`)',
      )
    }
  } else if (masterKeys[0]) {
    keyMaterials = [masterKeys[0].bytes, ...masterKeys.slice(1).map((key) => key.bytes)]
  } else {
    throw new Error(
      'Invalid configuration:\n  KILN_SESSION_KEY: required for OIDC login without a master key',
    )
  }
  const secure = new URL(settings.redirectUri).protocol === 'https:'
  const allowedOrigins = new Set([new URL(settings.redirectUri).origin])
  allowedOrigins.add(new URL(settings.postLoginRedirect, settings.redirectUri).origin)
  return {
    verifier: options.verifier,
    settings,
    sealer: new CookieSealer(...keyMaterials),
    redis: options.redis,
    // __Host- pins the session cookie to this host, https and Path=/ (no Domain can widen it).
    cookies: secure
      ? { session: '__Host-kiln-session', login: '__Secure-kiln-login', secure }
      : { session: 'kiln-session', login: 'kiln-login', secure },
    allowedOrigins,
    sessionTtlSeconds: settings.sessionTtlSeconds ?? defaultSessionTtlSeconds,
  }
}

/** The value of one cookie in a request's Cookie header. */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie
  if (!header) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

export interface CookieOptions {
  maxAgeSeconds: number
  path: string
  secure: boolean
}

/** A Set-Cookie value: always HttpOnly and SameSite=Lax (sent on top-level navigations only). */
export function serializeCookie(name: string, value: string, options: CookieOptions): string {
  return [
    `${name}=${value}`,
    `Path=${options.path}`,
    `Max-Age=${options.maxAgeSeconds}`,
    'HttpOnly',
    'SameSite=Lax',
    ...(options.secure ? ['Secure'] : []),
  ].join('; ')
}

const revokedKey = (sid: string) => `kiln:session-revoked:${sid}`
const unsafeMethods = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/**
 * CSRF rule for cookie-authenticated requests. An unsafe method (POST, PUT, PATCH, DELETE) must carry
 * `X-Requested-With` (a custom header: a cross-site page cannot send it without a CORS preflight,
 * which Kiln never grants) AND an `Origin` that is Kiln's own (the redirect URI's or the portal's).
 * Safe methods pass. Bearer-authenticated requests need neither: browsers never attach bearer tokens.
 */
export function assertCsrfSafe(request: FastifyRequest): void {
  if (!unsafeMethods.has(request.method)) return
  const runtime = request.server.kilnOidc
  const origin = request.headers.origin
  if (!request.headers['x-requested-with']) {
    throw new AuthenticationError(
      'csrf',
      'A cookie-authenticated request that changes something must send an X-Requested-With header.',
    )
  }
  if (!origin || !runtime?.allowedOrigins.has(origin)) {
    throw new AuthenticationError(
      'csrf',
      `A cookie-authenticated request that changes something must come from Kiln's own origin (Origin: ${origin ?? 'absent'}).`,
    )
  }
}

/**
 * The identity of the portal session the request carries, or undefined when it carries none (or OIDC
 * is not configured). Throws AuthenticationError when a session cookie is present but invalid, expired
 * or logged out, and — for unsafe methods — when the CSRF rule ({@link assertCsrfSafe}) is not met.
 */
export async function sessionIdentity(request: FastifyRequest): Promise<VerifiedIdentity | undefined> {
  const session = await sessionOf(request)
  return session?.identity
}

/** The whole session (with its expiry), as sessionIdentity checks it. */
export async function sessionOf(request: FastifyRequest): Promise<SessionPayload | undefined> {
  const runtime = request.server.kilnOidc
  if (!runtime) return undefined
  const sealed = readCookie(request, runtime.cookies.session)
  if (!sealed) return undefined
  const session = runtime.sealer.open<SessionPayload>('session', sealed)
  if (session?.v !== 1 || session.identity.issuer !== runtime.settings.issuer) {
    throw new AuthenticationError('session-invalid', 'The session cookie is not valid; log in again.')
  }
  if (session.exp * 1000 <= Date.now()) {
    throw new AuthenticationError('session-expired', 'The session has expired; log in again.')
  }
  if ((await runtime.redis.exists(revokedKey(session.sid))) > 0) {
    throw new AuthenticationError('session-revoked', 'The session was logged out; log in again.')
  }
  assertCsrfSafe(request)
  return session
}

/** Makes a new session cookie for an identity. */
export function newSession(
  runtime: OidcRuntime,
  identity: VerifiedIdentity,
): { cookie: string; session: SessionPayload } {
  const now = Math.floor(Date.now() / 1000)
  const session: SessionPayload = {
    v: 1,
    sid: randomBytes(16).toString('base64url'),
    identity,
    iat: now,
    exp: now + runtime.sessionTtlSeconds,
  }
  const value = runtime.sealer.seal('session', session)
  // Browsers drop cookies above 4 KiB silently; say so instead.
  if (value.length > 3_900) {
    throw new Error(
      `The session for ${identity.subject} is too large for a cookie (${identity.groups.length} groups); trim the groups claim.`,
    )
  }
  return {
    session,
    cookie: serializeCookie(runtime.cookies.session, value, {
      path: '/',
      maxAgeSeconds: runtime.sessionTtlSeconds,
      secure: runtime.cookies.secure,
    }),
  }
}

/** Deny-lists a session until it would have expired anyway. */
export async function revokeSession(runtime: OidcRuntime, session: SessionPayload): Promise<void> {
  const ttlMs = session.exp * 1000 - Date.now()
  if (ttlMs > 0) await runtime.redis.set(revokedKey(session.sid), '1', 'PX', ttlMs)
}

/** Attaches the runtime (or null) to the app, so sessionIdentity finds it from any request. */
export function decorateOidc(app: FastifyInstance, runtime: OidcRuntime | null) {
  app.decorate('kilnOidc', runtime)
}
