import { type Database, getClusterSecret, insertClusterSecretIfAbsent } from '@kiln/db'
import {
  certificateAuthorityPurposes,
  generateCertificateAuthority,
  generateServiceAccountKeyPair,
  lookupOrGenerate,
  type MasterKey,
  materialFromRecord,
  type PkiStore,
  Purpose,
  recordFromMaterial,
  sealMaterial,
} from '@kiln/pki'

/** The PKI store over the cluster secrets table: sealed keys only ever reach the database. */
export function clusterSecretStore(db: Database): PkiStore {
  return {
    async get(clusterId, purpose) {
      const record = await getClusterSecret(db, clusterId, purpose)
      return record && materialFromRecord(record)
    },
    async insertIfAbsent(clusterId, purpose, material) {
      return materialFromRecord(
        await insertClusterSecretIfAbsent(db, clusterId, purpose, recordFromMaterial(material)),
      )
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
