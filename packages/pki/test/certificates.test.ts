import { execFileSync } from 'node:child_process'
import { createPrivateKey, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type CertificateAndKey,
  generateCertificateAuthority,
  type IssuedCertificate,
  issueCertificate,
  PkiErrorCode,
} from '../src/index.ts'
import { extension, opensslExtensions } from './openssl.ts'

const serverAuth = '1.3.6.1.5.5.7.3.1'
const clientAuth = '1.3.6.1.5.5.7.3.2'
const now = new Date('2030-06-01T12:00:00.000Z')

let ca: CertificateAndKey
let otherCa: CertificateAndKey
beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 365, now }),
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 365, now }),
  ])
})

describe('issueCertificate: a server certificate', () => {
  let issued: IssuedCertificate
  let leaf: X509Certificate
  beforeAll(async () => {
    issued = await issueCertificate({
      ca,
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: ['localhost', 'kubernetes.default.svc.cluster.local'],
      ipAddresses: ['127.0.0.1', '10.96.0.1', 'fd00::1'],
      ttlSeconds: 86_400,
      now,
    })
    leaf = new X509Certificate(issued.certPem)
  })

  it('chains to its CA and to no other CA with the same name', () => {
    const caCert = new X509Certificate(ca.certPem)
    const other = new X509Certificate(otherCa.certPem)
    expect(leaf.verify(caCert.publicKey)).toBe(true)
    expect(leaf.checkIssued(caCert)).toBe(true)
    expect(leaf.verify(other.publicKey)).toBe(false)
    // Same subject, different authority key identifier: the identifier tells the two CAs apart.
    expect(other.subject).toBe(caCert.subject)
    expect(leaf.checkIssued(other)).toBe(false)
  })

  it('is for server authentication only, not a CA, with its SANs', () => {
    expect(leaf.ca).toBe(false)
    expect(leaf.keyUsage).toEqual([serverAuth])
    expect(leaf.subjectAltName).toBe(
      'DNS:localhost, DNS:kubernetes.default.svc.cluster.local, IP Address:127.0.0.1, IP Address:10.96.0.1, IP Address:FD00:0:0:0:0:0:0:1',
    )
    expect(leaf.checkIP('10.96.0.1')).toBe('10.96.0.1')
    expect(leaf.checkHost('kubernetes.default.svc.cluster.local')).toBe(
      'kubernetes.default.svc.cluster.local',
    )
    expect(leaf.checkHost('example.com')).toBeUndefined()
  })

  it('comes with its own ECDSA P-256 key, signed ecdsa-with-SHA256', () => {
    const key = createPrivateKey(issued.keyPem)
    expect(key.asymmetricKeyType).toBe('ec')
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(leaf.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(issued.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    expect(leaf.raw.includes(Buffer.from('06082a8648ce3d040302', 'hex'))).toBe(true)
    expect(leaf.checkPrivateKey(key)).toBe(true)
    expect(leaf.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(false)
  })

  it('starts a minute early for clock skew and lasts ttlSeconds', () => {
    expect(new Date(leaf.validFrom).toISOString()).toBe('2030-06-01T11:59:00.000Z')
    expect(new Date(leaf.validTo).toISOString()).toBe('2030-06-02T12:00:00.000Z')
    expect(issued.notAfter.toISOString()).toBe('2030-06-02T12:00:00.000Z')
  })

  it('has critical key usages and an authority key identifier equal to the CA key id', () => {
    const text = opensslExtensions(issued.certPem)
    expect(extension(text, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:FALSE' })
    expect(extension(text, 'Key Usage')).toEqual({
      critical: true,
      value: 'Digital Signature, Key Encipherment',
    })
    expect(extension(text, 'Extended Key Usage')?.value).toBe('TLS Web Server Authentication')
    const caKeyId = extension(opensslExtensions(ca.certPem), 'Subject Key Identifier')?.value
    expect(extension(text, 'Authority Key Identifier')?.value).toBe(caKeyId)
  })
})

describe('issueCertificate: a client certificate', () => {
  it('names the user and groups, for client authentication only, without SANs', async () => {
    const issued = await issueCertificate({
      ca,
      commonName: 'kubernetes-admin',
      organizations: ['system:masters'],
      usage: 'client',
      ttlSeconds: 3600,
      now,
    })
    const leaf = new X509Certificate(issued.certPem)
    expect(leaf.subject).toBe('O=system:masters\nCN=kubernetes-admin')
    expect(leaf.issuer).toBe('CN=kubernetes')
    expect(leaf.keyUsage).toEqual([clientAuth])
    expect(leaf.subjectAltName).toBeUndefined()
  })

  it('keeps names PrintableString cannot hold', async () => {
    const issued = await issueCertificate({
      ca,
      commonName: 'alice_smith@example.com',
      organizations: ['équipe-a', 'team_b'],
      usage: 'client',
      ttlSeconds: 3600,
      now,
    })
    expect(new X509Certificate(issued.certPem).subject).toBe(
      'O=équipe-a\nO=team_b\nCN=alice_smith@example.com',
    )
  })
})

describe('issueCertificate: validity against the CA', () => {
  it("caps the TTL at the CA's notAfter", async () => {
    const shortCa = await generateCertificateAuthority({ purpose: 'etcd-ca', validityDays: 1, now })
    const issued = await issueCertificate({
      ca: shortCa,
      commonName: 'etcd',
      usage: 'server',
      dnsNames: ['etcd.local'],
      ttlSeconds: 30 * 86_400,
      now,
    })
    const caNotAfter = new X509Certificate(shortCa.certPem).validTo
    expect(new X509Certificate(issued.certPem).validTo).toBe(caNotAfter)
    expect(issued.notAfter.getTime()).toBe(new Date(caNotAfter).getTime())
  })

  it('refuses to issue once the CA has expired', async () => {
    await expect(
      issueCertificate({
        ca,
        commonName: 'late',
        usage: 'client',
        ttlSeconds: 60,
        now: new Date('2031-06-02T00:00:00.000Z'),
      }),
    ).rejects.toMatchObject({ code: PkiErrorCode.caExpired })
  })
})

describe('issueCertificate: refusals', () => {
  const base = { commonName: 'x', usage: 'client' as const, ttlSeconds: 60, now }
  it.each([
    ['a server certificate without SANs', { usage: 'server' as const }],
    ['a bad IP address', { usage: 'server' as const, ipAddresses: ['10.0.0.256'] }],
    ['a bad DNS name', { usage: 'server' as const, dnsNames: ['bad name'] }],
    ['a zero TTL', { ttlSeconds: 0 }],
    ['a fractional TTL', { ttlSeconds: 1.5 }],
    ['an empty common name', { commonName: ' ' }],
    ['an empty group', { organizations: [''] }],
    ['an unknown usage', { usage: 'peer' as 'client' }],
  ])('refuses %s', async (_, change) => {
    await expect(issueCertificate({ ca, ...base, ...change })).rejects.toMatchObject({
      code: PkiErrorCode.invalidRequest,
    })
  })

  it('refuses a CA that is not a CA', async () => {
    const leaf = await issueCertificate({ ca, ...base })
    await expect(
      issueCertificate({ ca: { certPem: leaf.certPem, keyPem: leaf.keyPem }, ...base }),
    ).rejects.toMatchObject({ code: PkiErrorCode.caInvalid, message: expect.stringMatching(/not a CA/) })
  })

  it("refuses a CA key that is not the CA certificate's", async () => {
    await expect(
      issueCertificate({ ca: { certPem: ca.certPem, keyPem: otherCa.keyPem }, ...base }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.caInvalid,
      message: expect.stringMatching(/does not belong/),
    })
  })

  it('refuses a CA that is not PEM', async () => {
    await expect(
      issueCertificate({ ca: { certPem: 'nope', keyPem: ca.keyPem }, ...base }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.caInvalid,
    })
  })
})

describe('issueCertificate with a CA made by OpenSSL', () => {
  const directory = mkdtempSync(join(tmpdir(), 'kiln-pki-'))
  afterAll(() => rmSync(directory, { recursive: true, force: true }))

  it('issues certificates that OpenSSL verifies, with the issuer name copied byte for byte', async () => {
    const keyFile = join(directory, 'ca.key')
    const certFile = join(directory, 'ca.crt')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-utf8',
        '-keyout',
        keyFile,
        '-out',
        certFile,
        '-days',
        '2',
        '-subj',
        '/O=Société Générale/CN=Ops CA',
      ],
      { stdio: 'ignore' },
    )
    const opensslCa = { certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') }
    const issued = await issueCertificate({
      ca: opensslCa,
      commonName: 'bob',
      usage: 'client',
      ttlSeconds: 600,
    })
    const leafFile = join(directory, 'leaf.crt')
    writeFileSync(leafFile, issued.certPem)
    expect(
      execFileSync('openssl', ['verify', '-CAfile', certFile, leafFile], { encoding: 'utf8' }).trim(),
    ).toBe(`${leafFile}: OK`)
    expect(new X509Certificate(issued.certPem).issuer).toBe('O=Société Générale\nCN=Ops CA')
  })
})
