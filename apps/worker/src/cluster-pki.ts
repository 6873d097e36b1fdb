import {
  type ClusterSecretRecord,
  type Database,
  getClusterSecret,
  insertClusterSecretIfAbsent,
} from '@kiln/db'
import {
  certificateAuthorityPurposes,
  generateCertificateAuthority,
  generateServiceAccountKeyPair,
  lookupOrGenerate,
  type MasterKey,
  type PkiStore,
  Purpose,
  type SealedPrivateKey,
  type StoredMaterial,
  sealMaterial,
} from '@kiln/pki'

const toMaterial = (record: ClusterSecretRecord): StoredMaterial =>
  record.kind === 'certificate'
    ? { kind: 'certificate', certPem: record.publicPem, sealedKey: record.sealedKey as SealedPrivateKey }
    : { kind: 'key-pair', publicKeyPem: record.publicPem, sealedKey: record.sealedKey as SealedPrivateKey }

const toRecord = (material: StoredMaterial): ClusterSecretRecord => ({
  kind: material.kind,
  publicPem: material.kind === 'certificate' ? material.certPem : material.publicKeyPem,
  sealedKey: material.sealedKey,
})

/** The PKI store over the cluster secrets table: sealed keys only ever reach the database. */
export function clusterSecretStore(db: Database): PkiStore {
  return {
    async get(clusterId, purpose) {
      const record = await getClusterSecret(db, clusterId, purpose)
      return record && toMaterial(record)
    },
    async insertIfAbsent(clusterId, purpose, material) {
      return toMaterial(await insertClusterSecretIfAbsent(db, clusterId, purpose, toRecord(material)))
    },
  }
}

/** Ten years, as kubeadm's CAs; leaf certificates are short-lived and re-issued. */
const caValidityDays = 3650

/**
 * Generates, once, every authority a cluster's control plane needs: the cluster, etcd and
 * front-proxy CAs and the service-account key pair. A retry finds them and generates nothing.
 */
export async function ensureClusterAuthorities(store: PkiStore, clusterId: string, masterKey: MasterKey) {
  for (const purpose of certificateAuthorityPurposes) {
    await lookupOrGenerate(store, clusterId, purpose, async () =>
      sealMaterial(
        clusterId,
        purpose,
        await generateCertificateAuthority({ purpose, validityDays: caValidityDays }),
        masterKey,
      ),
    )
  }
  await lookupOrGenerate(store, clusterId, Purpose.serviceAccount, async () =>
    sealMaterial(clusterId, Purpose.serviceAccount, await generateServiceAccountKeyPair(), masterKey),
  )
  return [...certificateAuthorityPurposes, Purpose.serviceAccount]
}
