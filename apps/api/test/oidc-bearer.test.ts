import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { JWK } from 'jose'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createDatabase, type Database } from '../../../packages/db/src/index.ts'
import { parseMasterKey } from '../../../packages/pki/src/index.ts'
import { redisUrl } from '../../../test/support/api.ts'
import { createTestDatabase } from '../../../test/support/database.ts'
import {
  hs256WithPublicKey,
  randomKey,
  signedToken,
  startTestIssuer,
  testAudience,
  testOidcSettings,
  unsignedToken,
  withBadSignature,
} from '../../../test/support/oidc.ts'
import type { RunningIssuer } from '../../issuer/src/index.ts'
import { userAccessToken } from '../../issuer/src/index.ts'
import { buildApp, type KilnApp } from '../src/app.ts'
import {
  AuthenticationError,
  type AuthenticationFailure,
  type OidcSettings,
  OidcVerifier,
} from '../src/oidc.ts'
import { expectProblem } from './helpers.ts'

// Bearer JWTs against a real issuer (oidc-provider in-process): one the issuer hands out through the
// real code + PKCE flow is accepted; each way a token can be wrong is refused with its own reason,
// by `verify` and by the API (401 problem+json, no side effect).

let issuer: RunningIssuer
let verifier: OidcVerifier
let settings: OidcSettings
let realToken: string
let database: { url: string; drop(): Promise<void> }
let db: Database
let redis: Redis
let app: KilnApp

const now = () => Math.floor(Date.now() / 1000)
const signingKey = () => issuer.keys()[0] as JWK
const claims = () => ({ iss: issuer.issuer, aud: testAudience, sub: 'demo', groups: ['kiln:demo-admins'] })

beforeAll(async () => {
  issuer = await startTestIssuer()
  settings = testOidcSettings(issuer)
  // No cool-down between JWKS fetches, so the rotation test needs no 30 s wait.
  verifier = await OidcVerifier.discover(settings, { jwksCooldownMs: 0 })
  realToken = (
    await userAccessToken({
      issuer: issuer.issuer,
      audience: testAudience,
      username: 'demo',
      password: 'demo',
    })
  ).accessToken
  database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  db = createDatabase({ url: database.url, maxConnections: 3 })
  redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, keyPrefix: `kiln-test-${inject('runId')}-bearer:` })
  app = await buildApp({
    db,
    redis,
    oidc: { verifier, settings },
    masterKey: parseMasterKey(randomKey()),
  })
})

afterAll(async () => {
  await app?.close()
  await db?.$disconnect()
  redis?.disconnect()
  await database?.drop()
  await issuer?.close()
})

async function refusal(token: string): Promise<AuthenticationError> {
  const error = await verifier.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error, 'the token was accepted').toBeInstanceOf(AuthenticationError)
  return error as AuthenticationError
}

describe('OidcVerifier.verify', () => {
  it('accepts an access token the issuer issued through the code + PKCE flow', async () => {
    const identity = await verifier.verify(realToken)
    expect(identity).toEqual({
      subject: 'demo',
      issuer: issuer.issuer,
      groups: ['kiln:demo-admins'],
      email: 'demo@kiln.example',
      name: 'Demo User',
    })
  })

  it('accepts a token within the clock skew of its expiry', async () => {
    const token = await signedToken(signingKey(), { ...claims(), exp: now() - 10 })
    await expect(verifier.verify(token)).resolves.toMatchObject({ subject: 'demo' })
  })

  // Each way a token can be wrong, with the reason it is refused for: all different.
  const cases: [string, () => Promise<string> | string, AuthenticationFailure][] = [
    ['malformed (not a JWS)', () => 'not-a-token', 'malformed-token'],
    ['malformed (segments not base64url JSON)', () => 'abc.def.ghi', 'malformed-token'],
    ['bad signature', () => withBadSignature(realToken), 'bad-signature'],
    ['alg: none', () => unsignedToken({ ...claims(), exp: now() + 300 }), 'alg-none'],
    [
      'HS256 signed with the public key',
      () => hs256WithPublicKey(signingKey(), { ...claims(), exp: now() + 300 }),
      'alg-symmetric',
    ],
    [
      'wrong issuer',
      () => signedToken(signingKey(), { ...claims(), iss: 'http://127.0.0.1:1/evil' }),
      'wrong-issuer',
    ],
    [
      'wrong audience',
      () => signedToken(signingKey(), { ...claims(), aud: 'urn:other:api' }),
      'wrong-audience',
    ],
    ['expired', () => signedToken(signingKey(), { ...claims(), exp: now() - 120 }), 'expired'],
    ['not yet valid', () => signedToken(signingKey(), { ...claims(), nbf: now() + 120 }), 'not-yet-valid'],
  ]
  for (const [name, token, reason] of cases) {
    it(`refuses ${name}: ${reason}`, async () => {
      const error = await refusal(await token())
      expect(error.reason).toBe(reason)
      expect(error.status).toBe(401)
    })
  }

  it('gives every refusal above its own reason', () => {
    const reasons = cases.slice(1).map(([, , reason]) => reason)
    expect(new Set(reasons).size).toBe(reasons.length)
  })

  it('refuses a token signed by a key the issuer never published', async () => {
    const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
    const stranger = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid: randomUUID() }
    expect((await refusal(await signedToken(stranger, claims()))).reason).toBe('unknown-key')
  })

  it('refuses a token without an expiry', async () => {
    const token = await signedToken(signingKey(), { ...claims(), exp: undefined })
    expect((await refusal(token)).reason).toBe('missing-claim')
  })

  it('accepts tokens signed with a new key once the issuer rotates (the JWKS is fetched again)', async () => {
    const old = signingKey()
    // The verifier has the JWKS cached now.
    await verifier.verify(await signedToken(old, claims()))
    const fresh = issuer.rotateSigningKey()
    expect(fresh.kid).not.toBe(old.kid)
    // A token from the issuer itself, after the rotation, is signed with the new key …
    const { accessToken } = await userAccessToken({
      issuer: issuer.issuer,
      audience: testAudience,
      username: 'admin',
      password: 'admin',
    })
    expect(JSON.parse(Buffer.from(accessToken.split('.')[0]!, 'base64url').toString()).kid).toBe(fresh.kid)
    await expect(verifier.verify(accessToken)).resolves.toMatchObject({
      subject: 'admin',
      groups: ['kiln:platform-admins'],
    })
    // … and tokens signed with the old key still verify while the issuer publishes it.
    await expect(verifier.verify(await signedToken(old, claims()))).resolves.toMatchObject({
      subject: 'demo',
    })
  })

  it('refuses settings that allow none or HS256', async () => {
    await expect(
      OidcVerifier.discover({ ...settings, allowedAlgorithms: ['RS256', 'HS256'] }),
    ).rejects.toThrow(/HS256 is not allowed/)
    await expect(OidcVerifier.discover({ ...settings, allowedAlgorithms: ['none'] })).rejects.toThrow(
      /none is not allowed/,
    )
  })

  it('refuses an issuer whose discovery names another issuer', async () => {
    await expect(OidcVerifier.discover({ ...settings, issuer: `${issuer.issuer}/other` })).rejects.toThrow()
  })
})

describe('bearer tokens at the API', () => {
  const me = (authorization?: string) =>
    app.inject({ method: 'GET', url: '/v1/auth/me', headers: authorization ? { authorization } : {} })

  it('GET /v1/auth/me with an access token from the issuer answers the identity', async () => {
    const res = await me(`Bearer ${realToken}`)
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toMatchObject({
      subject: 'demo',
      issuer: issuer.issuer,
      groups: ['kiln:demo-admins'],
      authenticatedBy: 'bearer',
    })
    expect(res.headers['cache-control']).toBe('no-store')
  })

  it('without a token: 401 problem+json with a bare Bearer challenge', async () => {
    const res = await me()
    const problem = expectProblem(res, 401)
    expect(problem.type).toBe('https://kiln.dev/problems/unauthenticated')
    expect(problem['reason']).toBe('missing-token')
    expect(res.headers['www-authenticate']).toBe('Bearer realm="kiln"')
  })

  it('each refused token: 401 problem+json naming the reason, with an invalid_token challenge', async () => {
    for (const [name, token, reason] of cases()) {
      const res = await me(`Bearer ${await token()}`)
      const problem = expectProblem(res, 401)
      expect(problem['reason'], name).toBe(reason)
      expect(res.headers['www-authenticate'], name).toMatch(/^Bearer realm="kiln", error="invalid_token"/)
    }
  })

  it('a refused token on a protected route: 401 problem+json and nothing written', async () => {
    const before = await db.cluster.count()
    for (const [name, token] of cases()) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/projects/demo/clusters',
        headers: { authorization: `Bearer ${await token()}` },
        payload: { name: 'should-not-exist', template: 'k8s-1.31' },
      })
      expect(res.statusCode, `${name}: ${res.body}`).toBe(401)
      expect(res.headers['content-type'], name).toMatch(/^application\/problem\+json/)
    }
    expect(await db.cluster.count()).toBe(before)
  })

  function cases(): [string, () => Promise<string> | string, AuthenticationFailure][] {
    return [
      ['malformed', () => 'not.a-token', 'malformed-token'],
      ['bad signature', () => withBadSignature(realToken), 'bad-signature'],
      ['alg none', () => unsignedToken({ ...claims(), exp: now() + 300 }), 'alg-none'],
      [
        'HS256 with public key',
        () => hs256WithPublicKey(signingKey(), { ...claims(), exp: now() + 300 }),
        'alg-symmetric',
      ],
      [
        'wrong issuer',
        () => signedToken(signingKey(), { ...claims(), iss: 'http://evil.example' }),
        'wrong-issuer',
      ],
      [
        'wrong audience',
        () => signedToken(signingKey(), { ...claims(), aud: 'urn:other' }),
        'wrong-audience',
      ],
      ['expired', () => signedToken(signingKey(), { ...claims(), exp: now() - 120 }), 'expired'],
      ['not yet valid', () => signedToken(signingKey(), { ...claims(), nbf: now() + 120 }), 'not-yet-valid'],
    ]
  }
})
