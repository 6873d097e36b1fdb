import { execFileSync } from 'node:child_process'
import { randomBytes, randomUUID, X509Certificate } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  type AuthorityRecord,
  type AuthorityStore,
  authorityRole,
  type CertificateAndKey,
  clusterTrust,
  generateCertificateAuthority,
  issueClusterClientCertificate,
  openAuthority,
  PkiErrorCode,
  parseMasterKey,
  recordFromMaterial,
  sealMaterial,
} from '../src/index.ts'

// The one rule for which cluster CA does what while it rotates, and the one issuance function
// every credential goes through. The store is the AuthorityStore interface packages/db implements;
// here an array stands in for the table.

const masterKey = parseMasterKey(randomBytes(32).toString('base64'))
const clusterId = randomUUID()

const records: AuthorityRecord[] = []
const store: AuthorityStore = {
  async authorityGenerations(id, purpose) {
    return id === clusterId && purpose === 'cluster-ca' ? [...records].reverse() : []
  },
}

let generation1: CertificateAndKey
let generation2: CertificateAndKey
const stored = (ca: CertificateAndKey, generation: number): AuthorityRecord => ({
  ...recordFromMaterial(sealMaterial(clusterId, 'cluster-ca', ca, masterKey, generation)),
  generation,
})

beforeAll(async () => {
  generation1 = await generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 })
  generation2 = await generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 30 })
})

const issuedBy = (certPem: string, ca: CertificateAndKey) => {
  const cert = new X509Certificate(certPem)
  const caCert = new X509Certificate(ca.certPem)
  return cert.checkIssued(caCert) && cert.verify(caCert.publicKey)
}

const bundleOf = (pem: string) =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []

describe('clusterTrust', () => {
  it('has nothing to say about a cluster without a CA', () => {
    expect(clusterTrust([])).toBeUndefined()
  })

  it('while rotating: trusts both, the newest signs credentials, the oldest serves', () => {
    const g1 = stored(generation1, 1)
    const g2 = stored(generation2, 2)
    const trust = clusterTrust([g2, g1])!
    expect(trust.rotating).toBe(true)
    expect(trust.current.generation).toBe(2)
    expect(trust.serving.generation).toBe(1)
    expect(trust.generations.map((g) => g.generation)).toEqual([1, 2])
    expect(bundleOf(trust.caBundlePem)).toEqual([generation1.certPem.trim(), generation2.certPem.trim()])
    expect(authorityRole(trust, 2)).toBe('current')
    expect(authorityRole(trust, 1)).toBe('previous')
  })

  it('with one CA: it does everything', () => {
    const trust = clusterTrust([stored(generation2, 2)])!
    expect(trust.rotating).toBe(false)
    expect(trust.current.generation).toBe(2)
    expect(trust.serving.generation).toBe(2)
    expect(bundleOf(trust.caBundlePem)).toHaveLength(1)
  })
})

describe('sealing per generation', () => {
  it('binds a sealed key to its generation: a key moved to another generation does not open', () => {
    const g2 = stored(generation2, 2)
    expect(openAuthority(clusterId, 'cluster-ca', g2, masterKey).keyPem).toBe(generation2.keyPem)
    expect(() => openAuthority(clusterId, 'cluster-ca', { ...g2, generation: 1 }, masterKey)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
    )
  })
})

describe('issueClusterClientCertificate', () => {
  it('answers ca-missing for a cluster without a CA', async () => {
    records.length = 0
    await expect(
      issueClusterClientCertificate(store, masterKey, clusterId, {
        commonName: 'alice',
        groups: [],
        ttlSeconds: 60,
      }),
    ).rejects.toMatchObject({ code: PkiErrorCode.caMissing })
  })

  it('signs with the only CA, then with the new one once a rotation started; the bundle follows', async () => {
    records.length = 0
    records.push(stored(generation1, 1))
    const before = await issueClusterClientCertificate(store, masterKey, clusterId, {
      commonName: 'user:alice',
      groups: ['system:masters'],
      ttlSeconds: 3600,
    })
    expect(issuedBy(before.certPem, generation1)).toBe(true)
    expect(before).toMatchObject({ username: 'user:alice', groups: ['system:masters'], generation: 1 })
    expect(bundleOf(before.caBundlePem)).toHaveLength(1)
    expect(before.keyPem).toMatch(/-----BEGIN PRIVATE KEY-----/)
    expect(before.serialNumber).toBe(new X509Certificate(before.certPem).serialNumber.toLowerCase())

    records.push(stored(generation2, 2))
    const during = await issueClusterClientCertificate(store, masterKey, clusterId, {
      commonName: 'user:alice',
      groups: ['system:masters'],
      ttlSeconds: 3600,
    })
    expect(issuedBy(during.certPem, generation2)).toBe(true)
    expect(issuedBy(during.certPem, generation1)).toBe(false)
    expect(during.generation).toBe(2)
    expect(bundleOf(during.caBundlePem)).toEqual([generation1.certPem.trim(), generation2.certPem.trim()])
  })

  it('signs a CSR with the current CA, granting only allowed groups and no system: user by default', async () => {
    records.length = 0
    records.push(stored(generation1, 1), stored(generation2, 2))
    const csr = (subject: string) =>
      execFileSync(
        'openssl',
        ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'].concat([
          '-keyout',
          '/dev/null',
          '-subj',
          subject,
        ]),
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
      )
    const signed = await issueClusterClientCertificate(store, masterKey, clusterId, {
      csrPem: csr('/O=system:masters/CN=ci-bot'),
      allowedGroups: ['system:masters'],
      ttlSeconds: 600,
    })
    expect(issuedBy(signed.certPem, generation2)).toBe(true)
    expect(signed).toMatchObject({ username: 'ci-bot', groups: ['system:masters'], generation: 2 })
    expect('keyPem' in signed).toBe(false)

    // A caller whose role grants no group (what a non-admin gets from the kubeconfig route).
    await expect(
      issueClusterClientCertificate(store, masterKey, clusterId, {
        csrPem: csr('/O=system:masters/CN=mallory'),
        allowedGroups: [],
        ttlSeconds: 600,
      }),
    ).rejects.toMatchObject({
      code: PkiErrorCode.csrRefused,
      message: expect.stringMatching(/system:masters/),
    })
    await expect(
      issueClusterClientCertificate(store, masterKey, clusterId, {
        csrPem: csr('/CN=system:kube-controller-manager'),
        allowedGroups: [],
        ttlSeconds: 600,
      }),
    ).rejects.toMatchObject({ code: PkiErrorCode.csrRefused, message: expect.stringMatching(/system user/) })
  })
})
