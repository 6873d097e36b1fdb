import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { type Api, call } from './api.ts'
import { CliError, ExitCode } from './errors.ts'
import type { Progress } from './follow.ts'

// `kiln login --oidc`: the authorization code flow with PKCE (S256) for a native app (RFC 8252). Kiln
// says which issuer and public client (GET /v1/auth/cli); the command listens on a loopback port for
// the redirect, the person signs in with their browser, and the access token becomes the bearer token.

export interface OidcTokens {
  accessToken: string
  expiresAt: string
}

const page = (title: string, text: string) =>
  `<!doctype html><meta charset="utf-8"><title>${title}</title><h1>${title}</h1><p>${text}</p>`

/** Opens the URL in the person's browser when there is a desktop; the URL is printed either way. */
function openBrowser(url: string) {
  if (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY && process.platform === 'linux') return
  const opener =
    process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
  try {
    spawn(opener, [url], { stdio: 'ignore', detached: true })
      .on('error', () => {})
      .unref()
  } catch {
    // No opener: the printed URL is enough.
  }
}

interface Discovery {
  authorization_endpoint: string
  token_endpoint: string
  device_authorization_endpoint?: string
}

/** Which issuer and client Kiln names for the CLI, and that issuer's endpoints. */
async function discover(api: Api) {
  const settings = await call(api, api.client.GET('/v1/auth/cli'))
  const discoveryUrl = `${settings.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`
  let discovery: Discovery
  try {
    const response = await fetch(discoveryUrl)
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    discovery = (await response.json()) as Discovery
  } catch (error) {
    throw new CliError(
      ExitCode.failed,
      `Cannot read the issuer's discovery at ${discoveryUrl}: ${(error as Error).message}`,
    )
  }
  return { settings, discovery }
}

export async function oidcLogin(
  api: Api,
  progress: Progress,
  options: { openBrowser: boolean; timeoutMs?: number },
): Promise<OidcTokens> {
  const { settings, discovery } = await discover(api)
  const verifier = randomBytes(32).toString('base64url')
  const state = randomBytes(16).toString('base64url')

  const server = http.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/kiln-cli/callback`
  const authorize = new URL(discovery.authorization_endpoint)
  authorize.search = new URLSearchParams({
    client_id: settings.clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: settings.scopes.join(' '),
    resource: settings.audience,
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString()
  progress.write(`Open this URL in a browser and sign in:\n  ${authorize}\n`)
  if (options.openBrowser) openBrowser(authorize.toString())

  try {
    return await new Promise<OidcTokens>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new CliError(ExitCode.auth, 'No login within 5 minutes; run kiln login --oidc again.')),
        options.timeoutMs ?? 300_000,
      )
      server.on('request', (request, response) => {
        const url = new URL(request.url ?? '/', redirectUri)
        if (url.pathname !== '/kiln-cli/callback') {
          response.writeHead(404).end()
          return
        }
        const finish = (status: number, title: string, text: string, outcome: OidcTokens | CliError) => {
          response.writeHead(status, { 'content-type': 'text/html; charset=utf-8' }).end(page(title, text))
          clearTimeout(timer)
          if (outcome instanceof CliError) reject(outcome)
          else resolve(outcome)
        }
        const error = url.searchParams.get('error')
        if (error) {
          const why = `${error}${url.searchParams.get('error_description') ? `: ${url.searchParams.get('error_description')}` : ''}`
          finish(
            400,
            'Login failed',
            why,
            new CliError(ExitCode.auth, `The issuer refused the login (${why}).`),
          )
          return
        }
        if (url.searchParams.get('state') !== state) {
          // Not our request (or a forged one): ignore it and keep waiting for ours.
          response
            .writeHead(400, { 'content-type': 'text/html; charset=utf-8' })
            .end(page('Login failed', 'Unknown state.'))
          return
        }
        exchange(discovery.token_endpoint, {
          grant_type: 'authorization_code',
          code: url.searchParams.get('code') ?? '',
          redirect_uri: redirectUri,
          client_id: settings.clientId,
          code_verifier: verifier,
          resource: settings.audience,
        }).then(
          (tokens) => finish(200, 'Logged in to Kiln', 'You can close this window.', tokens),
          (failure: CliError) => finish(400, 'Login failed', failure.message, failure),
        )
      })
    })
  } finally {
    server.close()
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * `kiln login --oidc --device`: the device authorization grant (RFC 8628), for a command with no
 * browser beside it (an SSH session). It prints a URL and a code to enter on any device, then polls
 * the token endpoint at the interval the issuer asks for until the person has signed in.
 */
export async function oidcDeviceLogin(
  api: Api,
  progress: Progress,
  options: { timeoutMs?: number } = {},
): Promise<OidcTokens> {
  const { settings, discovery } = await discover(api)
  if (!discovery.device_authorization_endpoint)
    throw new CliError(
      ExitCode.failed,
      'The issuer offers no device flow (no device_authorization_endpoint); use kiln login --oidc without --device.',
    )
  const started = await fetch(discovery.device_authorization_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      client_id: settings.clientId,
      scope: settings.scopes.join(' '),
      resource: settings.audience,
    }).toString(),
  })
  const device = (await started.json().catch(() => ({}))) as {
    device_code?: string
    user_code?: string
    verification_uri?: string
    verification_uri_complete?: string
    expires_in?: number
    interval?: number
    error?: string
    error_description?: string
  }
  if (!started.ok || !device.device_code || !device.user_code || !device.verification_uri)
    throw new CliError(
      ExitCode.auth,
      `The issuer refused to start a device login: ${device.error ?? started.status}${device.error_description ? ` (${device.error_description})` : ''}.`,
    )
  progress.write(
    `On any device, open ${device.verification_uri} and enter the code ${device.user_code}\n` +
      (device.verification_uri_complete ? `  (or open ${device.verification_uri_complete})\n` : ''),
  )
  const deadline = Date.now() + Math.min(options.timeoutMs ?? 300_000, (device.expires_in ?? 300) * 1000)
  let interval = (device.interval ?? 5) * 1000
  for (;;) {
    await sleep(interval)
    if (Date.now() > deadline)
      throw new CliError(ExitCode.auth, 'The device login expired; run kiln login --oidc --device again.')
    const response = await fetch(discovery.token_endpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
        device_code: device.device_code,
        client_id: settings.clientId,
        resource: settings.audience,
      }).toString(),
    })
    const body = (await response.json().catch(() => ({}))) as {
      access_token?: string
      expires_in?: number
      error?: string
      error_description?: string
    }
    if (response.ok && body.access_token)
      return {
        accessToken: body.access_token,
        expiresAt: new Date(Date.now() + (body.expires_in ?? 3600) * 1000).toISOString(),
      }
    if (body.error === 'authorization_pending') continue
    // RFC 8628 §3.5: slow down means five more seconds between polls, from now on.
    if (body.error === 'slow_down') {
      interval += 5000
      continue
    }
    throw new CliError(
      ExitCode.auth,
      `The issuer refused the device login: ${body.error ?? response.status}${body.error_description ? ` (${body.error_description})` : ''}.`,
    )
  }
}

async function exchange(tokenEndpoint: string, form: Record<string, string>): Promise<OidcTokens> {
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form).toString(),
  })
  const body = (await response.json().catch(() => ({}))) as {
    access_token?: string
    expires_in?: number
    error?: string
    error_description?: string
  }
  if (!response.ok || !body.access_token) {
    throw new CliError(
      ExitCode.auth,
      `The issuer's token endpoint refused the code: ${body.error ?? response.status}${body.error_description ? ` (${body.error_description})` : ''}.`,
    )
  }
  return {
    accessToken: body.access_token,
    expiresAt: new Date(Date.now() + (body.expires_in ?? 3600) * 1000).toISOString(),
  }
}
