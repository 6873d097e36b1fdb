import { readFileSync } from 'node:fs'
import https from 'node:https'
import tls from 'node:tls'
import { KubeConfig, type RequestContext } from '@kubernetes/client-node'

export interface AddonKubeConfigRequest {
  /** The API server URL, https://host:port. */
  server: string
  /**
   * The TLS server name to send (SNI) and to verify the server's certificate against, when it differs
   * from the URL's host: one address serving many API servers, routed by SNI.
   */
  tlsServerName?: string
  /** The CA certificate(s) to trust, PEM (a bundle while the cluster CA rotates). */
  caPem: string
  /** The client certificate and its key, PEM. */
  certPem: string
  keyPem: string
  user: string
  /** Names the cluster entry; only visible in the KubeConfig object. */
  clusterName?: string
}

const base64 = (pem: string) => Buffer.from(pem, 'utf8').toString('base64')

/**
 * A KubeConfig whose requests share one HTTPS agent. client-node builds a fresh agent for every
 * request, so every call paid a full TLS handshake with a client certificate; a shared agent
 * resumes the TLS session instead. Connections are still not kept alive: node-fetch 2 (under
 * client-node) reports "Premature close" on reused sockets with chunked responses. So each request
 * is a new TLS socket, and each would parse the CA, certificate and key into a secure context of
 * its own (a quarter of the worker's CPU in a create storm): they share one built once here.
 */
export class AddonKubeConfig extends KubeConfig {
  private readonly agent: https.Agent

  constructor(request: AddonKubeConfigRequest) {
    super()
    const credentials = { ca: request.caPem, cert: request.certPem, key: request.keyPem }
    this.agent = new https.Agent({
      keepAlive: false,
      // The PEMs stay too: the agent names its TLS session cache by them.
      ...credentials,
      secureContext: tls.createSecureContext(credentials),
      ...(request.tlsServerName ? { servername: request.tlsServerName } : {}),
    })
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context)
    context.setAgent(this.agent)
  }
}

/**
 * A KubeConfig for one cluster reached with a client certificate. `tlsServerName` becomes the
 * cluster's `tls-server-name` (sent as SNI and checked against the server's certificate).
 */
export function addonKubeConfig(request: AddonKubeConfigRequest): AddonKubeConfig {
  const cluster = request.clusterName ?? 'cluster'
  const context = `${request.user}@${cluster}`
  const kubeConfig = new AddonKubeConfig(request)
  kubeConfig.loadFromOptions({
    clusters: [
      {
        name: cluster,
        server: request.server,
        caData: base64(request.caPem),
        skipTLSVerify: false,
        ...(request.tlsServerName ? { tlsServerName: request.tlsServerName } : {}),
      },
    ],
    users: [{ name: request.user, certData: base64(request.certPem), keyData: base64(request.keyPem) }],
    contexts: [{ name: context, cluster, user: request.user }],
    currentContext: context,
  })
  return kubeConfig
}

/**
 * Any kubeconfig whose current user signs in with a client certificate, as one sharing an agent (see
 * `AddonKubeConfig`): a controller or driver polling a management cluster otherwise pays a full TLS
 * handshake per request on both sides. Other credentials (a token, an exec plugin) are left as they are.
 */
export function withSharedAgent(config: KubeConfig): KubeConfig {
  const cluster = config.getCurrentCluster()
  const user = config.getCurrentUser()
  if (!cluster || !user) return config
  const pem = (data: string | undefined, file: string | undefined) =>
    data ? Buffer.from(data, 'base64').toString('utf8') : file ? readFileSync(file, 'utf8') : undefined
  const caPem = pem(cluster.caData, cluster.caFile)
  const certPem = pem(user.certData, user.certFile)
  const keyPem = pem(user.keyData, user.keyFile)
  if (!caPem || !certPem || !keyPem) return config
  return addonKubeConfig({
    server: cluster.server,
    ...(cluster.tlsServerName ? { tlsServerName: cluster.tlsServerName } : {}),
    caPem,
    certPem,
    keyPem,
    user: user.name,
    clusterName: cluster.name,
  })
}
