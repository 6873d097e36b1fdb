import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { SecureContext, TLSSocket } from 'node:tls'
import { type Database, isUuid, poolOf } from '@kiln/db'
import { generateCertificateAuthority, issueCertificate, type MasterKeyring, Purpose } from '@kiln/pki'
import { type ClusterView, findCluster, status } from './kube.ts'
import { send, serveKubernetesApi } from './rest.ts'
import { ObjectStore } from './store.ts'
import { ClusterTrustCache } from './trust.ts'

/** Each cluster's API answers at `<clusterId>.<domain>`; the TLS SNI name picks the cluster. */
export const defaultDomain = 'clusters.sim.kiln.internal'

export interface ApiServerOptions {
  db: Database
  masterKey: MasterKeyring
  host?: string
  /** 0 picks a free port. */
  port?: number
  domain?: string
  /** How long a cluster's TLS context (its serving certificate and trusted CAs) is reused while its CAs stay the same. */
  contextTtlMs?: number
  /**
   * How often a cluster's CA generations are re-read (default 1 s): the most a started or completed
   * CA rotation takes to reach its API server.
   */
  trustTtlMs?: number
  /** How often objects of deleted clusters are removed. */
  purgeIntervalMs?: number
  log?: (event: Record<string, unknown>) => void
}

export interface ApiServer {
  host: string
  port: number
  domain: string
  /** The SNI name (and serving certificate DNS name) of a cluster. */
  serverNameOf(clusterId: string): string
  close(): Promise<void>
}

export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { db, masterKey } = options
  const domain = (options.domain ?? defaultDomain).toLowerCase()
  const host = options.host ?? '127.0.0.1'
  const contextTtlMs = options.contextTtlMs ?? 3600_000
  const log = options.log ?? (() => {})
  const suffix = `.${domain}`

  const clusterIdOf = (serverName: string | undefined | null | false): string | undefined => {
    const name = (serverName || '').toLowerCase()
    if (!name.endsWith(suffix)) return undefined
    const id = name.slice(0, -suffix.length)
    return isUuid(id) ? id : undefined
  }

  const pool = poolOf(db)
  if (!pool) throw new Error('the simulated API server needs a database created by createDatabase')
  const store = new ObjectStore(pool)
  await store.ensureSchema()
  // Objects of clusters Kiln has deleted are forgotten; the cluster's API is gone with it.
  const purge = setInterval(() => {
    store.purgeDeletedClusters().catch((error: unknown) => log({ msg: 'purge failed', error: String(error) }))
  }, options.purgeIntervalMs ?? 60_000)
  purge.unref()

  const trust = new ClusterTrustCache({
    db,
    masterKey,
    contextTtlMs,
    trustTtlMs: options.trustTtlMs ?? 1000,
    log,
  })

  // A name that is no cluster gets a certificate no client trusts, so the client fails at once with
  // a certificate error instead of retrying what would look like a dropped connection.
  const nobodysCa = await generateCertificateAuthority({
    purpose: Purpose.clusterCa,
    commonName: 'no such cluster',
    validityDays: 1,
  })
  const unknownCluster = await issueCertificate({
    ca: nobodysCa,
    commonName: 'no-such-cluster',
    usage: 'server',
    dnsNames: ['no-such-cluster.invalid'],
    ttlSeconds: 86_400,
  })

  function contextFor(serverName: string): Promise<SecureContext> {
    const name = serverName.toLowerCase()
    const clusterId = clusterIdOf(name)
    if (clusterId === undefined) return Promise.reject(new Error(`unknown server name '${serverName}'`))
    return trust.contextFor(name, clusterId)
  }

  const server = https.createServer(
    {
      cert: unknownCluster.certPem,
      key: unknownCluster.keyPem,
      requestCert: true,
      // Like kube-apiserver: finish the handshake and answer 401 for a certificate this cluster's CA
      // did not sign (or one that expired). A TLS-level refusal looks like a dropped connection,
      // which kubectl retries for ~15 s before it gives up with "EOF".
      rejectUnauthorized: false,
      SNICallback: (serverName, callback) => {
        contextFor(serverName).then(
          (context) => callback(null, context),
          (error: Error) => {
            log({
              msg: 'unknown server name: presenting an untrusted certificate',
              serverName,
              error: error.message,
            })
            callback(null, undefined)
          },
        )
      },
    },
    (req, res) => {
      handle(req, res).catch((error: unknown) => {
        log({ msg: 'request failed', url: req.url, error: String(error) })
        if (!res.headersSent) send(res, 500, status(500, 'InternalError', 'an internal error occurred'))
        else res.destroy()
      })
    },
  )

  // A cluster's row is read once a second at most: every request needs it, and a deleted cluster
  // stops answering within that second, as a deleted CA does (trust.ts).
  const clusters = new Map<string, { expires: number; view: Promise<ClusterView | undefined> }>()
  const clusterOf = (clusterId: string) => {
    const cached = clusters.get(clusterId)
    if (cached && cached.expires > Date.now()) return cached.view
    const view = findCluster(db, clusterId)
    clusters.set(clusterId, { expires: Date.now() + 1000, view })
    view.catch(() => clusters.delete(clusterId))
    if (clusters.size > 10_000)
      for (const [id, c] of clusters) if (c.expires <= Date.now()) clusters.delete(id)
    return view
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const socket = req.socket as TLSSocket
    const clusterId = clusterIdOf(socket.servername)
    const cluster = clusterId === undefined ? undefined : await clusterOf(clusterId)
    const peer = socket.getPeerCertificate()
    // The handshake checked the client certificate against the CAs trusted then; a CA rotation
    // completed since (on a kept-alive connection) is caught by clientTrusted.
    if (
      !socket.authorized ||
      clusterId === undefined ||
      !cluster ||
      !peer?.subject ||
      !(await trust.clientTrusted(socket, clusterId))
    ) {
      return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'))
    }
    const user = String(peer.subject.CN ?? '')
    const organizations = peer.subject.O
    const groups = Array.isArray(organizations) ? organizations : organizations ? [organizations] : []
    const path = new URL(req.url ?? '/', 'https://localhost').pathname.replace(/\/+$/, '') || '/'
    if (path === '/healthz' || path === '/readyz' || path === '/livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' })
      return res.end('ok')
    }
    return serveKubernetesApi(req, res, {
      db,
      store,
      cluster,
      caller: { user, groups },
      serverAddress: `${socket.servername}:${(server.address() as AddressInfo).port}`,
    })
  }

  server.on('tlsClientError', (error: Error & { code?: string }) => {
    log({ msg: 'TLS client rejected', code: error.code, error: error.message })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 6443, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo

  return {
    host: address.address,
    port: address.port,
    domain,
    serverNameOf: (clusterId) => `${clusterId.toLowerCase()}${suffix}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        clearInterval(purge)
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}
