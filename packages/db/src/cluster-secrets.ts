import type { Queryable } from './client.ts'
import type { Prisma } from './generated/prisma/client.ts'

/** A cluster's PKI material as stored: the public half in clear, the private key already sealed. */
export interface ClusterSecretRecord {
  kind: 'certificate' | 'key-pair'
  publicPem: string
  sealedKey: unknown
}

const toRecord = (row: { kind: string; publicPem: string; sealedKey: unknown }): ClusterSecretRecord => ({
  kind: row.kind as ClusterSecretRecord['kind'],
  publicPem: row.publicPem,
  sealedKey: row.sealedKey,
})

export async function getClusterSecret(
  db: Queryable,
  clusterId: string,
  purpose: string,
): Promise<ClusterSecretRecord | undefined> {
  const row = await db.clusterSecret.findUnique({ where: { clusterId_purpose: { clusterId, purpose } } })
  return row ? toRecord(row) : undefined
}

/**
 * Stores the material unless the cluster already has some for this purpose, and returns what is
 * stored afterwards: two racing workers end up with the same CA, never two.
 */
export async function insertClusterSecretIfAbsent(
  db: Queryable,
  clusterId: string,
  purpose: string,
  record: ClusterSecretRecord,
): Promise<ClusterSecretRecord> {
  await db.clusterSecret.createMany({
    data: [
      {
        clusterId,
        purpose,
        kind: record.kind,
        publicPem: record.publicPem,
        sealedKey: record.sealedKey as Prisma.InputJsonValue,
      },
    ],
    skipDuplicates: true,
  })
  return (await getClusterSecret(db, clusterId, purpose))!
}

/** The public halves only (certificates, public keys), by purpose. */
export async function listClusterCertificates(db: Queryable, clusterId: string) {
  return db.clusterSecret.findMany({
    where: { clusterId },
    select: { purpose: true, kind: true, publicPem: true, createdAt: true },
    orderBy: { purpose: 'asc' },
  })
}

export async function deleteClusterSecrets(db: Queryable, clusterId: string): Promise<number> {
  const { count } = await db.clusterSecret.deleteMany({ where: { clusterId } })
  return count
}
