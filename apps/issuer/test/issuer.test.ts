import { type ChildProcess, spawn } from 'node:child_process'
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../../../test/support/oidc.ts'
import {
  Browser,
  cliClient,
  demoUsers,
  loginFormAction,
  portalClient,
  type RunningIssuer,
  startIssuer,
  userAccessToken,
} from '../src/index.ts'

// The development issuer: it starts (in-process, and as `scripts/up.sh` runs it), its discovery
// document is what Kiln's login needs, its login form checks passwords, and the access tokens it
// issues for the API are JWTs that verify against its published keys.

const audience = 'urn:kiln:api'
let issuer: RunningIssuer

interface Discovery {
  issuer: string
  authorization_endpoint: string
  token_endpoint: string
  jwks_uri: string
  userinfo_endpoint: string
  end_session_endpoint: string
  response_types_supported: string[]
  code_challenge_methods_supported: string[]
  id_token_signing_alg_values_supported: string[]
  scopes_supported: string[]
  claims_supported: string[]
  authorization_response_iss_parameter_supported: boolean
}

async function discovery(url: string): Promise<Discovery> {
  const res = await fetch(`${url}/.well-known/openid-configuration`)
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toMatch(/^application\/json/)
  return (await res.json()) as Discovery
}

/** What Kiln's login needs of a discovery document (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207). */
function expectUsableDiscovery(doc: Discovery, issuerUrl: string) {
  expect(doc.issuer).toBe(issuerUrl)
  for (const endpoint of [
    doc.authorization_endpoint,
    doc.token_endpoint,
    doc.jwks_uri,
    doc.userinfo_endpoint,
    doc.end_session_endpoint,
  ]) {
    expect(endpoint.startsWith(`${issuerUrl}/`), endpoint).toBe(true)
  }
  expect(doc.response_types_supported).toContain('code')
  expect(doc.code_challenge_methods_supported).toEqual(['S256'])
  expect(doc.id_token_signing_alg_values_supported).toContain('RS256')
  expect(doc.id_token_signing_alg_values_supported).not.toContain('none')
  expect(doc.scopes_supported).toEqual(expect.arrayContaining(['openid', 'profile', 'email', 'groups']))
  expect(doc.claims_supported).toContain('groups')
  expect(doc.authorization_response_iss_parameter_supported).toBe(true)
}

beforeAll(async () => {
  issuer = await startIssuer({
    audience,
    users: demoUsers,
    clients: [cliClient, portalClient({ apiUrl: 'http://127.0.0.1:8080' })],
  })
})

afterAll(async () => {
  await issuer?.close()
})

describe('the development issuer', () => {
  it('serves a discovery document that validates, and public signing keys only', async () => {
    const doc = await discovery(issuer.issuer)
    expectUsableDiscovery(doc, issuer.issuer)
    const jwks = (await (await fetch(doc.jwks_uri)).json()) as { keys: Record<string, unknown>[] }
    expect(jwks.keys.length).toBeGreaterThan(0)
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'RSA', use: 'sig', alg: 'RS256' })
      expect(typeof key['kid']).toBe('string')
      for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(key, secret).not.toHaveProperty(secret)
    }
  })

  it('issues a short-lived JWT access token for the API that verifies against its JWKS', async () => {
    const { accessToken, expiresIn } = await userAccessToken({
      issuer: issuer.issuer,
      audience,
      username: 'demo',
      password: 'demo',
    })
    expect(expiresIn).toBe(600)
    expect(decodeProtectedHeader(accessToken)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' })
    const jwks = createLocalJWKSet((await (await fetch(`${issuer.issuer}/jwks`)).json()) as JSONWebKeySet)
    const { payload } = await jwtVerify(accessToken, jwks, { issuer: issuer.issuer, audience })
    expect(payload).toMatchObject({
      sub: 'demo',
      client_id: 'kiln-cli',
      groups: ['kiln:demo-admins'],
      email: 'demo@kiln.example',
    })
    expect(payload.exp! - payload.iat!).toBe(600)
  })

  it('checks passwords: a wrong one or an unknown user stays on the form with an error', async () => {
    for (const [username, password] of [
      ['demo', 'wrong'],
      ['mallory', 'mallory'],
    ]) {
      await expect(
        userAccessToken({ issuer: issuer.issuer, audience, username: username!, password: password! }),
      ).rejects.toThrow(/refused the login/)
    }
    const browser = new Browser()
    const authorize = new URL(`${issuer.issuer}/auth`)
    authorize.search = new URLSearchParams({
      client_id: 'kiln-cli',
      response_type: 'code',
      redirect_uri: cliClient.redirect_uris![0]!,
      scope: 'openid',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }).toString()
    const page = await browser.navigate(authorize)
    const action = loginFormAction(page)
    expect(action).toBeDefined()
    const refused = await browser.navigate(action!, {
      form: new URLSearchParams({ username: 'demo', password: 'wrong' }),
    })
    expect(refused.response?.status).toBe(401)
    expect(refused.body).toContain('Unknown user or wrong password.')
  })

  it('requires PKCE', async () => {
    const authorize = new URL(`${issuer.issuer}/auth`)
    authorize.search = new URLSearchParams({
      client_id: 'kiln-portal',
      response_type: 'code',
      redirect_uri: 'http://127.0.0.1:8080/v1/auth/callback',
      scope: 'openid',
      state: 'abc',
    }).toString()
    const res = await fetch(authorize, { redirect: 'manual' })
    expect(res.status).toBe(303)
    const back = new URL(res.headers.get('location')!)
    expect(back.origin + back.pathname).toBe('http://127.0.0.1:8080/v1/auth/callback')
    expect(back.searchParams.get('error')).toBe('invalid_request')
    expect(back.searchParams.get('error_description')).toMatch(/PKCE/)
  })

  it('issues tokens for the API audience only', async () => {
    await expect(
      userAccessToken({
        issuer: issuer.issuer,
        audience: 'urn:someone:else',
        username: 'demo',
        password: 'demo',
      }),
    ).rejects.toThrow(/invalid_target/)
  })
})

describe('the issuer as scripts/up.sh runs it', () => {
  let child: ChildProcess | undefined
  let output = ''

  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  })

  it('starts on its port, for the API at KILN_PUBLIC_URL, and stops on SIGTERM', async () => {
    const port = await freePort()
    child = spawn('node_modules/.bin/tsx', ['apps/issuer/src/main.ts'], {
      env: { ...process.env, KILN_ISSUER_PORT: String(port), KILN_PUBLIC_URL: 'http://127.0.0.1:18080' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
    })
    const url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 30_000
    let doc: Discovery | undefined
    while (!doc && Date.now() < deadline) {
      doc = await discovery(url).catch(() => undefined)
      if (!doc) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(doc, output).toBeDefined()
    expectUsableDiscovery(doc!, url)
    expect(output).toContain(`Development OIDC issuer on ${url}`)

    // The portal client is registered with the API's callback.
    const authorize = new URL(doc!.authorization_endpoint)
    authorize.search = new URLSearchParams({
      client_id: 'kiln-portal',
      response_type: 'code',
      redirect_uri: 'http://127.0.0.1:18080/v1/auth/callback',
      scope: 'openid groups',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }).toString()
    const res = await fetch(authorize, { redirect: 'manual' })
    expect(res.status).toBe(303)
    expect(res.headers.get('location')).toMatch(/^\/interaction\//)

    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)))
    child.kill('SIGTERM')
    expect(await exited).toBe(0)
  })
})
