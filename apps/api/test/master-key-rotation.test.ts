import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  firstSealedKeyPosition,
  insertClusterSecretIfAbsent,
  replaceSealedKeys,
  sealedKeysNotUnder,
} from '../../../packages/db/src/index.ts'
import {
  type MasterKey,
  materialFromRecord,
  openCertificate,
  parseMasterKey,
  recordFromMaterial,
  sealMaterial,
} from '../../../packages/pki/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'
import { buildApp, type KilnApp } from '../src/app.ts'
import { rotateMasterKeys, UnopenableKeysError } from '../src/master-key-rotation.ts'
import { createClusterOk, expectProblem } from './helpers.ts'

// Master-key rotation against the real PostgreSQL: every sealed key re-wrapped with the newest key,
// a keyring missing a key refused before anything is written, and rows that change meanwhile kept.
// The end-to-end rotation (real worker, kubectl, CSR) is test/master-key-rotation.test.ts.

const newKey = () => parseMasterKey(randomBytes(32).toString('base64'))
const [keyA, keyB, keyC] = [newKey(), newKey(), newKey()]

let api: TestApi
let clusterIds: string[]

/** Seals a stand-in CA (the envelope does not care what the PEM holds) for each cluster and purpose. */
async function seal(key: MasterKey, clusterId: string, purpose: 'cluster-ca' | 'etcd-ca') {
  const material = sealMaterial(
    clusterId,
    purpose,
    { certPem: `cert ${purpose}`, keyPem: `key ${clusterId} ${purpose}` },
    key,
  )
  await insertClusterSecretIfAbsent(api.db, clusterId, purpose, recordFromMaterial(material))
}

const rows = () =>
  api.db.clusterSecret.findMany({
    orderBy: [{ clusterId: 'asc' }, { purpose: 'asc' }, { generation: 'asc' }],
  })

/** Opens every stored key with `keyring` and checks it is the key sealed for it. */
async function expectAllOpenWith(keyring: MasterKey[]) {
  for (const row of await rows()) {
    const opened = openCertificate(
      row.clusterId,
      row.purpose as 'cluster-ca',
      materialFromRecord({ kind: 'certificate', publicPem: row.publicPem, sealedKey: row.sealedKey }),
      keyring,
    )
    expect(opened.keyPem).toBe(`key ${row.clusterId} ${row.purpose}`)
  }
}

const kids = async () => (await rows()).map((row) => (row.sealedKey as { kid: string }).kid)

beforeAll(async () => {
  api = await startTestApi()
  await aDataCentre(api.db)
  clusterIds = []
  for (const name of ['r1', 'r2', 'r3']) {
    clusterIds.push((await createClusterOk(api.app, 'team-a', name)).resource.id)
  }
})

afterAll(async () => {
  await api?.close()
})

beforeEach(async () => {
  await api.db.clusterSecret.deleteMany()
})

describe('rotateMasterKeys', () => {
  it('re-wraps every key on an older key with the newest, and a second run finds nothing to do', async () => {
    for (const id of clusterIds) {
      await seal(keyA, id, 'cluster-ca')
      await seal(keyA, id, 'etcd-ca')
    }
    // One cluster's etcd CA was sealed after some process already ran with B first.
    await api.db.clusterSecret.deleteMany({ where: { clusterId: clusterIds[2]!, purpose: 'etcd-ca' } })
    await seal(keyB, clusterIds[2]!, 'etcd-ca')

    const first = await rotateMasterKeys(api.db, [keyB, keyA], { batchSize: 2 })
    expect(first).toEqual({
      keyId: keyB.kid,
      keyIds: [keyB.kid, keyA.kid],
      resealed: 5,
      alreadyCurrent: 1,
      remaining: 0,
      total: 6,
    })
    expect(new Set(await kids())).toEqual(new Set([keyB.kid]))
    // B alone opens every key now: A can be removed from KILN_MASTER_KEYS.
    await expectAllOpenWith([keyB])

    const before = await rows()
    const second = await rotateMasterKeys(api.db, [keyB, keyA])
    expect(second).toMatchObject({ resealed: 0, alreadyCurrent: 6, remaining: 0, total: 6 })
    expect(await rows()).toEqual(before)
  })

  it('refuses, changing nothing, when a key was sealed with a master key the keyring lacks', async () => {
    await seal(keyA, clusterIds[0]!, 'cluster-ca')
    await seal(keyC, clusterIds[1]!, 'cluster-ca')
    await seal(keyA, clusterIds[2]!, 'cluster-ca')
    const before = await rows()

    const refusal = await rotateMasterKeys(api.db, [keyB, keyA], { batchSize: 1 }).catch((e: unknown) => e)
    expect(refusal).toBeInstanceOf(UnopenableKeysError)
    const error = refusal as UnopenableKeysError
    expect(error.resealed).toBe(0)
    expect(error.unopenable).toEqual([
      expect.objectContaining({
        clusterId: clusterIds[1],
        purpose: 'cluster-ca',
        generation: 1,
        keyId: keyC.kid,
      }),
    ])
    expect(error.message).toContain('Nothing was re-sealed')
    // Not even the keys A opens (sorted before and after the one C sealed) were touched.
    expect(await rows()).toEqual(before)
  })

  it('refuses a sealed key whose wrapped data key does not authenticate, even with a known key id', async () => {
    await seal(keyA, clusterIds[0]!, 'cluster-ca')
    const [row] = await rows()
    const sealed = row!.sealedKey as Record<string, string>
    const tag = Buffer.from(sealed.wrapTag!, 'base64')
    tag[0]! ^= 1
    await api.db.clusterSecret.updateMany({
      data: { sealedKey: { ...sealed, wrapTag: tag.toString('base64') } },
    })
    const before = await rows()
    await expect(rotateMasterKeys(api.db, [keyB, keyA])).rejects.toBeInstanceOf(UnopenableKeysError)
    expect(await rows()).toEqual(before)
  })

  it('leaves a row alone that changed between the read and the write (compare-and-set)', async () => {
    await seal(keyA, clusterIds[0]!, 'cluster-ca')
    const [stale] = await sealedKeysNotUnder(api.db, keyB.kid, firstSealedKeyPosition, 10)
    // Meanwhile the row is sealed anew (here with C, as another rotation or a re-issue would).
    await api.db.clusterSecret.deleteMany()
    await seal(keyC, clusterIds[0]!, 'cluster-ca')
    const changed = await replaceSealedKeys(api.db, [{ row: stale!, sealedKey: { v: 1, kid: 'lost-write' } }])
    expect(changed).toBe(0)
    expect(await kids()).toEqual([keyC.kid])
  })

  it('keeps every key that processes on the old keyring seal while it runs', async () => {
    for (const id of clusterIds) await seal(keyA, id, 'cluster-ca')
    // A worker still on A alone seals new keys while the rotation walks the table one row at a time.
    let sealing = true
    const sealer = (async () => {
      let n = 0
      while (sealing && n < clusterIds.length) {
        await seal(keyA, clusterIds[n++]!, 'etcd-ca')
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    })()
    const result = await rotateMasterKeys(api.db, [keyB, keyA], { batchSize: 1 })
    sealing = false
    await sealer
    const stored = await kids()
    // Nothing is lost: every stored key opens with the keyring. `remaining` counts the keys still on A
    // when the last pass ended; a seal in flight as the rotation returned may add one after it.
    await expectAllOpenWith([keyB, keyA])
    const onA = stored.filter((kid) => kid === keyA.kid).length
    expect(result.remaining).toBeLessThanOrEqual(onA)
    expect(result.remaining).toBeGreaterThanOrEqual(onA - 1)
    const again = await rotateMasterKeys(api.db, [keyB, keyA])
    expect(again.resealed).toBe(onA)
    expect(again.remaining).toBe(0)
    expect(again.total).toBe(stored.length)
    await expectAllOpenWith([keyB])
  })
})

describe('POST /v1/master-key-rotations', () => {
  let rotating: KilnApp
  beforeAll(async () => {
    // The API restarted with KILN_MASTER_KEYS=B,A.
    rotating = await buildApp({ db: api.db, redis: api.redis, masterKey: [keyB, keyA] })
  })
  afterAll(async () => {
    await rotating?.close()
  })

  it('answers what it did and audits it', async () => {
    await seal(keyA, clusterIds[0]!, 'cluster-ca')
    await seal(keyB, clusterIds[1]!, 'cluster-ca')
    const res = await rotating.inject({ method: 'POST', url: '/v1/master-key-rotations' })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.json()).toEqual({
      keyId: keyB.kid,
      keyIds: [keyB.kid, keyA.kid],
      resealed: 1,
      alreadyCurrent: 1,
      remaining: 0,
      total: 2,
    })
    const audit = await api.db.auditEvent.findFirst({
      where: { action: 'master-key.rotate' },
      orderBy: { id: 'desc' },
    })
    expect(audit).toMatchObject({ targetKind: 'master-key', targetId: keyB.kid, projectId: null })
    expect(audit?.data).toMatchObject({ resealed: 1, alreadyCurrent: 1 })
  })

  it('refuses with master-key-missing (409) when a key needs a master key that is not configured', async () => {
    await seal(keyC, clusterIds[0]!, 'cluster-ca')
    const res = await rotating.inject({ method: 'POST', url: '/v1/master-key-rotations' })
    const problem = expectProblem(res, 409)
    expect(problem.type).toBe('https://kiln.dev/problems/master-key-missing')
    expect((problem as unknown as { unopenable: unknown[] }).unopenable).toEqual([
      { clusterId: clusterIds[0], purpose: 'cluster-ca', generation: 1, keyId: keyC.kid },
    ])
    expect(await kids()).toEqual([keyC.kid])
    expect(await api.db.auditEvent.count({ where: { action: 'master-key.rotate.refused' } })).toBe(1)
  })
})
