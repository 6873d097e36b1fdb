import { stringify } from 'yaml'
import { caBundle } from './bundle.ts'
import { parseCertificate } from './certificate-info.ts'
import { PkiError, PkiErrorCode } from './errors.ts'

export interface RenderKubeconfigRequest {
  clusterName: string
  /** The API server URL, https://host:port. */
  server: string
  /** Every CA the client should trust; both old and new while the cluster CA rotates. */
  caCertsPem: readonly string[]
  userName: string
  clientCertPem: string
  clientKeyPem: string
  namespace?: string
  /**
   * The TLS server name to ask for and verify, when it differs from the server URL's host: one
   * address serving many API servers, routed by SNI.
   */
  tlsServerName?: string
}

const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64')

/** A self-contained kubeconfig (certificates and key inline) with one cluster, user and context, selected. */
export function renderKubeconfig(request: RenderKubeconfigRequest): string {
  for (const [field, value] of [
    ['clusterName', request.clusterName],
    ['userName', request.userName],
  ] as const) {
    if (value.trim() === '') throw new PkiError(PkiErrorCode.invalidRequest, `${field} must be non-empty.`)
  }
  let server: URL
  try {
    server = new URL(request.server)
  } catch {
    throw new PkiError(PkiErrorCode.invalidRequest, `server '${request.server}' is not a URL.`)
  }
  // Client certificates authenticate only over TLS; an http:// server would receive them in vain.
  if (server.protocol !== 'https:') {
    throw new PkiError(
      PkiErrorCode.invalidRequest,
      `server must be an https:// URL, got '${request.server}'.`,
    )
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(request.clientKeyPem)) {
    throw new PkiError(PkiErrorCode.invalidRequest, 'clientKeyPem must be a PEM private key.')
  }

  // kubeadm's convention for the context name.
  const contextName = `${request.userName}@${request.clusterName}`
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: request.clusterName,
        cluster: {
          server: request.server,
          'certificate-authority-data': base64(caBundle(request.caCertsPem)),
          ...(request.tlsServerName ? { 'tls-server-name': request.tlsServerName } : {}),
        },
      },
    ],
    users: [
      {
        name: request.userName,
        user: {
          'client-certificate-data': base64(parseCertificate(request.clientCertPem).toString()),
          'client-key-data': base64(request.clientKeyPem),
        },
      },
    ],
    contexts: [
      {
        name: contextName,
        context: {
          cluster: request.clusterName,
          user: request.userName,
          ...(request.namespace === undefined ? {} : { namespace: request.namespace }),
        },
      },
    ],
    'current-context': contextName,
    preferences: {},
  })
}
