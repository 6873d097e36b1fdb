import { execFileSync } from 'node:child_process'
import { createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import forge from 'node-forge'
import { beforeAll, describe, expect, it } from 'vitest'
import { type CertificateAndKey, generateCertificateAuthority, PkiErrorCode, signCsr } from '../src/index.ts'

const clientAuth = '1.3.6.1.5.5.7.3.2'

/** The PEM key pair a requester would hold (node generates it; forge only builds the CSR). */
const rsaKeyPair = (modulusLength = 2048) =>
  generateKeyPairSync('rsa', {
    modulusLength,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })

function makeCsr(options: {
  subject: { name: string; value: string }[]
  extensions?: object[]
  keys?: { publicKey: string; privateKey: string }
}): { csrPem: string; publicKeyPem: string } {
  const keys = options.keys ?? rsaKeyPair()
  const csr = forge.pki.createCertificationRequest()
  csr.publicKey = forge.pki.publicKeyFromPem(keys.publicKey)
  csr.setSubject(options.subject)
  if (options.extensions) csr.setAttributes([{ name: 'extensionRequest', extensions: options.extensions }])
  csr.sign(forge.pki.privateKeyFromPem(keys.privateKey) as forge.pki.rsa.PrivateKey, forge.md.sha256.create())
  return { csrPem: forge.pki.certificationRequestToPem(csr), publicKeyPem: keys.publicKey }
}

const spki = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' })

let ca: CertificateAndKey
let keys: { publicKey: string; privateKey: string }
beforeAll(async () => {
  ca = await generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 })
  keys = rsaKeyPair()
})

describe('signCsr', () => {
  it("certifies the CSR's key for its common name and organizations", () => {
    const { csrPem, publicKeyPem } = makeCsr({
      keys,
      subject: [
        { name: 'commonName', value: 'bob' },
        { name: 'organizationName', value: 'dev' },
        { name: 'organizationName', value: 'ops' },
        { name: 'organizationalUnitName', value: 'dropped' },
      ],
    })
    const signed = signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 3600 })
    const cert = new X509Certificate(signed.certPem)
    const caCert = new X509Certificate(ca.certPem)
    expect(cert.verify(caCert.publicKey)).toBe(true)
    expect(cert.checkIssued(caCert)).toBe(true)
    expect(cert.subject).toBe('O=dev\nO=ops\nCN=bob')
    expect(spki(cert.publicKey.export({ type: 'spki', format: 'pem' }).toString())).toEqual(
      spki(publicKeyPem),
    )
    expect(cert.keyUsage).toEqual([clientAuth])
    expect(cert.ca).toBe(false)
    expect(signed.notAfter.getTime()).toBe(new Date(cert.validTo).getTime())
  })

  it('ignores the extensions a CSR asks for: usages and names are the signer’s decision', () => {
    const { csrPem } = makeCsr({
      keys,
      subject: [{ name: 'commonName', value: 'bob' }],
      extensions: [
        { name: 'subjectAltName', altNames: [{ type: 2, value: 'evil.example' }] },
        { name: 'extKeyUsage', serverAuth: true, codeSigning: true },
      ],
    })
    const cert = new X509Certificate(signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 }).certPem)
    expect(cert.subjectAltName).toBeUndefined()
    expect(cert.keyUsage).toEqual([clientAuth])
  })

  it("puts the caller's SANs on a server certificate", () => {
    const { csrPem } = makeCsr({ keys, subject: [{ name: 'commonName', value: 'etcd-0' }] })
    const cert = new X509Certificate(
      signCsr({
        ca,
        csrPem,
        usage: 'server',
        dnsNames: ['etcd-0.local'],
        ipAddresses: ['10.0.0.5'],
        ttlSeconds: 60,
      }).certPem,
    )
    expect(cert.subjectAltName).toBe('DNS:etcd-0.local, IP Address:10.0.0.5')
  })

  it('grants groups only from allowedGroups when it is given', () => {
    const { csrPem } = makeCsr({
      keys,
      subject: [
        { name: 'commonName', value: 'bob' },
        { name: 'organizationName', value: 'dev' },
        { name: 'organizationName', value: 'system:masters' },
      ],
    })
    expect(() => signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60, allowedGroups: ['dev'] })).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.csrRefused,
        message: expect.stringMatching(/system:masters/),
      }),
    )
    expect(
      new X509Certificate(
        signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60, allowedGroups: ['dev', 'system:masters'] })
          .certPem,
      ).subject,
    ).toBe('O=dev\nO=system:masters\nCN=bob')
  })

  it('refuses a CSR whose signature does not verify', () => {
    const { csrPem } = makeCsr({ keys, subject: [{ name: 'commonName', value: 'bob' }] })
    const der = Buffer.from(csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')
    der[der.length - 1]! ^= 0x01
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`
    expect(() => signCsr({ ca, csrPem: tampered, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.csrInvalid,
        message: expect.stringMatching(/does not verify/),
      }),
    )
  })

  it("refuses a CSR carrying another request's signature", () => {
    const bobsRequest = makeCsr({ keys, subject: [{ name: 'commonName', value: 'bob' }] })
    const otherRequest = makeCsr({ keys: rsaKeyPair(), subject: [{ name: 'commonName', value: 'root' }] })
    const bob = forge.pki.certificationRequestFromPem(bobsRequest.csrPem)
    bob.signature = forge.pki.certificationRequestFromPem(otherRequest.csrPem).signature
    const forged = forge.pki.certificationRequestToPem(bob)
    expect(() => signCsr({ ca, csrPem: forged, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrInvalid }),
    )
  })

  it('refuses a CSR that asks to be a CA', () => {
    const { csrPem } = makeCsr({
      keys,
      subject: [{ name: 'commonName', value: 'sub-ca' }],
      extensions: [{ name: 'basicConstraints', cA: true }],
    })
    expect(() => signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/CA/) }),
    )
  })

  it('refuses a weak key and a subject without exactly one common name', () => {
    const weak = makeCsr({ keys: rsaKeyPair(1024), subject: [{ name: 'commonName', value: 'bob' }] })
    expect(() => signCsr({ ca, csrPem: weak.csrPem, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/1024 bits/) }),
    )
    const anonymous = makeCsr({ keys, subject: [{ name: 'organizationName', value: 'dev' }] })
    expect(() => signCsr({ ca, csrPem: anonymous.csrPem, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused }),
    )
  })

  it('refuses what is not a CSR', () => {
    expect(() => signCsr({ ca, csrPem: ca.certPem, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrInvalid }),
    )
    expect(() => signCsr({ ca, csrPem: 'garbage', usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrInvalid }),
    )
  })
})

describe('signCsr with CSRs made by OpenSSL', () => {
  const opensslCsr = (keyAlgorithm: string[], subject: string) =>
    execFileSync(
      'openssl',
      ['req', '-new', ...keyAlgorithm, '-nodes', '-keyout', '/dev/null', '-utf8', '-subj', subject],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    )

  it('signs an RSA CSR', () => {
    const csrPem = opensslCsr(['-newkey', 'rsa:2048'], '/O=qa/CN=carol@example.com')
    const cert = new X509Certificate(signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 }).certPem)
    expect(cert.subject).toBe('O=qa\nCN=carol@example.com')
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true)
  })

  it.each([
    ['P-256', 'prime256v1'],
    ['P-384', 'secp384r1'],
  ])('signs an ECDSA %s CSR for its own key', (_name, curve) => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-csr-'))
    const keyFile = join(dir, 'key.pem')
    const csrPem = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        `ec_paramgen_curve:${curve}`,
        '-nodes',
        '-keyout',
        keyFile,
      ].concat(['-utf8', '-subj', '/O=dev/O=ops/CN=dave']),
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
    )
    const key = readFileSync(keyFile, 'utf8')
    rmSync(dir, { recursive: true })
    const signed = signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 })
    const cert = new X509Certificate(signed.certPem)
    const caCert = new X509Certificate(ca.certPem)
    expect(cert.verify(caCert.publicKey)).toBe(true)
    expect(cert.checkIssued(caCert)).toBe(true)
    expect(cert.subject).toBe('O=dev\nO=ops\nCN=dave')
    expect(signed).toMatchObject({ commonName: 'dave', organizations: ['dev', 'ops'] })
    expect(spki(cert.publicKey.export({ type: 'spki', format: 'pem' }).toString())).toEqual(
      createPublicKey(key).export({ type: 'spki', format: 'der' }),
    )
    expect(cert.keyUsage).toEqual([clientAuth])
  })

  it('keeps UTF-8 names intact', () => {
    const csrPem = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/O=équipe/CN=zoë')
    const signed = signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 })
    expect(signed).toMatchObject({ commonName: 'zoë', organizations: ['équipe'] })
  })

  it('refuses keys and algorithms it does not sign, naming them', () => {
    const ed25519 = opensslCsr(['-newkey', 'ed25519'], '/CN=erin')
    expect(() => signCsr({ ca, csrPem: ed25519, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/ed25519/) }),
    )
    const p521 = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-521'], '/CN=erin')
    expect(() => signCsr({ ca, csrPem: p521, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/secp521r1/) }),
    )
    const sha1 = opensslCsr(['-newkey', 'rsa:2048', '-sha1'], '/CN=erin')
    expect(() => signCsr({ ca, csrPem: sha1, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/algorithm/) }),
    )
  })

  it('refuses a system: user when told to, and only then', () => {
    const csrPem = opensslCsr(
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      '/CN=system:kube-scheduler',
    )
    expect(() => signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60, allowSystemUsers: false })).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.csrRefused,
        message: expect.stringMatching(/system:kube-scheduler/),
      }),
    )
    expect(signCsr({ ca, csrPem, usage: 'client', ttlSeconds: 60 }).commonName).toBe('system:kube-scheduler')
  })

  it('refuses a truncated or re-labelled request as unreadable', () => {
    const csrPem = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=frank')
    const body = csrPem.replace(/-----[A-Z ]+-----|\s/g, '')
    const truncated = `-----BEGIN CERTIFICATE REQUEST-----\n${body.slice(0, body.length - 8)}\n-----END CERTIFICATE REQUEST-----\n`
    expect(() => signCsr({ ca, csrPem: truncated, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({ code: PkiErrorCode.csrInvalid }),
    )
    const twoBlocks = `${csrPem}${csrPem}`
    expect(() => signCsr({ ca, csrPem: twoBlocks, usage: 'client', ttlSeconds: 60 })).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.csrInvalid,
        message: expect.stringMatching(/exactly one/),
      }),
    )
  })
})
