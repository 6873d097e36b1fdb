import { createPrivateKey, X509Certificate } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { type CertificateAndKey, generateCertificateAuthority, PkiErrorCode } from '../src/index.ts'
import { extension, opensslExtensions } from './openssl.ts'

const now = new Date('2030-01-01T00:00:00.000Z')

describe('generateCertificateAuthority', () => {
  let ca: CertificateAndKey
  let x509: X509Certificate
  beforeAll(async () => {
    ca = await generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 3650, now })
    x509 = new X509Certificate(ca.certPem)
  })

  it('is a self-signed CA named like kubeadm names it', () => {
    expect(x509.ca).toBe(true)
    expect(x509.subject).toBe('CN=kubernetes')
    expect(x509.issuer).toBe('CN=kubernetes')
    expect(x509.checkIssued(x509)).toBe(true)
    expect(x509.verify(x509.publicKey)).toBe(true)
  })

  it('holds an ECDSA P-256 key that belongs to the certificate', () => {
    const key = createPrivateKey(ca.keyPem)
    expect(key.asymmetricKeyType).toBe('ec')
    expect(key.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(x509.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    // ecdsa-with-SHA256 (1.2.840.10045.4.3.2), in the TBSCertificate and the outer signatureAlgorithm.
    const oid = Buffer.from('06082a8648ce3d040302', 'hex')
    expect(x509.raw.indexOf(oid)).not.toBe(x509.raw.lastIndexOf(oid))
    expect(x509.checkPrivateKey(key)).toBe(true)
  })

  it('is valid from a minute before now for validityDays', () => {
    expect(new Date(x509.validFrom).toISOString()).toBe('2029-12-31T23:59:00.000Z')
    expect(new Date(x509.validTo).toISOString()).toBe('2039-12-30T00:00:00.000Z')
  })

  it('has a random positive 128-bit serial', async () => {
    const other = new X509Certificate(
      (await generateCertificateAuthority({ purpose: 'front-proxy-ca', validityDays: 1 })).certPem,
    )
    for (const serial of [x509.serialNumber, other.serialNumber]) {
      expect(serial).toMatch(/^[0-9A-F]{32}$/)
      expect(Number.parseInt(serial.slice(0, 2), 16)).toBeLessThan(0x80)
    }
    expect(other.serialNumber).not.toBe(x509.serialNumber)
    expect(other.subject).toBe('CN=front-proxy-ca')
  })

  it('marks basicConstraints and keyUsage critical and carries a subject key identifier', () => {
    const text = opensslExtensions(ca.certPem)
    expect(extension(text, 'Basic Constraints')).toEqual({ critical: true, value: 'CA:TRUE' })
    expect(extension(text, 'Key Usage')).toEqual({
      critical: true,
      value: 'Digital Signature, Certificate Sign, CRL Sign',
    })
    expect(extension(text, 'Subject Key Identifier')?.value).toMatch(/^([0-9A-F]{2}:){19}[0-9A-F]{2}$/)
    // Self-signed: nothing to point at.
    expect(extension(text, 'Authority Key Identifier')).toBeUndefined()
  })

  it('takes a common name', async () => {
    const etcd = await generateCertificateAuthority({
      purpose: 'etcd-ca',
      commonName: 'etcd-ca-2',
      validityDays: 1,
    })
    expect(new X509Certificate(etcd.certPem).subject).toBe('CN=etcd-ca-2')
  })

  it('refuses a purpose that is not a CA and a validity that is not a positive number of days', async () => {
    await expect(
      generateCertificateAuthority({ purpose: 'admin' as 'cluster-ca', validityDays: 1 }),
    ).rejects.toMatchObject({ code: PkiErrorCode.invalidRequest })
    await expect(
      generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 0 }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.invalidRequest,
    })
    await expect(
      generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 1.5 }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.invalidRequest,
    })
  })
})
