import type { IncomingMessage, ServerResponse } from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls'
import { type Database, getClusterSecret, isUuid } from '@kiln/db'
import {
  generateCertificateAuthority,
  issueCertificate,
  type MasterKeyring,
  openCertificate,
  Purpose,
  type SealedPrivateKey,
} from '@kiln/pki'
import {
  apiGroupList,
  apiVersions,
  type ClusterView,
  coreResourceList,
  findCluster,
  type KubeObject,
  listNamespaces,
  listNodes,
  matchesFieldSelector,
  matchesSelector,
  parseLabelSelector,
  SelectorError,
  status,
  table,
  versionInfo,
} from './kube.ts'

/** Each cluster's API answers at `<clusterId>.<domain>`; the TLS SNI name picks the cluster. */
export const defaultDomain = 'clusters.sim.kiln.internal'

export interface ApiServerOptions {
  db: Database
  masterKey: MasterKeyring
  host?: string
  /** 0 picks a free port. */
  port?: number
  domain?: string
  /** How long a cluster's TLS context (its serving certificate and trusted CA) is reused. */
  contextTtlMs?: number
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

/** Serving certificates live a day; contexts are rebuilt well before. */
const servingCertTtlSeconds = 24 * 3600

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

  const contexts = new Map<string, { expires: number; context: Promise<SecureContext> }>()

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

  async function buildContext(serverName: string, clusterId: string): Promise<SecureContext> {
    const secret = await getClusterSecret(db, clusterId, Purpose.clusterCa)
    if (secret?.kind !== 'certificate') throw new Error(`no cluster CA for '${serverName}'`)
    const ca = openCertificate(
      clusterId,
      Purpose.clusterCa,
      { kind: 'certificate', certPem: secret.publicPem, sealedKey: secret.sealedKey as SealedPrivateKey },
      masterKey,
    )
    const serving = await issueCertificate({
      ca,
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: [serverName, 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'localhost'],
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: servingCertTtlSeconds,
    })
    log({ msg: 'serving certificate issued', clusterId, serverName, notAfter: serving.notAfter })
    return createSecureContext({ cert: serving.certPem, key: serving.keyPem, ca: ca.certPem })
  }

  function contextFor(serverName: string): Promise<SecureContext> {
    const name = serverName.toLowerCase()
    const clusterId = clusterIdOf(name)
    if (clusterId === undefined) return Promise.reject(new Error(`unknown server name '${serverName}'`))
    const cached = contexts.get(name)
    if (cached && cached.expires > Date.now()) return cached.context
    const context = buildContext(name, clusterId)
    contexts.set(name, { expires: Date.now() + contextTtlMs, context })
    // A failure is not remembered: the cluster may be being created right now.
    context.catch(() => {
      if (contexts.get(name)?.context === context) contexts.delete(name)
    })
    return context
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

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const socket = req.socket as TLSSocket
    const clusterId = clusterIdOf(socket.servername)
    const cluster = clusterId === undefined ? undefined : await findCluster(db, clusterId)
    const peer = socket.getPeerCertificate()
    if (!socket.authorized || !cluster || !peer?.subject) {
      return send(res, 401, status(401, 'Unauthorized', 'Unauthorized'))
    }
    const user = String(peer.subject.CN ?? '')
    const organizations = peer.subject.O
    const groups = Array.isArray(organizations) ? organizations : organizations ? [organizations] : []
    const url = new URL(req.url ?? '/', 'https://localhost')
    const path = url.pathname.replace(/\/+$/, '') || '/'
    const method = req.method ?? 'GET'

    if (path === '/healthz' || path === '/readyz' || path === '/livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' })
      return res.end('ok')
    }
    if (method !== 'GET' && method !== 'HEAD') {
      return send(
        res,
        405,
        status(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`),
      )
    }
    switch (path) {
      case '/version':
        return send(res, 200, versionInfo(cluster))
      case '/api':
        return send(res, 200, apiVersions(`${socket.servername}:${(server.address() as AddressInfo).port}`))
      case '/apis':
        return send(res, 200, apiGroupList())
      case '/api/v1':
        return send(res, 200, coreResourceList())
    }
    const match = /^\/api\/v1\/(nodes|namespaces)(?:\/([^/]+))?$/.exec(path)
    if (!match)
      return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'))
    const resource = match[1] as 'nodes' | 'namespaces'
    const name = match[2] === undefined ? undefined : decodeURIComponent(match[2])

    // Authorization: the cluster-admin group only, as a fresh kubeadm cluster without RBAC bindings.
    if (!groups.includes('system:masters')) {
      const verb = name === undefined ? 'list' : 'get'
      return send(
        res,
        403,
        status(
          403,
          'Forbidden',
          `${resource}${name ? ` "${name}"` : ''} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "" at the cluster scope`,
          { ...(name ? { name } : {}), kind: resource },
        ),
      )
    }
    return serveResource(req, res, url, cluster, resource, name)
  }

  async function serveResource(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    cluster: ClusterView,
    resource: 'nodes' | 'namespaces',
    name: string | undefined,
  ) {
    let objects: KubeObject[] = resource === 'nodes' ? await listNodes(db, cluster) : listNamespaces(cluster)
    const resourceVersion = String(
      objects.reduce(
        (max, o) => Math.max(max, Number((o.metadata as { resourceVersion?: string }).resourceVersion ?? 0)),
        1,
      ),
    )
    const wantsTable = /as=Table/.test(req.headers.accept ?? '')
    const includeObject = url.searchParams.get('includeObject') ?? 'Metadata'
    const kind = resource === 'nodes' ? 'Node' : 'Namespace'

    if (name !== undefined) {
      const object = objects.find((o) => o.metadata.name === name)
      if (!object) {
        return send(
          res,
          404,
          status(404, 'NotFound', `${resource} "${name}" not found`, { name, kind: resource }),
        )
      }
      return send(res, 200, wantsTable ? table(resource, [object], resourceVersion, includeObject) : object)
    }

    try {
      const labelSelector = url.searchParams.get('labelSelector')
      if (labelSelector) {
        const requirements = parseLabelSelector(labelSelector)
        objects = objects.filter((o) => matchesSelector(o.metadata.labels ?? {}, requirements))
      }
      const fieldSelector = url.searchParams.get('fieldSelector')
      if (fieldSelector) objects = objects.filter((o) => matchesFieldSelector(o, fieldSelector))
    } catch (error) {
      if (error instanceof SelectorError) return send(res, 400, status(400, 'BadRequest', error.message))
      throw error
    }
    if (wantsTable) return send(res, 200, table(resource, objects, resourceVersion, includeObject))
    return send(res, 200, {
      kind: `${kind}List`,
      apiVersion: 'v1',
      metadata: { resourceVersion },
      items: objects,
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
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      }),
  }
}

/** JSON only: discovery media types (aggregated discovery, protobuf) are answered as plain JSON. */
function send(res: ServerResponse, code: number, body: unknown) {
  const text = JSON.stringify(body)
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, private',
  })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}
