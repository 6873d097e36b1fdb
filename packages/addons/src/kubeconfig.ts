import { KubeConfig } from '@kubernetes/client-node'

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
 * A KubeConfig for one cluster reached with a client certificate. `tlsServerName` becomes the
 * cluster's `tls-server-name`; @kubernetes/client-node 1.x passes it as `servername` to the HTTPS
 * agent of every API call, which sends it as SNI and verifies the certificate against it.
 */
export function addonKubeConfig(request: AddonKubeConfigRequest): KubeConfig {
  const cluster = request.clusterName ?? 'cluster'
  const context = `${request.user}@${cluster}`
  const kubeConfig = new KubeConfig()
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
