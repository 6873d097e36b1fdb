import type { RedisClient as Redis } from '@kiln/jobs'
import type { MasterKeyring } from '@kiln/pki'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { decodeJwt } from 'jose'
import * as client from 'openid-client'
import Type from 'typebox'
import {
  AuthenticationError,
  assertCsrfSafe,
  decorateOidc,
  defaultScopes,
  groupsOf,
  type LoginState,
  newSession,
  type OidcRuntime,
  type OidcSettings,
  type OidcVerifier,
  oidcRuntime,
  readCookie,
  revokeSession,
  serializeCookie,
  sessionOf,
  type VerifiedIdentity,
} from '../oidc.ts'
import { HttpProblem, sendProblem, toProblem } from '../problems.ts'
import type { KilnApp } from '../route-deps.ts'
import { IdentitySchema, LogoutSchema, named, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'

export interface OidcRouteDeps {
  /** Absent: OIDC is not configured, and these routes answer 404 `oidc-not-configured`. */
  oidc?: { verifier: OidcVerifier; settings: OidcSettings }
  redis: Redis
  /** Session cookies are sealed under a key derived from it unless `settings.sessionKey` is set. */
  masterKey: MasterKeyring | null
}

const loginTtlSeconds = 600

const redirect = (description: string) => ({
  type: 'null',
  description,
  headers: {
    location: { type: 'string', format: 'uri-reference', description: 'Where the browser goes next.' },
    'set-cookie': { type: 'string', description: 'HttpOnly, SameSite=Lax (Secure on https).' },
  },
})

const notConfigured = () =>
  new HttpProblem(
    404,
    'oidc-not-configured',
    'Login is not configured',
    'This Kiln has no OIDC issuer (KILN_OIDC_ISSUER), so there is no portal login.',
  )

/** Runs a handler; a refused credential is answered with its `reason` in the problem document. */
function answering<R>(handler: (request: FastifyRequest, reply: FastifyReply) => Promise<R>) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store')
    try {
      return await handler(request, reply)
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error
      const { body, headers } = toProblem(error, request)
      return sendProblem(reply, body, headers)
    }
  }
}

/** Where a login may send the browser back to: a path, or a URL on one of Kiln's own origins. */
function returnTarget(runtime: OidcRuntime, returnTo: string | undefined): string {
  if (returnTo === undefined) return runtime.settings.postLoginRedirect
  const relative = returnTo.startsWith('/') && !returnTo.startsWith('//') && !returnTo.startsWith('/\\')
  let target: URL | undefined
  try {
    target = new URL(returnTo, runtime.settings.postLoginRedirect)
  } catch {
    target = undefined
  }
  if (target && (relative || runtime.allowedOrigins.has(target.origin))) return target.toString()
  throw new HttpProblem(
    400,
    'invalid-request',
    'The request does not match the schema',
    "returnTo must be a path on Kiln's portal (or a URL on its own origin).",
    [{ pointer: '/returnTo', in: 'query', message: "must be a path on Kiln's own origin" }],
  )
}

function loginFailed(detail: string) {
  return new HttpProblem(401, 'login-failed', 'Login failed', detail)
}

/** The code exchange's failure, as the caller should hear it. */
function exchangeProblem(error: unknown): HttpProblem {
  if (error instanceof AuthenticationError) return error
  if (error instanceof client.ResponseBodyError || error instanceof client.AuthorizationResponseError) {
    return loginFailed(
      `The issuer refused the login: ${error.error}${error.error_description ? ` (${error.error_description})` : ''}.`,
    )
  }
  if (error instanceof client.ClientError)
    return loginFailed(`The login response is not valid: ${error.message}`)
  return new HttpProblem(
    503,
    'service-unavailable',
    'The identity provider is unavailable',
    'The OIDC issuer could not be reached to finish the login; try again shortly.',
    [],
    { 'retry-after': '5' },
  )
}

const identityBody = (identity: VerifiedIdentity, authenticatedBy: 'session' | 'bearer', exp: number) => ({
  ...identity,
  authenticatedBy,
  expiresAt: new Date(exp * 1000).toISOString(),
})

/**
 * The portal's login as a backend-for-frontend (authorization code + PKCE S256, `state`, `nonce`),
 * its logout, and "who am I". All public: they establish identity rather than need one.
 */
const CliLoginSettingsSchema = named('CliLoginSettings', {
  ...Type.Object(
    {
      issuer: Type.String({
        description: 'Discover the endpoints at `<issuer>/.well-known/openid-configuration`.',
      }),
      clientId: Type.String({ description: 'A public client: no secret, PKCE S256.' }),
      audience: Type.String({
        description: 'Ask for it as `resource`: access tokens must carry it in `aud`.',
      }),
      scopes: Type.Array(Type.String()),
    },
    {
      additionalProperties: false,
      examples: [
        {
          issuer: 'https://login.example.org/realms/kiln',
          clientId: 'kiln-cli',
          audience: 'urn:kiln:api',
          scopes: ['openid', 'profile', 'email', 'groups'],
        },
      ],
    },
  ),
  description: 'What the CLI needs to sign in at the issuer.',
})

export function registerOidcRoutes(app: KilnApp, deps: OidcRouteDeps): void {
  const runtime = deps.oidc
    ? oidcRuntime({ ...deps.oidc, redis: deps.redis, masterKey: deps.masterKey })
    : null
  decorateOidc(app, runtime)
  const need = (): OidcRuntime => {
    if (!runtime) throw notConfigured()
    return runtime
  }
  const clearCookie = (name: string, path: string) =>
    serializeCookie(name, '', { path, maxAgeSeconds: 0, secure: runtime?.cookies.secure ?? false })
  const loginCookiePath = () => new URL(need().settings.redirectUri).pathname

  app.get(
    '/v1/auth/login',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'login',
        summary:
          "Start the portal login at the OIDC issuer (redirects the browser to the issuer's login page)",
        description:
          'Answers 302 to the issuer (authorization code + PKCE S256, with state and nonce) and sets a short-lived, HttpOnly login cookie that the callback needs. For browsers, not API clients.',
        tags: ['auth'],
        querystring: Type.Object({
          returnTo: Type.Optional(
            Type.String({
              maxLength: 2048,
              description: "Where to land after login: a path on Kiln's portal. Default: the portal's home.",
              examples: ['/projects/demo/clusters'],
            }),
          ),
        }),
        response: { 302: redirect("To the issuer's authorization endpoint."), ...problemResponses(404) },
      },
    },
    answering(async (request, reply) => {
      const oidc = need()
      const { returnTo } = request.query as { returnTo?: string }
      const codeVerifier = client.randomPKCECodeVerifier()
      const login: LoginState = {
        v: 1,
        state: client.randomState(),
        nonce: client.randomNonce(),
        codeVerifier,
        returnTo: returnTarget(oidc, returnTo),
        exp: Math.floor(Date.now() / 1000) + loginTtlSeconds,
      }
      const url = client.buildAuthorizationUrl(oidc.verifier.configuration, {
        redirect_uri: oidc.settings.redirectUri,
        response_type: 'code',
        scope: (oidc.settings.scopes ?? defaultScopes).join(' '),
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state: login.state,
        nonce: login.nonce,
      })
      reply.header(
        'set-cookie',
        serializeCookie(oidc.cookies.login, oidc.sealer.seal('login', login), {
          path: loginCookiePath(),
          maxAgeSeconds: loginTtlSeconds,
          secure: oidc.cookies.secure,
        }),
      )
      return reply.redirect(url.toString(), 302)
    }),
  )

  app.get(
    '/v1/auth/callback',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'loginCallback',
        summary: 'Finish the portal login: the issuer sends the browser here with a code',
        description:
          'Exchanges the code (with the PKCE verifier), validates the ID token (signature, issuer, audience, expiry, nonce), sets the session cookie (HttpOnly, SameSite=Lax, Secure on https; sealed with AES-256-GCM) and redirects to the portal.',
        tags: ['auth'],
        querystring: Type.Object({
          code: Type.Optional(
            Type.String({ maxLength: 4096, description: 'The authorization code (OIDC).' }),
          ),
          state: Type.Optional(
            Type.String({ maxLength: 1024, description: 'The state Kiln sent the issuer.' }),
          ),
          iss: Type.Optional(
            Type.String({ maxLength: 2048, description: 'The issuer that answers (RFC 9207).' }),
          ),
          error: Type.Optional(
            Type.String({ maxLength: 256, description: 'The issuer’s error code, on failure.' }),
          ),
          error_description: Type.Optional(
            Type.String({ maxLength: 2048, description: 'The issuer’s explanation, on failure.' }),
          ),
        }),
        response: {
          302: redirect('To the portal, with the session cookie set.'),
          ...problemResponses(401, 404),
        },
      },
    },
    answering(async (request, reply) => {
      const oidc = need()
      // The login cookie is single-use: gone whatever happens next.
      reply.header('set-cookie', clearCookie(oidc.cookies.login, loginCookiePath()))
      const sealed = readCookie(request, oidc.cookies.login)
      const login = sealed ? oidc.sealer.open<LoginState>('login', sealed) : undefined
      if (login?.v !== 1 || login.exp * 1000 <= Date.now()) {
        throw new HttpProblem(
          400,
          'login-expired',
          'No login in progress',
          'This browser has no login in progress (or it took more than 10 minutes); start again at /v1/auth/login.',
        )
      }
      const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : ''
      // The URL as the issuer redirected to it (behind a proxy it is not the URL Fastify sees).
      const currentUrl = new URL(oidc.settings.redirectUri)
      currentUrl.search = query
      let identity: VerifiedIdentity
      try {
        const tokens = await client.authorizationCodeGrant(oidc.verifier.configuration, currentUrl, {
          pkceCodeVerifier: login.codeVerifier,
          expectedState: login.state,
          expectedNonce: login.nonce,
          idTokenExpected: true,
        })
        identity = await oidc.verifier.verifyIdToken(tokens.id_token!)
        const claims = tokens.claims() ?? {}
        // Some issuers keep groups out of the ID token; ask userinfo then.
        if (
          !(oidc.settings.groupsClaim in claims) &&
          oidc.verifier.configuration.serverMetadata().userinfo_endpoint
        ) {
          const info = await client.fetchUserInfo(
            oidc.verifier.configuration,
            tokens.access_token,
            identity.subject,
          )
          identity.groups = groupsOf(info, oidc.settings.groupsClaim)
        }
      } catch (error) {
        throw exchangeProblem(error)
      }
      const { cookie } = newSession(oidc, identity)
      reply.header('set-cookie', cookie)
      request.log.info({ subject: identity.subject, groups: identity.groups }, 'portal login')
      return reply.redirect(login.returnTo, 302)
    }),
  )

  app.post(
    '/v1/auth/logout',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'logout',
        summary: 'End the portal session (the cookie is cleared and refused from now on)',
        description:
          "Cookie-authenticated, so the CSRF rule applies: send `X-Requested-With` and an `Origin` of Kiln's own. Answers where to go to end the issuer's session too.",
        tags: ['auth'],
        response: { 200: ref(LogoutSchema), ...problemResponses(403, 404) },
      },
    },
    answering(async (request, reply) => {
      const oidc = need()
      assertCsrfSafe(request)
      let session: Awaited<ReturnType<typeof sessionOf>>
      try {
        session = await sessionOf(request)
      } catch (error) {
        // Already unusable (expired, logged out, sealed under an old key): clearing it is all there is to do.
        if (!(error instanceof AuthenticationError) || error.reason === 'csrf') throw error
      }
      if (session) {
        await revokeSession(oidc, session)
        request.log.info({ subject: session.identity.subject }, 'portal logout')
      }
      reply.header('set-cookie', clearCookie(oidc.cookies.session, '/'))
      return { endSessionUrl: oidc.verifier.endSessionUrl() }
    }),
  )

  app.get(
    '/v1/auth/cli',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'getCliLogin',
        summary: 'How the command line logs in: the OIDC issuer and its public client',
        description:
          '`kiln login --oidc` reads this, then runs the authorization code flow with PKCE on a loopback redirect (RFC 8252) and sends the access token it gets as a bearer token. 404 `oidc-not-configured` when this Kiln has no issuer or no command-line client (KILN_OIDC_CLI_CLIENT_ID).',
        tags: ['auth'],
        response: {
          200: ref(CliLoginSettingsSchema),
          ...problemResponses(404),
        },
      },
    },
    async (_request, reply) => {
      const { settings } = need()
      if (!settings.cliClientId) throw notConfigured()
      reply.header('cache-control', 'no-store')
      return {
        issuer: settings.issuer,
        clientId: settings.cliClientId,
        audience: settings.audience,
        scopes: settings.scopes ?? defaultScopes,
      }
    },
  )

  app.get(
    '/v1/auth/me',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'getIdentity',
        summary: 'Who am I: the identity of the portal session or of an OIDC bearer token',
        description:
          'With the session cookie, or `Authorization: Bearer <OIDC access token>`. 401 problem+json (with `reason`) when neither is presented or valid.',
        tags: ['auth'],
        response: { 200: ref(IdentitySchema), ...problemResponses(401, 404) },
      },
    },
    answering(async (request) => {
      const oidc = need()
      const header = request.headers.authorization
      if (header !== undefined) {
        const m = /^Bearer +(\S+) *$/i.exec(header)
        if (!m)
          throw new AuthenticationError(
            'malformed-token',
            'Send credentials as `Authorization: Bearer <token>`.',
          )
        const token = m[1]!
        const identity = await oidc.verifier.verify(token)
        return identityBody(identity, 'bearer', decodeJwt(token).exp!)
      }
      const session = await sessionOf(request)
      if (!session) {
        throw new AuthenticationError(
          'missing-token',
          'No credentials: log in at /v1/auth/login, or send `Authorization: Bearer <OIDC access token>`.',
        )
      }
      return identityBody(session.identity, 'session', session.exp)
    }),
  )
}
