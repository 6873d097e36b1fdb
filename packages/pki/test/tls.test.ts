import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import tls from 'node:tls'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  type CertificateAndKey,
  caBundle,
  generateCertificateAuthority,
  issueCertificate,
} from '../src/index.ts'

// Real handshakes through node's TLS (OpenSSL): the end-to-end proof that the certificates work.

let ca: CertificateAndKey
let otherCa: CertificateAndKey
let serverCert: CertificateAndKey
let clientCert: CertificateAndKey
beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 }),
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 }),
  ])
  ;[serverCert, clientCert] = await Promise.all([
    issueCertificate({
      ca,
      commonName: 'kube-apiserver',
      usage: 'server',
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: 3600,
    }),
    issueCertificate({ ca, commonName: 'alice', organizations: ['dev'], usage: 'client', ttlSeconds: 3600 }),
  ])
})

const servers: tls.Server[] = []
afterEach(() => {
  for (const server of servers.splice(0)) server.close()
})

interface Handshake {
  /** Whether the client accepted the server's certificate (chain and IP SAN). */
  clientAuthorized: boolean
  /** Whether the server accepted the client's certificate, and if not, OpenSSL's reason. */
  serverAuthorized: boolean
  serverAuthorizationError: string | undefined
  peerCommonName: string | undefined
}

/** The server asks for a client certificate but lets the handshake finish, so the test sees OpenSSL's verdict. */
async function handshake(options: {
  server: CertificateAndKey
  serverTrusts: string[]
  client: CertificateAndKey
  clientTrusts: string[]
}): Promise<Handshake> {
  const server = tls.createServer({
    key: options.server.keyPem,
    cert: options.server.certPem,
    ca: options.serverTrusts,
    requestCert: true,
    rejectUnauthorized: false,
  })
  servers.push(server)
  const serverSide = new Promise<Omit<Handshake, 'clientAuthorized'>>((resolve) => {
    server.once('secureConnection', (socket: tls.TLSSocket) => {
      const peer = socket.getPeerCertificate()
      resolve({
        serverAuthorized: socket.authorized,
        // null, not undefined, when authorized.
        serverAuthorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
        peerCommonName: [peer.subject?.CN].flat()[0],
      })
      socket.end()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const client = tls.connect({
    host: '127.0.0.1',
    port: (server.address() as AddressInfo).port,
    ca: options.clientTrusts,
    cert: options.client.certPem,
    key: options.client.keyPem,
  })
  try {
    await once(client, 'secureConnect')
    return { clientAuthorized: client.authorized, ...(await serverSide) }
  } finally {
    client.destroy()
  }
}

describe('TLS with issued certificates', () => {
  it('authenticates both ends', async () => {
    const result = await handshake({
      server: serverCert,
      serverTrusts: [ca.certPem],
      client: clientCert,
      clientTrusts: [ca.certPem],
    })
    expect(result).toEqual({
      clientAuthorized: true,
      serverAuthorized: true,
      serverAuthorizationError: undefined,
      peerCommonName: 'alice',
    })
  })

  it('rejects a client certificate from another CA', async () => {
    const foreign = await issueCertificate({
      ca: otherCa,
      commonName: 'mallory',
      usage: 'client',
      ttlSeconds: 3600,
    })
    const result = await handshake({
      server: serverCert,
      serverTrusts: [ca.certPem],
      client: foreign,
      clientTrusts: [ca.certPem],
    })
    expect(result.serverAuthorized).toBe(false)
    expect(result.serverAuthorizationError).toMatch(
      /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/,
    )
  })

  it('rejects an expired client certificate', async () => {
    const expired = await issueCertificate({
      ca,
      commonName: 'alice',
      usage: 'client',
      ttlSeconds: 3600,
      now: new Date(Date.now() - 2 * 86_400_000),
    })
    const result = await handshake({
      server: serverCert,
      serverTrusts: [ca.certPem],
      client: expired,
      clientTrusts: [ca.certPem],
    })
    expect(result.serverAuthorized).toBe(false)
    expect(result.serverAuthorizationError).toMatch(/CERT_HAS_EXPIRED/)
  })

  it('trusts both CAs of a bundle while the CA rotates', async () => {
    const newServerCert = await issueCertificate({
      ca: otherCa,
      commonName: 'kube-apiserver',
      usage: 'server',
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: 3600,
    })
    const bundle = caBundle([ca.certPem, otherCa.certPem])
    const result = await handshake({
      server: newServerCert,
      serverTrusts: [bundle],
      client: clientCert,
      clientTrusts: [bundle],
    })
    expect(result.clientAuthorized).toBe(true)
    expect(result.serverAuthorized).toBe(true)
  })

  it('fails the handshake when the server requires a trusted client certificate', async () => {
    const foreign = await issueCertificate({
      ca: otherCa,
      commonName: 'mallory',
      usage: 'client',
      ttlSeconds: 3600,
    })
    const server = tls.createServer({
      key: serverCert.keyPem,
      cert: serverCert.certPem,
      ca: [ca.certPem],
      requestCert: true,
      rejectUnauthorized: true,
    })
    servers.push(server)
    let accepted = false
    server.on('secureConnection', () => {
      accepted = true
    })
    const refused = once(server, 'tlsClientError')
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const client = tls.connect({
      host: '127.0.0.1',
      port: (server.address() as AddressInfo).port,
      ca: [ca.certPem],
      cert: foreign.certPem,
      key: foreign.keyPem,
    })
    client.on('error', () => {})
    await refused
    client.destroy()
    expect(accepted).toBe(false)
  })
})
