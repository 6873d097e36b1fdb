import net from 'node:net'

// A TCP proxy that can refuse on demand: for backends reached over TLS (a Cluster API management
// cluster), where an HTTP-level fault proxy cannot stand in the middle. The client's TLS session runs
// through it untouched, so its own HTTPS client meets a refused connection exactly as in an outage.

export interface TcpProxy {
  readonly port: number
  /** Refuses new connections and resets open ones until called with false. */
  refuse(on: boolean): Promise<void>
  close(): Promise<void>
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<net.Socket>()
  let server: net.Server | undefined
  let port = 0
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      const s = net.createServer((client) => {
        const upstream = net.connect(target.port, target.host)
        for (const socket of [client, upstream]) {
          open.add(socket)
          socket.on('close', () => open.delete(socket))
          socket.on('error', () => {
            client.destroy()
            upstream.destroy()
          })
        }
        client.pipe(upstream)
        upstream.pipe(client)
      })
      s.once('error', reject)
      s.listen(port, '127.0.0.1', () => {
        port = (s.address() as net.AddressInfo).port
        server = s
        resolve()
      })
    })
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of open) socket.resetAndDestroy()
      if (!server) return resolve()
      server.close(() => resolve())
      server = undefined
    })
  await listen()
  return {
    get port() {
      return port
    },
    // Closing the listener is what makes the port refuse: nothing answers there until it listens again.
    refuse: (on) => (on ? stop() : server ? Promise.resolve() : listen()),
    close: stop,
  }
}
