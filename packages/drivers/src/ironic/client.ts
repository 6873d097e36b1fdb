import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { readSecret as readReference } from '../backend-config.ts'
import { DriverError } from '../contract.ts'
import type { IronicAuth, IronicTls } from './config.ts'

const readSecret = (reference: Parameters<typeof readReference>[0], what: string) =>
  readReference(reference, `Ironic backend's ${what}`)

/**
 * The microversion every request pins. 1.56 is the oldest with everything the driver uses: the
 * allocation API (1.52), traits (1.37), conductor groups (1.46) and JSON config drives (1.56).
 * Without the header Ironic answers as 1.1, where node names and `available` do not exist.
 */
export const ironicMicroversion = '1.56'

export interface IronicConnection {
  /** Ironic's API root, e.g. https://ironic.dc.example.org:6385 */
  url: string
  auth?: IronicAuth
  tls?: IronicTls
  /** Per-request timeout; a request that takes longer counts as Ironic being unavailable. */
  requestTimeoutMs?: number
}

/** An answer Ironic gave with an error status; `fault` is its faultstring. */
export class IronicApiError extends Error {
  constructor(
    readonly status: number,
    readonly fault: string,
    readonly method: string,
    readonly path: string,
  ) {
    super(`Ironic answered ${status} to ${method} ${path}: ${fault}`)
    this.name = 'IronicApiError'
  }
}

/** Ironic wraps its error JSON in a string: `{"error_message": "{\"faultstring\": …}"}`. */
function faultOf(body: string): string {
  try {
    const outer = JSON.parse(body) as { error_message?: unknown }
    const inner = outer.error_message
    if (typeof inner === 'string') {
      try {
        const parsed = JSON.parse(inner) as { faultstring?: unknown }
        if (typeof parsed.faultstring === 'string') return parsed.faultstring
      } catch {
        return inner
      }
    }
    if (inner && typeof inner === 'object' && 'faultstring' in inner) {
      return String((inner as { faultstring: unknown }).faultstring)
    }
  } catch {
    // Not JSON: a proxy's page.
  }
  return body.slice(0, 300)
}

interface RawResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

/** A small client for Ironic's REST API: pinned microversion, auth, TLS, errors as data or DriverErrors. */
export class IronicClient {
  private readonly base: URL
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  private readonly httpsAgent: https.Agent
  private readonly timeoutMs: number
  private keystoneToken: { value: string; expiresAt: number } | undefined
  private closed = false

  constructor(private readonly connection: IronicConnection) {
    this.base = new URL(connection.url.endsWith('/') ? connection.url : `${connection.url}/`)
    this.timeoutMs = connection.requestTimeoutMs ?? 30_000
    // One agent per scheme: Keystone may be https where Ironic is not, and the TLS options serve both.
    const tls = connection.tls ?? {}
    this.httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets: 16,
      ...(tls.caPem ? { ca: tls.caPem } : tls.caFile ? { ca: readFileSync(tls.caFile) } : {}),
      ...(tls.certFile ? { cert: readFileSync(tls.certFile) } : {}),
      ...(tls.keyFile ? { key: readFileSync(tls.keyFile) } : {}),
      rejectUnauthorized: !tls.insecureSkipVerify,
    })
  }

  get url(): string {
    return this.base.toString()
  }

  /** The body of a 2xx answer (undefined for 204); an IronicApiError for any other status. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let response = await this.send(method, path, body)
    if (response.status === 401 && this.connection.auth?.kind === 'keystone') {
      // The token expired early or was revoked: log in again, once.
      this.keystoneToken = undefined
      response = await this.send(method, path, body)
    }
    if (response.status >= 200 && response.status < 300) {
      return (response.body ? JSON.parse(response.body) : undefined) as T
    }
    throw new IronicApiError(response.status, faultOf(response.body), method, path)
  }

  /** Like `request`, but a 404 is `undefined` rather than an error. */
  async find<T>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path)
    } catch (error) {
      if (error instanceof IronicApiError && error.status === 404) return undefined
      throw error
    }
  }

  private async send(method: string, path: string, body?: unknown): Promise<RawResponse> {
    if (this.closed) throw new DriverError('ERR_UNAVAILABLE', 'The Ironic client is closed.')
    const headers: Record<string, string> = {
      'X-OpenStack-Ironic-API-Version': ironicMicroversion,
      Accept: 'application/json',
    }
    const token = await this.token()
    if (token) headers['X-Auth-Token'] = token
    return this.raw(new URL(path.replace(/^\//, ''), this.base), method, headers, body)
  }

  private raw(
    url: URL,
    method: string,
    headers: Record<string, string>,
    body?: unknown,
  ): Promise<RawResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    if (payload !== undefined) {
      headers['Content-Type'] = 'application/json'
      headers['Content-Length'] = String(Buffer.byteLength(payload))
    }
    const secure = url.protocol === 'https:'
    const transport = secure ? https : http
    return new Promise((resolve, reject) => {
      const agent = secure ? this.httpsAgent : this.httpAgent
      const req = transport.request(url, { method, headers, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        )
        res.on('error', (error) => reject(unavailable(url, error)))
      })
      req.setTimeout(this.timeoutMs, () => {
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`))
      })
      req.on('error', (error) => reject(unavailable(url, error)))
      req.end(payload)
    })
  }

  private async token(): Promise<string | undefined> {
    const auth = this.connection.auth ?? { kind: 'none' }
    if (auth.kind === 'none') return undefined
    if (auth.kind === 'token') return readSecret(auth.token, 'auth token')
    // Renewed a minute before Keystone says it expires.
    if (this.keystoneToken && this.keystoneToken.expiresAt - 60_000 > Date.now()) {
      return this.keystoneToken.value
    }
    const authUrl = new URL(`${auth.authUrl.replace(/\/$/, '')}/auth/tokens`)
    const response = await this.raw(
      authUrl,
      'POST',
      { Accept: 'application/json' },
      {
        auth: {
          identity: {
            methods: ['password'],
            password: {
              user: {
                name: auth.username,
                password: readSecret(auth.password, 'Keystone password'),
                domain: { name: auth.userDomainName ?? 'Default' },
              },
            },
          },
          scope: {
            project: { name: auth.projectName, domain: { name: auth.projectDomainName ?? 'Default' } },
          },
        },
      },
    )
    const value = response.headers['x-subject-token']
    if (response.status !== 201 || typeof value !== 'string') {
      const error = new DriverError(
        response.status === 401 || response.status === 403 ? 'ERR_INVALID_REQUEST' : 'ERR_UNAVAILABLE',
        `Keystone at ${auth.authUrl} refused Kiln's login as ${auth.username} (HTTP ${response.status}): ${faultOf(response.body)}`,
      )
      throw error
    }
    let expiresAt = Date.now() + 3600_000
    try {
      const parsed = JSON.parse(response.body) as { token?: { expires_at?: string } }
      if (parsed.token?.expires_at) expiresAt = Date.parse(parsed.token.expires_at)
    } catch {
      // Keep the default hour.
    }
    this.keystoneToken = { value, expiresAt }
    return value
  }

  close(): void {
    this.closed = true
    this.httpAgent.destroy()
    this.httpsAgent.destroy()
  }
}

function unavailable(url: URL, error: Error): DriverError {
  return new DriverError(
    'ERR_UNAVAILABLE',
    `Ironic at ${url.origin} is unreachable (${(error as { code?: string }).code ?? error.message}).`,
  )
}
