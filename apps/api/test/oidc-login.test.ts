import type { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Database } from '../../../packages/db/src/index.ts'
import { startTestApi } from '../../../test/support/api.ts'
import { type OidcApi, randomKey, startOidcApi } from '../../../test/support/oidc.ts'
import { Browser, type RunningIssuer, signIn } from '../../issuer/src/index.ts'
import type { KilnApp } from '../src/app.ts'
import { CookieSealer, newSession, type OidcSettings, type OidcVerifier, oidcRuntime } from '../src/oidc.ts'

// The portal login end to end, over real HTTP: Kiln's API listening on a loopback port, the issuer
// (oidc-provider) on another, and a headless browser with a cookie jar between them that follows
// every redirect and fills in the issuer's login form.

let oidcApi: OidcApi
let issuer: RunningIssuer
let settings: OidcSettings
let apiUrl: string
let db: Database
let redis: Redis
let app: KilnApp

const portal = () => `${apiUrl}/portal/`
const atPortal = (target: URL) => target.toString().startsWith(portal())
const demo = { username: 'demo', password: 'demo' }

beforeAll(async () => {
  oidcApi = await startOidcApi({
    tag: 'login',
    settings: (defaults, url) => ({
      ...defaults,
      postLoginRedirect: `${url}/portal/`,
      scopes: ['openid', 'profile', 'email', 'groups'],
    }),
  })
  ;({ issuer, settings, apiUrl, db, redis, app } = oidcApi)
})

afterAll(async () => {
  await oidcApi?.close()
})

/** A browser that has logged in as `who`, and the exchanges that got it there. */
async function loggedIn(who = demo, returnTo?: string) {
  const browser = new Browser()
  const start = `${apiUrl}/v1/auth/login${returnTo ? `?returnTo=${encodeURIComponent(returnTo)}` : ''}`
  const landing = await signIn(browser, start, who, atPortal)
  return { browser, landing }
}

const sessionCookie = async (browser: Browser) =>
  (await browser.jar.getCookies(apiUrl)).find((c) => c.key === 'kiln-session')

async function me(browser: Browser) {
  const res = await browser.request(`${apiUrl}/v1/auth/me`)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('portal login: authorization code + PKCE through the issuer', () => {
  it('logs in, sets an HttpOnly SameSite=Lax session cookie, and /v1/auth/me answers who', async () => {
    const { browser, landing } = await loggedIn(demo, '/portal/projects/demo')
    expect(landing.url.toString()).toBe(`${apiUrl}/portal/projects/demo`)

    // 1. Kiln sends the browser to the issuer with a PKCE S256 challenge, state and nonce.
    const [login] = browser.history
    expect(login?.url).toBe(`${apiUrl}/v1/auth/login?returnTo=%2Fportal%2Fprojects%2Fdemo`)
    expect(login?.status).toBe(302)
    const authorize = new URL(login!.location!)
    expect(authorize.origin + authorize.pathname).toBe(`${issuer.issuer}/auth`)
    const params = Object.fromEntries(authorize.searchParams)
    expect(params).toMatchObject({
      client_id: 'kiln-portal',
      response_type: 'code',
      redirect_uri: `${apiUrl}/v1/auth/callback`,
      code_challenge_method: 'S256',
      scope: 'openid profile email groups',
    })
    expect(params['code_challenge']).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(params['state']?.length).toBeGreaterThan(20)
    expect(params['nonce']?.length).toBeGreaterThan(20)
    expect(login?.setCookie).toHaveLength(1)
    expect(login?.setCookie[0]).toMatch(
      /^kiln-login=v1\.[A-Za-z0-9_-]+; Path=\/v1\/auth\/callback; Max-Age=600; HttpOnly; SameSite=Lax$/,
    )

    // 2. The person signs in on the issuer's form, which sends the browser back with a code.
    const form = browser.history.find((e) => e.method === 'POST')
    expect(form?.url).toMatch(new RegExp(`^${issuer.issuer}/interaction/[^/]+/login$`))
    expect(form?.status).toBe(303)
    const callback = browser.history.find((e) => e.url.startsWith(`${apiUrl}/v1/auth/callback?`))
    expect(callback, JSON.stringify(browser.history, null, 2)).toBeDefined()
    const back = new URL(callback!.url)
    expect(back.searchParams.get('code')).toBeTruthy()
    expect(back.searchParams.get('state')).toBe(params['state'])
    expect(back.searchParams.get('iss')).toBe(issuer.issuer)

    // 3. The callback sets the session cookie and clears the single-use login cookie.
    expect(callback?.status).toBe(302)
    expect(callback?.location).toBe(`${apiUrl}/portal/projects/demo`)
    const session = callback!.setCookie.find((c) => c.startsWith('kiln-session='))
    expect(session).toMatch(
      /^kiln-session=v1\.[A-Za-z0-9_-]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax$/,
    )
    expect(callback!.setCookie).toContain(
      'kiln-login=; Path=/v1/auth/callback; Max-Age=0; HttpOnly; SameSite=Lax',
    )
    // Sealed: nothing of the identity is readable in it.
    const sealed = Buffer.from(
      session!.split(';')[0]!.slice('kiln-session=v1.'.length),
      'base64url',
    ).toString('latin1')
    expect(sealed).not.toContain('demo')
    expect(sealed).not.toContain('kiln:demo-admins')

    // 4. The cookie is who the browser is now.
    const who = await me(browser)
    expect(who.status).toBe(200)
    expect(who.body).toMatchObject({
      subject: 'demo',
      issuer: issuer.issuer,
      groups: ['kiln:demo-admins'],
      email: 'demo@kiln.example',
      name: 'Demo User',
      authenticatedBy: 'session',
    })
    expect(Date.parse(who.body['expiresAt'] as string) - Date.now()).toBeGreaterThan(7 * 3600 * 1000)
  })

  it('tells the command line there is no CLI login when no CLI client is configured', async () => {
    const res = await fetch(`${apiUrl}/v1/auth/cli`)
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toContain('application/problem+json')
    expect(((await res.json()) as { type: string }).type).toMatch(/oidc-not-configured$/)
  })

  it('carries the groups of whoever logs in', async () => {
    const { browser } = await loggedIn({ username: 'admin', password: 'admin' })
    expect((await me(browser)).body).toMatchObject({ subject: 'admin', groups: ['kiln:platform-admins'] })
  })

  it('a wrong password stays on the issuer and sets no session', async () => {
    const browser = new Browser()
    await expect(
      signIn(browser, `${apiUrl}/v1/auth/login`, { username: 'demo', password: 'nope' }, atPortal),
    ).rejects.toThrow(/refused the login/)
    expect(await sessionCookie(browser)).toBeUndefined()
    expect((await me(browser)).status).toBe(401)
  })

  it('refuses a returnTo on another origin (no open redirect)', async () => {
    for (const returnTo of ['https://evil.example/', '//evil.example/x', '/\\evil.example']) {
      const res = await fetch(`${apiUrl}/v1/auth/login?returnTo=${encodeURIComponent(returnTo)}`, {
        redirect: 'manual',
      })
      expect(res.status, returnTo).toBe(400)
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    }
  })

  it('a callback without a login in progress is 400, one with a forged state 401', async () => {
    const stray = await fetch(`${apiUrl}/v1/auth/callback?code=abc&state=xyz`, { redirect: 'manual' })
    expect(stray.status).toBe(400)
    expect(((await stray.json()) as { type: string }).type).toBe('https://kiln.dev/problems/login-expired')

    const browser = new Browser()
    await browser.request(`${apiUrl}/v1/auth/login`)
    const forged = await browser.request(
      `${apiUrl}/v1/auth/callback?code=abc&state=forged&iss=${encodeURIComponent(issuer.issuer)}`,
    )
    expect(forged.status).toBe(401)
    expect(((await forged.json()) as { type: string }).type).toBe('https://kiln.dev/problems/login-failed')
    // The login cookie was single-use.
    expect((await browser.jar.getCookies(`${apiUrl}/v1/auth/callback`)).map((c) => c.key)).not.toContain(
      'kiln-login',
    )
  })

  it('the issuer refusing (the person cancels) is 401 login-failed', async () => {
    const browser = new Browser()
    const page = await browser.navigate(`${apiUrl}/v1/auth/login`)
    const cancel = /href="([^"]*\/abort)"/.exec(page.body ?? '')?.[1]
    expect(cancel).toBeDefined()
    const landing = await browser.navigate(new URL(cancel!, page.url))
    expect(landing.url.pathname).toBe('/v1/auth/callback')
    expect(landing.response?.status).toBe(401)
    expect(landing.body).toContain('access_denied')
  })
})

describe('the session cookie', () => {
  const meWith = (cookie: string) =>
    app.inject({ method: 'GET', url: '/v1/auth/me', cookies: { 'kiln-session': cookie } })
  const identity = { subject: 'demo', issuer: '', groups: ['kiln:demo-admins'] }

  it('altered, or sealed under another key: 401 session-invalid', async () => {
    const { browser } = await loggedIn()
    const value = (await sessionCookie(browser))!.value
    const flipped = `${value.slice(0, 20)}${value[20] === 'A' ? 'B' : 'A'}${value.slice(21)}`
    const res = await meWith(flipped)
    expect(res.statusCode).toBe(401)
    expect(res.json()).toMatchObject({ reason: 'session-invalid' })

    const other = new CookieSealer(Buffer.from(randomKey(), 'base64'))
    const foreign = other.seal('session', {
      v: 1,
      sid: 'x',
      identity: { ...identity, issuer: issuer.issuer },
      iat: 0,
      exp: 4e9,
    })
    expect((await meWith(foreign)).json()).toMatchObject({ reason: 'session-invalid' })
  })

  it('the login cookie is not a session (purposes are bound into the seal)', async () => {
    const runtime = oidcRuntime({ verifier: {} as OidcVerifier, settings, redis })
    const login = runtime.sealer.seal('login', {
      v: 1,
      sid: 'x',
      identity: { ...identity, issuer: issuer.issuer },
      iat: 0,
      exp: 4e9,
    })
    expect((await meWith(login)).json()).toMatchObject({ reason: 'session-invalid' })
  })

  it('expired: 401 session-expired', async () => {
    const runtime = oidcRuntime({ verifier: {} as OidcVerifier, settings, redis })
    const now = Math.floor(Date.now() / 1000)
    const expired = runtime.sealer.seal('session', {
      v: 1,
      sid: 'old',
      identity: { ...identity, issuer: issuer.issuer },
      iat: now - 9 * 3600,
      exp: now - 3600,
    })
    const res = await meWith(expired)
    expect(res.statusCode).toBe(401)
    expect(res.json()).toMatchObject({ reason: 'session-expired' })
  })

  it('is Secure and __Host- prefixed when Kiln is served over https', () => {
    const runtime = oidcRuntime({
      verifier: {} as OidcVerifier,
      settings: {
        ...settings,
        redirectUri: 'https://kiln.example/v1/auth/callback',
        postLoginRedirect: 'https://kiln.example/',
      },
      redis,
    })
    const { cookie } = newSession(runtime, { ...identity, issuer: issuer.issuer })
    expect(cookie).toMatch(
      /^__Host-kiln-session=v1\.[A-Za-z0-9_-]+; Path=\/; Max-Age=28800; HttpOnly; SameSite=Lax; Secure$/,
    )
  })
})

describe('CSRF: cookie-authenticated unsafe requests', () => {
  const logout = (browser: Browser, headers: Record<string, string>) =>
    browser.request(`${apiUrl}/v1/auth/logout`, { method: 'POST', headers })

  it('refuses a cookie-only POST without X-Requested-With, or from another origin', async () => {
    const { browser } = await loggedIn()
    const cases: [string, Record<string, string>][] = [
      ['no header, no Origin', {}],
      ['Origin only', { origin: apiUrl }],
      ['header, no Origin', { 'x-requested-with': 'fetch' }],
      ['header, another Origin', { 'x-requested-with': 'fetch', origin: 'https://evil.example' }],
      ['header, Origin null', { 'x-requested-with': 'fetch', origin: 'null' }],
    ]
    for (const [name, headers] of cases) {
      const res = await logout(browser, headers)
      expect(res.status, name).toBe(403)
      expect(res.headers.get('content-type'), name).toMatch(/^application\/problem\+json/)
      expect(await res.json(), name).toMatchObject({
        type: 'https://kiln.dev/problems/csrf-rejected',
        reason: 'csrf',
      })
    }
    // None of them logged the browser out.
    expect((await me(browser)).status).toBe(200)
  })

  it('refuses it on any API route, before anything is written', async () => {
    const { browser } = await loggedIn()
    const before = await db.cluster.count()
    const res = await browser.request(`${apiUrl}/v1/projects/demo/clusters`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    })
    expect(res.status).toBe(403)
    expect(await res.json()).toMatchObject({ type: 'https://kiln.dev/problems/csrf-rejected' })
    expect(await db.cluster.count()).toBe(before)
  })

  it("logout with the header and Kiln's Origin clears the cookie, and the old cookie stops working", async () => {
    const { browser } = await loggedIn()
    const old = (await sessionCookie(browser))!.value
    const res = await logout(browser, { 'x-requested-with': 'fetch', origin: apiUrl })
    expect(res.status).toBe(200)
    const body = (await res.json()) as { endSessionUrl: string }
    const end = new URL(body.endSessionUrl)
    expect(end.origin + end.pathname).toBe(`${issuer.issuer}/session/end`)
    expect(end.searchParams.get('client_id')).toBe('kiln-portal')
    expect(res.headers.getSetCookie()).toContain('kiln-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax')
    expect(await sessionCookie(browser)).toBeUndefined()
    expect((await me(browser)).status).toBe(401)
    // A copy of the cookie kept from before is refused too (deny-listed until it would expire).
    const replay = await app.inject({ method: 'GET', url: '/v1/auth/me', cookies: { 'kiln-session': old } })
    expect(replay.statusCode).toBe(401)
    expect(replay.json()).toMatchObject({ reason: 'session-revoked' })
  })
})

describe('without OIDC configured', () => {
  it('the login routes answer 404 oidc-not-configured', async () => {
    const api = await startTestApi()
    try {
      for (const [method, url] of [
        ['GET', '/v1/auth/login'],
        ['GET', '/v1/auth/me'],
        ['POST', '/v1/auth/logout'],
      ] as const) {
        const res = await api.app.inject({ method, url })
        expect(res.statusCode, url).toBe(404)
        expect(res.json()).toMatchObject({ type: 'https://kiln.dev/problems/oidc-not-configured' })
      }
    } finally {
      await api.close()
    }
  })
})
