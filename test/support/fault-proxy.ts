import http from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

// A proxy in front of a real backend (the test Ironic) that fails on demand: error answers, refused
// connections, slow or no answers. Tests point a driver at `url` and switch faults at runtime, so the
// driver's own HTTP client meets the failure exactly as it would meet a real outage.

/** Which requests a fault applies to: a predicate, or a RegExp tested against `METHOD /path`. */
export type RequestMatch = ((method: string, path: string) => boolean) | RegExp

export interface FailOptions {
  /** The status answered; 503 unless given. */
  status?: number
  /** Only requests this matches are failed (and counted against n); every request when omitted. */
  match?: RequestMatch
  /** Sent as Retry-After. */
  retryAfterSeconds?: number
}

export interface FaultProxy {
  /** Base URL clients use instead of the target's, e.g. http://127.0.0.1:40123 */
  readonly url: string
  readonly port: number
  /** Requests the proxy received, by `METHOD /path` (no query), whether forwarded or faulted. */
  readonly seen: Map<string, number>
  /** Requests the proxy answered itself with an error, by `METHOD /path`. */
  readonly faulted: Map<string, number>
  /** Sum of `seen` (or of the entries `match` selects). */
  seenCount(match?: RequestMatch): number
  /** Sum of `faulted` (or of the entries `match` selects). */
  faultedCount(match?: RequestMatch): number
  /** Answers the next `n` matching requests with an error in Ironic's JSON shape. */
  failNext(n: number, options?: FailOptions): void
  /** Refuses connections (ECONNREFUSED, open connections reset) until called with false. */
  refuse(on: boolean): Promise<void>
  /** Holds matching requests `ms` before forwarding them; 0 stops delaying. */
  delay(ms: number, match?: RequestMatch): void
  /** Accepts requests and never answers them (nor the ones held so far) until called with false. */
  blackhole(on: boolean): void
  /** Clears every fault and counter. */
  reset(): void
  close(): Promise<void>
}

const matches = (match: RequestMatch | undefined, method: string, path: string) =>
  match === undefined || (match instanceof RegExp ? match.test(`${method} ${path}`) : match(method, path))

/** Ironic's error body: JSON whose error_message is itself JSON, as IronicClient parses it. */
function ironicError(status: number, method: string, path: string): string {
  return JSON.stringify({
    error_message: JSON.stringify({
      faultcode: status >= 500 ? 'Server' : 'Client',
      faultstring: `Injected fault: ${status} for ${method} ${path}`,
      debuginfo: null,
    }),
  })
}

export async function startFaultProxy(options: { target: string; port?: number }): Promise<FaultProxy> {
  const target = new URL(options.target)
  const upstream = new http.Agent({ keepAlive: true })
  const sockets = new Set<Socket>()
  const seen = new Map<string, number>()
  const faulted = new Map<string, number>()
  let failures: Array<{ left: number; status: number; match?: RequestMatch; retryAfterSeconds?: number }> = []
  let delays: Array<{ ms: number; match?: RequestMatch }> = []
  let holding = false
  const held = new Set<http.ServerResponse>()
  const bump = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)
  const sum = (map: Map<string, number>, match?: RequestMatch) => {
    let total = 0
    for (const [key, count] of map) {
      const space = key.indexOf(' ')
      if (matches(match, key.slice(0, space), key.slice(space + 1))) total += count
    }
    return total
  }

  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET'
    const path = new URL(req.url ?? '/', 'http://proxy').pathname
    const key = `${method} ${path}`
    bump(seen, key)
    if (holding) {
      held.add(res)
      res.on('close', () => held.delete(res))
      req.resume()
      return
    }
    const failure = failures.find((f) => f.left > 0 && matches(f.match, method, path))
    if (failure) {
      failure.left--
      bump(faulted, key)
      req.resume()
      const body = ironicError(failure.status, method, path)
      res.writeHead(failure.status, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        ...(failure.retryAfterSeconds !== undefined
          ? { 'Retry-After': String(failure.retryAfterSeconds) }
          : {}),
      })
      res.end(body)
      return
    }
    const wait = delays.find((d) => matches(d.match, method, path))?.ms ?? 0
    const forward = () => {
      const headers = { ...req.headers, host: target.host }
      const out = http.request(
        new URL(req.url ?? '/', target),
        { method, headers, agent: upstream },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
        },
      )
      out.on('error', (error) => {
        if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' })
        res.end(`fault proxy: the target did not answer (${error.message})`)
      })
      req.pipe(out)
    }
    if (wait > 0) {
      req.pause()
      setTimeout(forward, wait)
    } else forward()
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })

  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      for (const socket of sockets) socket.destroy()
    })

  await listen(options.port ?? 0)
  const port = (server.address() as AddressInfo).port
  let refusing = false

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    faulted,
    seenCount: (match) => sum(seen, match),
    faultedCount: (match) => sum(faulted, match),
    failNext(n, failOptions = {}) {
      failures.push({
        left: n,
        status: failOptions.status ?? 503,
        ...(failOptions.match ? { match: failOptions.match } : {}),
        ...(failOptions.retryAfterSeconds !== undefined
          ? { retryAfterSeconds: failOptions.retryAfterSeconds }
          : {}),
      })
    },
    async refuse(on) {
      if (on === refusing) return
      refusing = on
      // An outage looks like nothing listening: new connections are refused, open ones die. The
      // same port comes back, so clients holding the URL reconnect as they would to a restarted Ironic.
      if (on) await stop()
      else await listen(port)
    },
    delay(ms, match) {
      delays = ms > 0 ? [{ ms, ...(match ? { match } : {}) }, ...delays] : []
    },
    blackhole(on) {
      holding = on
      if (!on) for (const res of held) res.destroy()
    },
    reset() {
      failures = []
      delays = []
      holding = false
      for (const res of held) res.destroy()
      seen.clear()
      faulted.clear()
    },
    async close() {
      holding = false
      upstream.destroy()
      if (!refusing) await stop()
    },
  }
}
