import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import {
  type CertificateAndKey,
  fingerprintSha256,
  generateCertificateAuthority,
  issueCertificate,
  PkiErrorCode,
  renderKubeconfig,
} from '../src/index.ts'

const run = promisify(execFile)

interface Kubeconfig {
  apiVersion: string
  kind: string
  clusters: { name: string; cluster: Record<string, string> }[]
  users: { name: string; user: Record<string, string> }[]
  contexts: { name: string; context: Record<string, string> }[]
  'current-context': string
}

const fromBase64 = (data: string | undefined) => Buffer.from(data ?? '', 'base64').toString('utf8')
const certificatesIn = (bundle: string) =>
  (bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map(fingerprintSha256)

let oldCa: CertificateAndKey
let newCa: CertificateAndKey
let admin: CertificateAndKey
const directory = mkdtempSync(join(tmpdir(), 'kiln-kubeconfig-'))
beforeAll(async () => {
  ;[oldCa, newCa] = await Promise.all([
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 }),
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 }),
  ])
  admin = await issueCertificate({
    ca: newCa,
    commonName: 'kubernetes-admin',
    organizations: ['system:masters'],
    usage: 'client',
    ttlSeconds: 3600,
  })
})
afterAll(() => rmSync(directory, { recursive: true, force: true }))

const render = (server = 'https://127.0.0.1:6443', namespace?: string) =>
  renderKubeconfig({
    clusterName: 'prod-eu',
    server,
    caCertsPem: [oldCa.certPem, newCa.certPem],
    userName: 'kubernetes-admin',
    clientCertPem: admin.certPem,
    clientKeyPem: admin.keyPem,
    ...(namespace === undefined ? {} : { namespace }),
  })

describe('renderKubeconfig', () => {
  it('renders one cluster, user and context, selected, with the data inline', () => {
    const config = parse(render('https://api.prod-eu.example:6443', 'team-a')) as Kubeconfig
    expect(config.apiVersion).toBe('v1')
    expect(config.kind).toBe('Config')
    expect(config.clusters).toHaveLength(1)
    expect(config.clusters[0]?.name).toBe('prod-eu')
    expect(config.clusters[0]?.cluster.server).toBe('https://api.prod-eu.example:6443')
    expect(certificatesIn(fromBase64(config.clusters[0]?.cluster['certificate-authority-data']))).toEqual([
      fingerprintSha256(oldCa.certPem),
      fingerprintSha256(newCa.certPem),
    ])
    expect(config.users[0]?.name).toBe('kubernetes-admin')
    expect(fingerprintSha256(fromBase64(config.users[0]?.user['client-certificate-data']))).toBe(
      fingerprintSha256(admin.certPem),
    )
    expect(fromBase64(config.users[0]?.user['client-key-data'])).toBe(admin.keyPem)
    expect(config.contexts).toEqual([
      {
        name: 'kubernetes-admin@prod-eu',
        context: { cluster: 'prod-eu', user: 'kubernetes-admin', namespace: 'team-a' },
      },
    ])
    expect(config['current-context']).toBe('kubernetes-admin@prod-eu')
  })

  it('leaves the namespace out unless given', () => {
    const config = parse(render()) as Kubeconfig
    expect(config.contexts[0]?.context).toEqual({ cluster: 'prod-eu', user: 'kubernetes-admin' })
  })

  it('refuses a server that is not https, a key among the CAs, and no CA at all', () => {
    expect(() => render('http://127.0.0.1:6443')).toThrow(
      expect.objectContaining({ code: PkiErrorCode.invalidRequest }),
    )
    const base = {
      clusterName: 'c',
      server: 'https://127.0.0.1:6443',
      userName: 'u',
      clientCertPem: admin.certPem,
      clientKeyPem: admin.keyPem,
    }
    expect(() => renderKubeconfig({ ...base, caCertsPem: [newCa.certPem + newCa.keyPem] })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.certificateInvalid }),
    )
    expect(() => renderKubeconfig({ ...base, caCertsPem: [] })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.invalidRequest }),
    )
    expect(() =>
      renderKubeconfig({ ...base, caCertsPem: [newCa.certPem], clientKeyPem: admin.certPem }),
    ).toThrow(expect.objectContaining({ code: PkiErrorCode.invalidRequest }))
  })
})

describe('renderKubeconfig read by kubectl', () => {
  it('is a kubeconfig kubectl reads', async () => {
    const file = join(directory, 'view.yaml')
    writeFileSync(file, render(), { mode: 0o600 })
    const { stdout } = await run('kubectl', ['config', 'view', '--kubeconfig', file, '-o', 'json', '--raw'])
    const config = JSON.parse(stdout) as Kubeconfig
    expect(config['current-context']).toBe('kubernetes-admin@prod-eu')
    expect(config.clusters[0]?.cluster.server).toBe('https://127.0.0.1:6443')
    expect(
      certificatesIn(fromBase64(config.clusters[0]?.cluster['certificate-authority-data'])),
    ).toHaveLength(2)
    expect(fromBase64(config.users[0]?.user['client-key-data'])).toBe(admin.keyPem)
  })

  it('authenticates kubectl to a TLS server signed by the new CA, with Go parsing every certificate', async () => {
    const serving = await issueCertificate({
      ca: newCa,
      commonName: 'kube-apiserver',
      usage: 'server',
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: 3600,
    })
    const seen: string[] = []
    const server = https.createServer(
      {
        key: serving.keyPem,
        cert: serving.certPem,
        ca: [newCa.certPem],
        requestCert: true,
        rejectUnauthorized: true,
      },
      (request, response) => {
        const socket = request.socket as TLSSocket
        const peer = new X509Certificate(socket.getPeerX509Certificate()?.raw ?? Buffer.alloc(0))
        seen.push(`${request.url} ${peer.subject.replace('\n', ' ')}`)
        response.setHeader('content-type', 'text/plain')
        response.end('ok')
      },
    )
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    try {
      const file = join(directory, 'live.yaml')
      writeFileSync(file, render(`https://127.0.0.1:${(server.address() as AddressInfo).port}`), {
        mode: 0o600,
      })
      const { stdout } = await run('kubectl', ['--kubeconfig', file, 'get', '--raw', '/healthz'], {
        timeout: 15_000,
      })
      expect(stdout.trim()).toBe('ok')
      expect(seen).toContain('/healthz O=system:masters CN=kubernetes-admin')
    } finally {
      server.close()
    }
  })
})
