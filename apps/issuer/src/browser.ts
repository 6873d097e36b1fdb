import { createHash, randomBytes } from 'node:crypto'
import { CookieJar } from 'tough-cookie'

// A headless stand-in for a person's browser: real HTTP, a real cookie jar (tough-cookie), redirects
// followed one by one as a browser does, and the issuer's login form filled in. The tests drive the
// portal login with it, and `npm run token` gets an access token for the shell with it.

export interface Exchange {
  method: string
  url: string
  status: number
  location?: string
  setCookie: string[]
}

export interface Landing {
  /** The URL of the last request made, or the redirect target `stop` matched (not requested). */
  url: URL
  /** Undefined when `stop` matched a redirect target before it was requested. */
  response?: Response
  body?: string
}

export class Browser {
  readonly jar = new CookieJar()
  /** Every request made, in order. */
  readonly history: Exchange[] = []

  /** One request, without following redirects; cookies sent from and stored in the jar. */
  async request(
    url: string | URL,
    init: { method?: string; form?: URLSearchParams; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const target = new URL(url)
    const method = init.method ?? (init.form ? 'POST' : 'GET')
    const cookie = await this.jar.getCookieString(target.toString())
    const response = await fetch(target, {
      method,
      redirect: 'manual',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...init.headers,
      },
      ...(init.form ? { body: init.form.toString() } : {}),
    })
    const setCookie = response.headers.getSetCookie()
    for (const header of setCookie) await this.jar.setCookie(header, target.toString(), { ignoreError: true })
    const location = response.headers.get('location')
    this.history.push({
      method,
      url: target.toString(),
      status: response.status,
      ...(location ? { location: new URL(location, target).toString() } : {}),
      setCookie,
    })
    return response
  }

  /**
   * Requests `url` and follows redirects (as GETs) until a response is not a redirect, or until
   * `stop` accepts a redirect target, which is then returned unrequested.
   */
  async navigate(
    url: string | URL,
    options: { form?: URLSearchParams; stop?: (target: URL) => boolean; maxRedirects?: number } = {},
  ): Promise<Landing> {
    let target = new URL(url)
    let response = await this.request(target, options.form ? { form: options.form } : {})
    for (let i = 0; i < (options.maxRedirects ?? 20); i++) {
      const location = response.headers.get('location')
      if (response.status < 300 || response.status >= 400 || !location) {
        return { url: target, response, body: await response.text() }
      }
      await response.body?.cancel()
      target = new URL(location, target)
      if (options.stop?.(target)) return { url: target }
      response = await this.request(target)
    }
    throw new Error(`More than ${options.maxRedirects ?? 20} redirects from ${url}`)
  }
}

/** The action of the issuer's login form on a page, if the page is one. */
export function loginFormAction(page: Landing): URL | undefined {
  const m = page.body ? /<form[^>]*action="([^"]*\/interaction\/[^"]*\/login)"/.exec(page.body) : null
  return m?.[1] ? new URL(m[1], page.url) : undefined
}

/**
 * Goes to `start` (a client's login URL or an authorization request) and, when the issuer asks,
 * signs in with the username and password; follows redirects until `stop` matches or a page is not
 * a redirect. Throws when the credentials are refused.
 */
export async function signIn(
  browser: Browser,
  start: string | URL,
  credentials: { username: string; password: string },
  stop?: (target: URL) => boolean,
): Promise<Landing> {
  const page = await browser.navigate(start, stop ? { stop } : {})
  const action = loginFormAction(page)
  if (!action) return page
  const after = await browser.navigate(action, {
    form: new URLSearchParams({ username: credentials.username, password: credentials.password }),
    ...(stop ? { stop } : {}),
  })
  if (loginFormAction(after)) throw new Error(`The issuer refused the login of ${credentials.username}.`)
  return after
}

interface Discovery {
  issuer: string
  authorization_endpoint: string
  token_endpoint: string
}

/**
 * An access token (a JWT for `audience`) for a user, from the shell: the authorization code flow
 * with PKCE for the public client `kiln-cli`, its login form filled in headlessly. No password
 * grant (ROPC): the issuer sees exactly what a browser login looks like.
 */
export async function userAccessToken(options: {
  issuer: string
  audience: string
  username: string
  password: string
  clientId?: string
  redirectUri?: string
}): Promise<{ accessToken: string; idToken?: string; expiresIn: number }> {
  const clientId = options.clientId ?? 'kiln-cli'
  const redirectUri = options.redirectUri ?? 'http://127.0.0.1/kiln-cli/callback'
  const discoveryUrl = `${options.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
  const discoveryResponse = await fetch(discoveryUrl)
  if (!discoveryResponse.ok) throw new Error(`GET ${discoveryUrl}: ${discoveryResponse.status}`)
  const discovery = (await discoveryResponse.json()) as Discovery
  const verifier = randomBytes(32).toString('base64url')
  const state = randomBytes(16).toString('base64url')
  const authorize = new URL(discovery.authorization_endpoint)
  authorize.search = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: 'openid profile email groups',
    resource: options.audience,
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString()
  const landing = await signIn(new Browser(), authorize, options, (target) =>
    target.toString().startsWith(redirectUri),
  )
  const params = landing.url.searchParams
  if (!landing.url.toString().startsWith(redirectUri))
    throw new Error(`The login did not come back (${landing.url}).`)
  if (params.get('error'))
    throw new Error(`The issuer refused: ${params.get('error')} ${params.get('error_description') ?? ''}`)
  if (params.get('state') !== state) throw new Error('The issuer answered with another state.')
  const tokenResponse = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code') ?? '',
      redirect_uri: redirectUri,
      client_id: clientId,
      code_verifier: verifier,
      resource: options.audience,
    }).toString(),
  })
  const tokens = (await tokenResponse.json()) as {
    access_token?: string
    id_token?: string
    expires_in?: number
    error?: string
    error_description?: string
  }
  if (!tokenResponse.ok || !tokens.access_token) {
    throw new Error(
      `The token endpoint refused: ${tokens.error ?? tokenResponse.status} ${tokens.error_description ?? ''}`,
    )
  }
  return {
    accessToken: tokens.access_token,
    ...(tokens.id_token ? { idToken: tokens.id_token } : {}),
    expiresIn: tokens.expires_in ?? 0,
  }
}
