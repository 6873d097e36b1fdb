import { createPublicKey, X509Certificate } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { clusterSecretStore, ensureClusterAuthorities } from '../../../apps/worker/src/cluster-pki.ts'
import { listClusterCertificates } from '../../../packages/db/src/index.ts'
import {
  generateCertificateAuthority,
  openCertificate,
  openKeyPair,
  Purpose,
  type StoredMaterial,
  sealMaterial,
} from '../../../packages/pki/src/index.ts'
import { type TestStack, testMasterKey } from '../../../test/support/engine.ts'
import {
  clusterUrl,
  createCluster,
  startOperation,
  startStackWithCluster,
  waitForOperation,
} from './support.ts'

// The issue-certificates step: a cluster's authorities are generated once, stored with their
// private keys sealed, readable only with the master key, and destroyed with the cluster.
let stack: TestStack
let clusterId: string

beforeAll(async () => {
  ;({ stack, clusterId } = await startStackWithCluster('pki'))
}, 60_000)
afterAll(async () => stack?.close())

const purposes = ['cluster-ca', 'etcd-ca', 'front-proxy-ca', 'service-account']

describe('cluster authorities', () => {
  it('issues the cluster, etcd and front-proxy CAs and the service-account key pair', async () => {
    const rows = await listClusterCertificates(stack.db, clusterId)
    expect(rows.map((r) => r.purpose).sort()).toEqual([...purposes].sort())
    for (const row of rows.filter((r) => r.kind === 'certificate')) {
      const cert = new X509Certificate(row.publicPem)
      expect(cert.ca, row.purpose).toBe(true)
      expect(cert.verify(cert.publicKey), `${row.purpose} is self-signed`).toBe(true)
    }
  })

  it('seals every private key: it opens only with the master key, and matches its public half', async () => {
    const store = clusterSecretStore(stack.db)
    for (const purpose of purposes) {
      const stored = (await store.get(clusterId, purpose as never)) as StoredMaterial
      if (stored.kind === 'certificate') {
        const { certPem, keyPem } = openCertificate(clusterId, purpose as never, stored, testMasterKey)
        const fromKey = createPublicKey(keyPem).export({ type: 'spki', format: 'pem' })
        expect(fromKey, purpose).toBe(
          new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'pem' }),
        )
      } else {
        const { publicKeyPem, privateKeyPem } = openKeyPair(
          clusterId,
          purpose as never,
          stored,
          testMasterKey,
        )
        expect(createPublicKey(privateKeyPem).export({ type: 'spki', format: 'pem' })).toBe(publicKeyPem)
      }
    }
  })

  it('is idempotent: running the step again generates nothing new', async () => {
    const before = await listClusterCertificates(stack.db, clusterId)
    await ensureClusterAuthorities(clusterSecretStore(stack.db), clusterId, testMasterKey)
    expect(await listClusterCertificates(stack.db, clusterId)).toEqual(before)
  })

  it('stores no private key in plaintext anywhere in the database', async () => {
    const tables = await stack.db.$queryRaw<{ schema: string; name: string }[]>`
      SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
      WHERE table_schema IN ('public', 'simulator') AND table_type = 'BASE TABLE'`
    expect(tables.length).toBeGreaterThan(5)
    let scanned = 0
    for (const { schema, name } of tables) {
      const rows = await stack.db.$queryRawUnsafe<{ row: string }[]>(
        `SELECT row_to_json(t)::text AS row FROM "${schema}"."${name}" t`,
      )
      scanned += rows.length
      for (const { row } of rows) expect(row, `${schema}.${name}`).not.toMatch(/PRIVATE KEY/)
    }
    // The scan saw the sealed keys: ciphertext, not PEM.
    expect(scanned).toBeGreaterThan(0)
    const sealed = await stack.db.clusterSecret.findMany({ where: { clusterId } })
    for (const s of sealed) expect(JSON.stringify(s.sealedKey)).toMatch(/"ciphertext"/)
  })

  it('destroys the authorities when the cluster is deleted', async () => {
    const op = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('pki'))).id,
    )
    expect(op.status).toBe('succeeded')
    expect(op.steps.find((s) => s.name === 'revoke-certificates')?.message).toMatch(
      /4 authorities and keys destroyed/,
    )
    expect(await stack.db.clusterSecret.count({ where: { clusterId } })).toBe(0)
  })
})

describe('GET …/clusters/{cluster}/ca', () => {
  it('serves the CA certificates by purpose, and no private key', async () => {
    const op = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name: 'ca-read', template: 'k8s-1.31' })).id,
    )
    expect(op.status).toBe('succeeded')
    const res = await stack.app.inject({ url: `${clusterUrl('ca-read')}/ca` })
    expect(res.statusCode, res.body).toBe(200)
    expect(res.body).not.toMatch(/PRIVATE KEY/)
    const { items } = res.json<{
      items: { purpose: string; certificatePem: string; subject: string; fingerprintSha256: string }[]
    }>()
    expect(items.map((i) => i.purpose).sort()).toEqual(['cluster-ca', 'etcd-ca', 'front-proxy-ca'])
    for (const item of items) {
      const cert = new X509Certificate(item.certificatePem)
      expect(cert.ca).toBe(true)
      expect(item.fingerprintSha256).toBe(cert.fingerprint256.replace(/:/g, '').toLowerCase())
    }
    expect(items.find((i) => i.purpose === 'cluster-ca')?.subject).toBe('CN=kubernetes')
  })

  it('answers 404 for a cluster that does not exist', async () => {
    expect((await stack.app.inject({ url: `${clusterUrl('nope')}/ca` })).statusCode).toBe(404)
  })
})

describe('two workers storing one cluster’s authority at once', () => {
  it('both get the one that was stored first, and it is stored once', async () => {
    // No engine: the create stays pending, and the two calls below are the only writers.
    await stack.stopEngine()
    const id = (await createCluster(stack.app, { name: 'pki-race', template: 'k8s-1.31' })).resource.id
    const generate = async () =>
      sealMaterial(
        id,
        Purpose.clusterCa,
        await generateCertificateAuthority({ purpose: Purpose.clusterCa, validityDays: 1 }),
        testMasterKey,
      )
    const [first, second] = await Promise.all([generate(), generate()])
    const store = clusterSecretStore(stack.db)
    const [a, b] = await Promise.all([
      store.insertIfAbsent(id, Purpose.clusterCa, first),
      store.insertIfAbsent(id, Purpose.clusterCa, second),
    ])
    expect(b).toEqual(a)
    expect([first, second]).toContainEqual(a)
    expect(await store.get(id, Purpose.clusterCa)).toEqual(a)
    const rows = await listClusterCertificates(stack.db, id)
    expect(rows.map((r) => r.purpose)).toEqual(['cluster-ca'])
  })
})
