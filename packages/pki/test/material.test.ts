import { randomBytes } from 'node:crypto'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  generateCertificateAuthority,
  generateServiceAccountKeyPair,
  type KeyPair,
  lookupOrGenerate,
  type MasterKey,
  openCertificate,
  openKeyPair,
  PkiErrorCode,
  type PkiStore,
  type Purpose,
  parseMasterKey,
  type StoredMaterial,
  sealMaterial,
} from '../src/index.ts'

/** The PkiStore seam, in memory; every call yields first, so concurrent callers interleave as they would on a database. */
class MemoryPkiStore implements PkiStore {
  readonly entries = new Map<string, StoredMaterial>()
  /** Runs between a caller's get and its insert: another process winning the race. */
  beforeInsert: (() => void) | undefined

  async get(clusterId: string, purpose: Purpose) {
    await nextTurn()
    return this.entries.get(`${clusterId}/${purpose}`)
  }

  async insertIfAbsent(clusterId: string, purpose: Purpose, material: StoredMaterial) {
    await nextTurn()
    this.beforeInsert?.()
    const key = `${clusterId}/${purpose}`
    if (!this.entries.has(key)) this.entries.set(key, material)
    return this.entries.get(key)!
  }
}

let masterKey: MasterKey
let serviceAccount: KeyPair
beforeAll(async () => {
  masterKey = parseMasterKey(randomBytes(32).toString('base64'))
  serviceAccount = await generateServiceAccountKeyPair()
})

const fakeCertificate = (label: string): StoredMaterial =>
  sealMaterial('c1', 'cluster-ca', { certPem: `cert ${label}`, keyPem: `key ${label}` }, masterKey)

describe('lookupOrGenerate', () => {
  it('generates once, then returns what is stored', async () => {
    const store = new MemoryPkiStore()
    let generated = 0
    const generate = () => {
      generated++
      return fakeCertificate(String(generated))
    }
    const first = await lookupOrGenerate(store, 'c1', 'cluster-ca', generate)
    const second = await lookupOrGenerate(store, 'c1', 'cluster-ca', generate)
    expect(generated).toBe(1)
    expect(second).toEqual(first)
    expect(store.entries.size).toBe(1)
  })

  it('gives two racing callers the same CA, and stores one', async () => {
    const store = new MemoryPkiStore()
    let generated = 0
    const generate = async () => {
      generated++
      const ca = await generateCertificateAuthority({ purpose: 'cluster-ca', validityDays: 1 })
      return sealMaterial('c1', 'cluster-ca', ca, masterKey)
    }
    const [a, b] = await Promise.all([
      lookupOrGenerate(store, 'c1', 'cluster-ca', generate),
      lookupOrGenerate(store, 'c1', 'cluster-ca', generate),
    ])
    expect(generated).toBeGreaterThanOrEqual(1)
    expect(generated).toBeLessThanOrEqual(2)
    expect(store.entries.size).toBe(1)
    const caA = openCertificate('c1', 'cluster-ca', a, masterKey)
    const caB = openCertificate('c1', 'cluster-ca', b, masterKey)
    expect(caB).toEqual(caA)
    expect(caA.keyPem).toMatch(/PRIVATE KEY/)
  })

  it('returns the stored winner to every one of many racing callers', async () => {
    const store = new MemoryPkiStore()
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        lookupOrGenerate(store, 'c1', 'cluster-ca', () => fakeCertificate(`${i}`)),
      ),
    )
    expect(store.entries.size).toBe(1)
    const stored = store.entries.get('c1/cluster-ca')
    for (const result of results) expect(result).toBe(stored)
  })

  it("returns another process's material when it inserts first", async () => {
    const store = new MemoryPkiStore()
    const theirs = fakeCertificate('theirs')
    store.beforeInsert = () => store.entries.set('c1/cluster-ca', theirs)
    const result = await lookupOrGenerate(store, 'c1', 'cluster-ca', () => fakeCertificate('ours'))
    expect(result).toBe(theirs)
  })

  it('keeps purposes and clusters apart', async () => {
    const store = new MemoryPkiStore()
    await lookupOrGenerate(store, 'c1', 'cluster-ca', () => fakeCertificate('a'))
    await lookupOrGenerate(store, 'c1', 'etcd-ca', () =>
      sealMaterial('c1', 'etcd-ca', { certPem: 'etcd', keyPem: 'k' }, masterKey),
    )
    await lookupOrGenerate(store, 'c2', 'cluster-ca', () =>
      sealMaterial('c2', 'cluster-ca', { certPem: 'c2', keyPem: 'k' }, masterKey),
    )
    expect([...store.entries.keys()].sort()).toEqual(['c1/cluster-ca', 'c1/etcd-ca', 'c2/cluster-ca'])
  })

  it('refuses material of the wrong kind for the purpose and stores nothing', async () => {
    const store = new MemoryPkiStore()
    const keyPair = sealMaterial('c1', 'service-account', serviceAccount, masterKey)
    await expect(lookupOrGenerate(store, 'c1', 'cluster-ca', () => keyPair)).rejects.toMatchObject({
      code: PkiErrorCode.materialKindMismatch,
    })
    expect(store.entries.size).toBe(0)
  })
})

describe('sealMaterial, openCertificate and openKeyPair', () => {
  it('keeps public parts in clear and the private key sealed', () => {
    const stored = sealMaterial('c1', 'service-account', serviceAccount, masterKey)
    expect(stored.kind).toBe('key-pair')
    expect(JSON.stringify(stored)).toContain(JSON.stringify(serviceAccount.publicKeyPem).slice(1, 40))
    expect(JSON.stringify(stored)).not.toContain('PRIVATE KEY')
    expect(openKeyPair('c1', 'service-account', stored, masterKey)).toEqual(serviceAccount)
  })

  it('binds the sealed key to its cluster and purpose', () => {
    const stored = sealMaterial('c1', 'service-account', serviceAccount, masterKey)
    expect(() => openKeyPair('c2', 'service-account', stored, masterKey)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
    )
    const admin = sealMaterial('c1', 'admin', { certPem: 'cert', keyPem: 'key' }, masterKey)
    expect(() => openCertificate('c1', 'cluster-ca', admin, masterKey)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
    )
  })

  it('refuses to open or seal the wrong kind', () => {
    const stored = sealMaterial('c1', 'service-account', serviceAccount, masterKey)
    expect(() => openCertificate('c1', 'service-account', stored, masterKey)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.materialKindMismatch }),
    )
    expect(() => sealMaterial('c1', 'cluster-ca', serviceAccount, masterKey)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.materialKindMismatch }),
    )
  })
})
