import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type CertificateAndKey,
  caBundle,
  certificateInfo,
  fingerprintSha256,
  generateCertificateAuthority,
  issueCertificate,
  PkiErrorCode,
} from '../src/index.ts'

const now = new Date('2030-03-01T00:00:00.000Z')
let ca: CertificateAndKey
let otherCa: CertificateAndKey
let leaf: CertificateAndKey
beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([
    generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 10, now }),
    generateCertificateAuthority({ purpose: 'etcd-ca', validityDays: 10, now }),
  ])
  leaf = await issueCertificate({
    ca,
    commonName: 'kube-apiserver',
    organizations: ['kiln'],
    usage: 'server',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    ttlSeconds: 3600,
    now,
  })
})

describe('certificateInfo', () => {
  it('describes a leaf certificate', () => {
    const x509 = new X509Certificate(leaf.certPem)
    expect(certificateInfo(leaf.certPem)).toEqual({
      subject: { commonName: 'kube-apiserver', organizations: ['kiln'] },
      issuer: { commonName: 'kubernetes', organizations: [] },
      serialNumber: x509.serialNumber.toLowerCase(),
      notBefore: new Date('2030-02-28T23:59:00.000Z'),
      notAfter: new Date('2030-03-01T01:00:00.000Z'),
      isCertificateAuthority: false,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      fingerprintSha256: fingerprintSha256(leaf.certPem),
    })
  })

  it('describes a CA', () => {
    const info = certificateInfo(ca.certPem)
    expect(info.isCertificateAuthority).toBe(true)
    expect(info.subject).toEqual(info.issuer)
    expect(info.dnsNames).toEqual([])
  })

  it('unescapes names and reads quoted SANs', () => {
    const certPem = execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        '/dev/null',
        '-days',
        '1',
        '-utf8',
        '-subj',
        '/O=a\\, b/O=Zürich/CN=x\\+y',
        '-addext',
        'subjectAltName=DNS:a.example,DNS:b.example,IP:10.0.0.1',
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    )
    const info = certificateInfo(certPem)
    expect(info.subject).toEqual({ commonName: 'x+y', organizations: ['a, b', 'Zürich'] })
    expect(info.dnsNames).toEqual(['a.example', 'b.example'])
    expect(info.ipAddresses).toEqual(['10.0.0.1'])
  })

  it('refuses anything but exactly one certificate', () => {
    for (const pem of [
      '',
      ca.keyPem,
      ca.certPem + otherCa.certPem,
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    ]) {
      expect(() => certificateInfo(pem)).toThrow(
        expect.objectContaining({ code: PkiErrorCode.certificateInvalid }),
      )
    }
  })
})

describe('fingerprintSha256', () => {
  it("is node's SHA-256 fingerprint in lowercase hex without colons", () => {
    expect(fingerprintSha256(ca.certPem)).toBe(
      new X509Certificate(ca.certPem).fingerprint256.replaceAll(':', '').toLowerCase(),
    )
    expect(fingerprintSha256(ca.certPem)).not.toBe(fingerprintSha256(otherCa.certPem))
  })
})

describe('caBundle', () => {
  it('joins certificates in order, once each, and accepts bundles as input', () => {
    const bundle = caBundle([ca.certPem, otherCa.certPem, `${ca.certPem}\n${otherCa.certPem}`])
    const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n/g) ?? []
    expect(blocks.join('')).toBe(bundle)
    expect(blocks.map(fingerprintSha256)).toEqual([
      fingerprintSha256(ca.certPem),
      fingerprintSha256(otherCa.certPem),
    ])
  })

  it('normalizes line endings', () => {
    expect(caBundle([ca.certPem.replace(/\n/g, '\r\n')])).toBe(caBundle([ca.certPem]))
  })

  it('refuses private keys, garbage and an empty list', () => {
    expect(() => caBundle([ca.certPem + ca.keyPem])).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.certificateInvalid,
        message: expect.stringMatching(/PRIVATE KEY/),
      }),
    )
    expect(() => caBundle(['hello'])).toThrow(
      expect.objectContaining({ code: PkiErrorCode.certificateInvalid }),
    )
    expect(() => caBundle([])).toThrow(expect.objectContaining({ code: PkiErrorCode.invalidRequest }))
  })
})
