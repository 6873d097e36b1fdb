import type { Database, Queryable } from './client.ts'
import type { Prisma } from './generated/prisma/client.ts'

/** A cluster's PKI material as stored: the public half in clear, the private key already sealed. */
export interface ClusterSecretRecord {
  kind: 'certificate' | 'key-pair'
  publicPem: string
  sealedKey: unknown
}

/** One generation of a purpose's material: CA rotation stores the next generation beside the current one. */
export interface ClusterSecretGeneration extends ClusterSecretRecord {
  generation: number
  createdAt: Date
}

const toRecord = (row: { kind: string; publicPem: string; sealedKey: unknown }): ClusterSecretRecord => ({
  kind: row.kind as ClusterSecretRecord['kind'],
  publicPem: row.publicPem,
  sealedKey: row.sealedKey,
})

/** The newest generation of a purpose's material (the only one, unless a CA rotation is under way). */
export async function getClusterSecret(
  db: Queryable,
  clusterId: string,
  purpose: string,
): Promise<ClusterSecretRecord | undefined> {
  const row = await db.clusterSecret.findFirst({
    where: { clusterId, purpose },
    orderBy: { generation: 'desc' },
  })
  return row ? toRecord(row) : undefined
}

/**
 * Stores the material unless the cluster already has some for this purpose and generation, and
 * returns what is stored afterwards: two racing workers end up with the same CA, never two.
 */
export async function insertClusterSecretIfAbsent(
  db: Queryable,
  clusterId: string,
  purpose: string,
  record: ClusterSecretRecord,
  generation = 1,
): Promise<ClusterSecretRecord> {
  // One round trip when this call wrote the row (the usual case); only a lost race reads it back.
  const [created] = await db.clusterSecret.createManyAndReturn({
    data: [
      {
        clusterId,
        purpose,
        generation,
        kind: record.kind,
        publicPem: record.publicPem,
        sealedKey: record.sealedKey as Prisma.InputJsonValue,
      },
    ],
    skipDuplicates: true,
  })
  if (created) return toRecord(created)
  const stored = await db.clusterSecret.findUniqueOrThrow({
    where: { clusterId_purpose_generation: { clusterId, purpose, generation } },
  })
  return toRecord(stored)
}

/** Every stored generation of a purpose's material, oldest first. */
export async function listClusterSecretGenerations(
  db: Queryable,
  clusterId: string,
  purpose: string,
): Promise<ClusterSecretGeneration[]> {
  const rows = await db.clusterSecret.findMany({
    where: { clusterId, purpose },
    orderBy: { generation: 'asc' },
  })
  return rows.map((row) => ({ ...toRecord(row), generation: row.generation, createdAt: row.createdAt }))
}

/**
 * Only the generation numbers, oldest first: the cheap read (primary-key index only) a server uses to
 * notice that a cluster's trust changed.
 */
export async function clusterSecretGenerations(
  db: Queryable,
  clusterId: string,
  purpose: string,
): Promise<number[]> {
  const rows = await db.clusterSecret.findMany({
    where: { clusterId, purpose },
    select: { generation: true },
    orderBy: { generation: 'asc' },
  })
  return rows.map((row) => row.generation)
}

/**
 * A cluster's CA generations as `@kiln/pki` reads them (its AuthorityStore, matched by shape:
 * this package does not import pki).
 */
export const clusterAuthorityStore = (db: Queryable) => ({
  authorityGenerations: (clusterId: string, purpose: string) =>
    listClusterSecretGenerations(db, clusterId, purpose),
})

/**
 * Deletes every generation older than `keepGeneration`: its sealed private key goes with the row.
 * Returns the deleted generations' certificates (public halves), for the audit log.
 */
export async function deleteClusterSecretsBefore(
  db: Queryable,
  clusterId: string,
  purpose: string,
  keepGeneration: number,
): Promise<{ generation: number; publicPem: string }[]> {
  const doomed = await db.clusterSecret.findMany({
    where: { clusterId, purpose, generation: { lt: keepGeneration } },
    select: { generation: true, publicPem: true },
    orderBy: { generation: 'asc' },
  })
  if (doomed.length > 0) {
    await db.clusterSecret.deleteMany({ where: { clusterId, purpose, generation: { lt: keepGeneration } } })
  }
  return doomed
}

/** The public halves only (certificates, public keys), by purpose, oldest generation first. */
export async function listClusterCertificates(db: Queryable, clusterId: string) {
  const rows = await db.clusterSecret.findMany({
    where: { clusterId },
    select: { purpose: true, generation: true, kind: true, publicPem: true, createdAt: true },
    orderBy: [{ purpose: 'asc' }, { generation: 'asc' }],
  })
  return rows.map((row) => ({ ...row, kind: row.kind as ClusterSecretRecord['kind'] }))
}

export async function deleteClusterSecrets(db: Queryable, clusterId: string): Promise<number> {
  const { count } = await db.clusterSecret.deleteMany({ where: { clusterId } })
  return count
}

/** Where a sealed key is stored (the row's primary key) and the sealed key as read. */
export interface SealedKeyRow {
  clusterId: string
  purpose: string
  generation: number
  sealedKey: unknown
}

export type SealedKeyPosition = Pick<SealedKeyRow, 'clusterId' | 'purpose' | 'generation'>

/** Before every row: the smallest uuid, the empty purpose, generation 0. */
export const firstSealedKeyPosition: SealedKeyPosition = {
  clusterId: '00000000-0000-0000-0000-000000000000',
  purpose: '',
  generation: 0,
}

/**
 * The next `limit` sealed keys after `after` (primary-key order) that are not wrapped by master key
 * `kid`: master-key rotation walks the table with these, a batch at a time.
 */
export async function sealedKeysNotUnder(
  db: Queryable,
  kid: string,
  after: SealedKeyPosition,
  limit: number,
): Promise<SealedKeyRow[]> {
  return db.$queryRaw<SealedKeyRow[]>`
    SELECT "clusterId"::text AS "clusterId", purpose, generation, "sealedKey"
    FROM "ClusterSecret"
    WHERE ("clusterId", purpose, generation) > (${after.clusterId}::uuid, ${after.purpose}, ${after.generation})
      AND "sealedKey"->>'kid' IS DISTINCT FROM ${kid}
    ORDER BY "clusterId", purpose, generation
    LIMIT ${limit}`
}

/** How many sealed keys there are, and how many of them master key `kid` wraps. */
export async function countSealedKeys(db: Queryable, kid: string): Promise<{ total: number; under: number }> {
  const [row] = await db.$queryRaw<{ total: bigint; under: bigint }[]>`
    SELECT count(*) AS total, count(*) FILTER (WHERE "sealedKey"->>'kid' = ${kid}) AS under
    FROM "ClusterSecret"`
  return { total: Number(row?.total ?? 0), under: Number(row?.under ?? 0) }
}

/**
 * Replaces sealed keys, each only if it is still exactly what was read (compare-and-set): a row
 * deleted or re-sealed meanwhile is left alone. One transaction per batch; returns how many changed.
 */
export async function replaceSealedKeys(
  db: Database,
  replacements: readonly { row: SealedKeyRow; sealedKey: unknown }[],
): Promise<number> {
  if (replacements.length === 0) return 0
  const counts = await db.$transaction(
    replacements.map(
      ({ row, sealedKey }) => db.$executeRaw`
        UPDATE "ClusterSecret" SET "sealedKey" = ${JSON.stringify(sealedKey)}::jsonb
        WHERE "clusterId" = ${row.clusterId}::uuid AND purpose = ${row.purpose}
          AND generation = ${row.generation} AND "sealedKey" = ${JSON.stringify(row.sealedKey)}::jsonb`,
    ),
  )
  return counts.reduce((sum, count) => sum + count, 0)
}
