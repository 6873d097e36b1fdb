import { generateKeyPairSync, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider, {
  type ClientMetadata,
  type Configuration,
  errors,
  type JWK,
  type KoaContextWithOIDC,
} from 'oidc-provider'

// A real OpenID Connect issuer (oidc-provider, certified) for the demo and the tests: users with
// passwords and groups, first-party clients that are never asked for consent, and JWT access tokens
// for the Kiln API (RFC 8707 resource indicator = the API's audience). Development only: users and
// keys live in memory and the issuer is plain http on loopback.

/** A person who can log in, with the groups Kiln maps to roles. */
export interface IssuerUser {
  username: string
  password: string
  /** The `sub`; defaults to the username. */
  subject?: string
  name: string
  email: string
  groups: string[]
}

export interface IssuerOptions {
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  clients: ClientMetadata[]
  users: IssuerUser[]
  /** The resource indicator (an absolute URI) whose access tokens are JWTs with this `aud`: Kiln's KILN_OIDC_AUDIENCE. */
  audience: string
  /** Default 600 (10 minutes). */
  accessTokenTtlSeconds?: number
  /** Private signing keys (JWK, with `kid`); default: one fresh RSA key. */
  keys?: JWK[]
}

export interface RunningIssuer {
  /** The issuer identifier, `http://<host>:<port>`. */
  issuer: string
  port: number
  /** The private signing keys, newest (the one that signs) first. */
  keys(): JWK[]
  /** Adds a new signing key in front of the others (they stay published, as in a real rotation); returns it. */
  rotateSigningKey(): JWK
  close(): Promise<void>
}

/** The demo's people: `demo`/`demo` administers project `demo`; `admin`/`admin` is a platform admin. */
export const demoUsers: IssuerUser[] = [
  {
    username: 'demo',
    password: 'demo',
    name: 'Demo User',
    email: 'demo@kiln.example',
    groups: ['kiln:demo-admins'],
  },
  {
    username: 'viewer',
    password: 'viewer',
    name: 'Demo Viewer',
    email: 'viewer@kiln.example',
    groups: ['kiln:demo-viewers'],
  },
  {
    username: 'admin',
    password: 'admin',
    name: 'Platform Admin',
    email: 'admin@kiln.example',
    groups: ['kiln:platform-admins'],
  },
]

/**
 * The public client of `kiln login --oidc` and the `token` command: code + PKCE on a loopback
 * redirect, or the device flow (RFC 8628) where no browser runs beside the command (an SSH session).
 */
export const cliClient: ClientMetadata = {
  client_id: 'kiln-cli',
  client_name: 'Kiln command line',
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/kiln-cli/callback'],
}

/** The portal's client: Kiln's API is its backend (confidential, code + PKCE), as KILN_OIDC_CLIENT_ID/SECRET say. */
export function portalClient(options: {
  apiUrl: string
  clientId?: string
  clientSecret?: string
}): ClientMetadata {
  const api = options.apiUrl.replace(/\/+$/, '')
  return {
    client_id: options.clientId ?? 'kiln-portal',
    client_secret: options.clientSecret ?? 'kiln-portal-dev-secret',
    client_name: 'Kiln portal',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [`${api}/v1/auth/callback`],
    post_logout_redirect_uris: [`${api}/`, `${api}/v1/auth/me`],
  }
}

/** A fresh RSA signing key as a private JWK. */
export function newSigningKey(): JWK {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { ...(privateKey.export({ format: 'jwk' }) as JWK), kid: randomUUID(), use: 'sig', alg: 'RS256' }
}

const escapeHtml = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  )

function loginPage(uid: string, clientName: string, error?: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to Kiln (development issuer)</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}input{padding:.4rem}button{padding:.5rem;margin-top:1rem}.error{color:#b00020}.note{color:#555;font-size:.85rem}</style>
</head><body>
<h1>Sign in</h1>
<p>to <strong>${escapeHtml(clientName)}</strong></p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>
<p class="note">Kiln's development issuer. Demo users: demo / demo, viewer / viewer, admin / admin.</p>
<p><a href="/interaction/${escapeHtml(uid)}/abort">Cancel</a></p>
</body></html>`
}

// The device flow's pages (enter the code, confirm it, done), in the login page's plain style instead
// of oidc-provider's defaults, which load web fonts and warn that they should be replaced.
const devicePage = (title: string, body: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:22rem;margin:4rem auto}label,input,button{display:block;width:100%;margin:.3rem 0}input{padding:.4rem}button{padding:.5rem;margin-top:1rem}code{font-size:1.5rem}.error{color:#b00020}</style>
</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`

const deviceFlowPages = {
  async userCodeInputSource(ctx: KoaContextWithOIDC, form: string, _out?: unknown, err?: Error) {
    const error = err ? `<p class="error" role="alert">${escapeHtml(err.message)}</p>` : ''
    ctx.body = devicePage(
      'Sign in a device',
      `${error}<p>Enter the code the command shows.</p>${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
    )
  },
  async userCodeConfirmSource(
    ctx: KoaContextWithOIDC,
    form: string,
    client: { clientName?: string; clientId: string },
    _deviceInfo: unknown,
    userCode: string,
  ) {
    ctx.body = devicePage(
      'Confirm the device',
      `<p><strong>${escapeHtml(client.clientName ?? client.clientId)}</strong> shows this code:</p><p><code>${escapeHtml(userCode)}</code></p><p>Continue only if it is the code your command shows.</p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button><button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Cancel</button>`,
    )
  },
  async successSource(ctx: KoaContextWithOIDC) {
    ctx.body = devicePage('Signed in', '<p>The command is signed in to Kiln. You can close this window.</p>')
  },
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > 16_384) throw new Error('form too large')
    chunks.push(chunk as Buffer)
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'))
}

const sameSecret = (a: string, b: string) => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

function configuration(options: IssuerOptions, keys: JWK[], cookieKeys: string[]): Configuration {
  const users = new Map(options.users.map((u) => [u.subject ?? u.username, u]))
  const accessTokenTtl = options.accessTokenTtlSeconds ?? 600
  return {
    clients: options.clients,
    jwks: { keys },
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // Scope-requested claims (groups above all) go into the ID token too, which is what the portal reads.
    conformIdTokenClaims: false,
    async findAccount(_ctx, sub) {
      const user = users.get(sub)
      if (!user) return undefined
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            name: user.name,
            preferred_username: user.username,
            email: user.email,
            email_verified: true,
            groups: user.groups,
          }
        },
      }
    },
    async extraTokenClaims(_ctx, token) {
      // Access tokens for the API carry who and which groups, so a bearer JWT alone identifies the caller.
      const user = 'accountId' in token && token.accountId ? users.get(token.accountId) : undefined
      if (!user) return undefined
      return { groups: user.groups, email: user.email, name: user.name, preferred_username: user.username }
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true, ...deviceFlowPages },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? undefined,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx: KoaContextWithOIDC, resource: string) => {
          if (resource !== options.audience) throw new errors.InvalidTarget()
          return {
            scope: 'kiln',
            audience: options.audience,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }
        },
      },
    },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 8 * 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'html'
      ctx.body = `<!doctype html><title>Error</title><h1>${escapeHtml(String(out.error))}</h1><p>${escapeHtml(String(out.error_description ?? ''))}</p>`
    },
  }
}

/**
 * Login and consent for oidc-provider's interactions. Login checks the password; consent is granted
 * at once (every client here is Kiln's own), so a browser goes login form → back to the client.
 */
async function interaction(
  provider: Provider,
  options: IssuerOptions,
  req: IncomingMessage,
  res: ServerResponse,
  action: string | undefined,
): Promise<void> {
  const details = await provider.interactionDetails(req, res)
  const client = await provider.Client.find(String(details.params['client_id']))
  const clientName = client?.clientName ?? String(details.params['client_id'])
  const html = (status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(body)
  }

  if (action === 'abort') {
    await provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'The user cancelled the login.' },
      { mergeWithLastSubmission: false },
    )
    return
  }
  if (details.prompt.name === 'login') {
    if (action !== 'login' || req.method !== 'POST') return html(200, loginPage(details.uid, clientName))
    const form = await readForm(req)
    const username = form.get('username') ?? ''
    const user = options.users.find((u) => u.username === username)
    if (!user || !sameSecret(form.get('password') ?? '', user.password)) {
      return html(401, loginPage(details.uid, clientName, 'Unknown user or wrong password.'))
    }
    await provider.interactionFinished(
      req,
      res,
      { login: { accountId: user.subject ?? user.username } },
      { mergeWithLastSubmission: false },
    )
    return
  }
  if (details.prompt.name === 'consent') {
    const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details as {
      missingOIDCScope?: string[]
      missingOIDCClaims?: string[]
      missingResourceScopes?: Record<string, string[]>
    }
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({
          accountId: details.session!.accountId,
          clientId: String(details.params['client_id']),
        })
    if (!grant) throw new Error('grant not found')
    if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '))
    if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims)
    for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
      grant.addResourceScope(resource, scopes.join(' '))
    }
    const grantId = await grant.save()
    await provider.interactionFinished(
      req,
      res,
      { consent: details.grantId ? {} : { grantId } },
      { mergeWithLastSubmission: true },
    )
    return
  }
  html(400, `<!doctype html><p>Unexpected prompt ${escapeHtml(details.prompt.name)}.</p>`)
}

/** Starts the issuer on loopback; resolves once it answers discovery. */
export async function startIssuer(options: IssuerOptions): Promise<RunningIssuer> {
  const host = options.host ?? '127.0.0.1'
  const keys = options.keys ? [...options.keys] : [newSigningKey()]
  const cookieKeys = [randomBytes(32).toString('base64url')]
  let provider: Provider | undefined
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const match = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/.exec(path)
    if (match && provider) {
      interaction(provider, options, req, res, match[2]).catch((error: unknown) => {
        const message = error instanceof Error ? error.message : String(error)
        if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' })
        res.end(`Login failed: ${message}`)
      })
      return
    }
    if (!handle) {
      res.writeHead(503).end()
      return
    }
    handle(req, res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const { port } = server.address() as AddressInfo
  const issuer = `http://${host}:${port}`

  const build = () => {
    provider = new Provider(issuer, configuration(options, keys, cookieKeys))
    handle = provider.callback()
  }
  build()

  return {
    issuer,
    port,
    keys: () => [...keys],
    rotateSigningKey() {
      const key = newSigningKey()
      keys.unshift(key)
      // oidc-provider reads its keys when built; grants and sessions are in its shared memory store.
      build()
      return key
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }
}
