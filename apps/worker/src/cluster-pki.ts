import { createPrivateKey, X509Certificate } from 'node:crypto'
import {
  type Actor,
  type CaRotationParams,
  clusterAuthorityStore,
  type Database,
  deleteClusterSecretsBefore,
  getClusterSecret,
  holdsMachines,
  insertClusterSecretIfAbsent,
  listClusterSecretGenerations,
  type Operation,
  type Prisma,
  type Tx,
  transitionCluster,
} from '@kiln/db'
import { type ClusterStatus, type Condition, derivePhase, setCondition } from '@kiln/domain'
import { DriverError } from '@kiln/drivers'
import type { Outcome, StepResult } from '@kiln/jobs'
import {
  certificateAuthorityPurposes,
  certificateInfo,
  generateCertificateAuthority,
  generateServiceAccountKeyPair,
  loadClusterTrust,
  lookupOrGenerate,
  type MasterKeyring,
  materialFromRecord,
  openAuthority,
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
export async function ensureClusterAuthorities(store: PkiStore, clusterId: string, masterKey: MasterKeyring) {
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

// ---------------------------------------------------------------------------------------------
// Cluster CA rotation (cluster.rotate-ca-start, cluster.rotate-ca-complete). Which CA signs what
// while both are trusted is decided in one place, @kiln/pki's clusterTrust; these steps only add
// and remove generations.

/** The condition that tells people and code a rotation was started and not completed. */
export const caRotationCondition = 'CertificateAuthorityRotating'

const systemActor = (op: Operation): Actor => ({ subject: 'system:worker', requestId: op.id })

function rotationOf(op: Operation): { clusterId: string; params: CaRotationParams } {
  const params = op.params as Partial<CaRotationParams>
  if (
    !op.clusterId ||
    params.purpose !== Purpose.clusterCa ||
    !Number.isInteger(params.generation) ||
    !Array.isArray(params.previousGenerations)
  ) {
    throw new DriverError('ERR_INVALID_REQUEST', `Operation ${op.id} does not describe a CA rotation.`)
  }
  return { clusterId: op.clusterId, params: params as CaRotationParams }
}

/** Sets the rotation condition (and writes the audit row) in the transaction that changes the CAs. */
async function markRotation(
  tx: Tx,
  op: Operation,
  clusterId: string,
  condition: Omit<Condition, 'lastTransitionTime'>,
  audit: { action: string; data: Prisma.InputJsonValue },
) {
  const held = await holdsMachines(tx, clusterId)
  await transitionCluster(tx, systemActor(op), op.projectId, clusterId, {
    apply: (cluster) => {
      const status = cluster.status as unknown as ClusterStatus
      const conditions = setCondition(status.conditions, condition, new Date())
      return {
        data: {
          status: {
            ...status,
            conditions,
            phase: derivePhase(conditions, status.observedGeneration, held || Boolean(status.endpoint)),
          } as unknown as Prisma.InputJsonValue,
        },
        audit,
      }
    },
  })
}

/**
 * Step `issue-next-ca`: generates the next cluster CA (its generation was fixed when the operation was
 * accepted), seals its key, and stores it beside the current one together with the rotation
 * condition and an audit row, in one transaction. A retry finds it stored and generates nothing.
 */
export async function issueNextClusterCa(
  db: Database,
  masterKey: MasterKeyring,
  op: Operation,
): Promise<StepResult> {
  const { clusterId, params } = rotationOf(op)
  const stored = await listClusterSecretGenerations(db, clusterId, Purpose.clusterCa)
  const existing = stored.find((g) => g.generation === params.generation)
  if (existing) {
    return { message: `cluster-ca generation ${params.generation} was already issued; nothing generated.` }
  }
  const newest = stored[stored.length - 1]
  if (newest?.generation !== params.generation - 1) {
    throw new DriverError(
      'ERR_INVALID_REQUEST',
      `The cluster's CA generations (${stored.map((g) => g.generation).join(', ') || 'none'}) changed since the rotation to generation ${params.generation} was requested.`,
    )
  }
  const ca = await generateCertificateAuthority({ purpose: Purpose.clusterCa, validityDays: caValidityDays })
  const sealed = sealMaterial(clusterId, Purpose.clusterCa, ca, masterKey, params.generation)
  const info = certificateInfo(ca.certPem)
  await db.$transaction(async (tx) => {
    await insertClusterSecretIfAbsent(
      tx,
      clusterId,
      Purpose.clusterCa,
      recordFromMaterial(sealed),
      params.generation,
    )
    await markRotation(
      tx,
      op,
      clusterId,
      {
        type: caRotationCondition,
        status: 'True',
        reason: 'NewCertificateAuthorityTrusted',
        message: `cluster-ca generations ${newest.generation} and ${params.generation} are trusted; new credentials are signed by generation ${params.generation}. Complete the rotation once every client holds a new credential.`,
      },
      {
        action: 'credential.ca.issue',
        data: {
          purpose: Purpose.clusterCa,
          generation: params.generation,
          fingerprintSha256: info.fingerprintSha256,
          notAfter: info.notAfter.toISOString(),
          operationId: op.id,
        },
      },
    )
  })
  return {
    message: `cluster-ca generation ${params.generation} issued (SHA-256 ${info.fingerprintSha256.slice(0, 16)}…); its private key sealed.`,
  }
}

/**
 * Step `retire-previous-ca`: deletes every cluster CA generation older than the current one (the
 * sealed private keys go with the rows, so nothing can sign with them again) and clears the
 * rotation condition, in one transaction.
 */
export async function retirePreviousClusterCas(db: Database, op: Operation): Promise<StepResult> {
  const { clusterId, params } = rotationOf(op)
  const stored = await listClusterSecretGenerations(db, clusterId, Purpose.clusterCa)
  const newest = stored[stored.length - 1]
  if (newest?.generation !== params.generation) {
    throw new DriverError(
      'ERR_INVALID_REQUEST',
      `The cluster's current CA is generation ${newest?.generation ?? 'none'}, not ${params.generation} as when the completion was requested.`,
    )
  }
  const retired = await db.$transaction(async (tx) => {
    const deleted = await deleteClusterSecretsBefore(tx, clusterId, Purpose.clusterCa, params.generation)
    const fingerprints = deleted.map((g) => ({
      generation: g.generation,
      fingerprintSha256: certificateInfo(g.publicPem).fingerprintSha256,
    }))
    await markRotation(
      tx,
      op,
      clusterId,
      {
        type: caRotationCondition,
        status: 'False',
        reason: 'RotationCompleted',
        message: `cluster-ca generation ${params.generation} is the only trusted CA.`,
      },
      {
        action: 'credential.ca.retire',
        data: {
          purpose: Purpose.clusterCa,
          retired: fingerprints,
          current: params.generation,
          operationId: op.id,
        },
      },
    )
    return fingerprints
  })
  return retired.length > 0
    ? {
        message: `cluster-ca generation ${retired.map((g) => g.generation).join(', ')} destroyed with its private key; generation ${params.generation} is the only trusted CA.`,
      }
    : { message: `Nothing left to retire; generation ${params.generation} is the only trusted CA.` }
}

/**
 * Step `distribute-ca-bundle`: proves every trusted CA can be used before anyone relies on it (each
 * sealed key opens and belongs to its certificate) and reports the trust the API servers now apply.
 * The simulated API servers read the bundle from the database themselves, within a second.
 */
export async function distributeClusterCaBundle(
  db: Database,
  masterKey: MasterKeyring,
  op: Operation,
): Promise<StepResult> {
  const { clusterId } = rotationOf(op)
  const trust = await loadClusterTrust(clusterAuthorityStore(db), clusterId, Purpose.clusterCa)
  for (const generation of trust.generations) {
    const ca = openAuthority(clusterId, Purpose.clusterCa, generation, masterKey)
    if (!new X509Certificate(ca.certPem).checkPrivateKey(createPrivateKey(ca.keyPem))) {
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `cluster-ca generation ${generation.generation}: the stored key does not belong to its certificate.`,
      )
    }
  }
  const numbers = trust.generations.map((g) => g.generation)
  return {
    message: trust.rotating
      ? `Trusted: cluster-ca generations ${numbers.join(', ')}. Client credentials are signed by generation ${trust.current.generation}; the API servers keep serving with generation ${trust.serving.generation} until the rotation completes.`
      : `Trusted: cluster-ca generation ${trust.current.generation} only; it signs client credentials and the API servers' certificates.`,
  }
}

/**
 * Ends either rotation phase. A rotation changes no machine, so Ready is left as it was; a failure
 * is Progressing=False with the error's reason, and the operation can be retried.
 */
export async function finishCaRotation(tx: Tx, op: Operation, outcome: Outcome) {
  if (!op.clusterId) return
  const held = await holdsMachines(tx, op.clusterId)
  await transitionCluster(tx, systemActor(op), op.projectId, op.clusterId, {
    apply: (cluster) => {
      const status = cluster.status as unknown as ClusterStatus
      const reason =
        outcome.status === 'failed'
          ? outcome.error.code
          : outcome.status === 'cancelled'
            ? 'Cancelled'
            : 'Succeeded'
      const conditions = setCondition(
        status.conditions,
        {
          type: 'Progressing',
          status: 'False',
          reason,
          message: outcome.status === 'failed' ? outcome.error.detail : '',
        },
        new Date(),
      )
      const next = {
        ...status,
        conditions,
        phase: derivePhase(conditions, status.observedGeneration, held || Boolean(status.endpoint)),
        message:
          outcome.status === 'failed'
            ? `${op.kind} failed: ${outcome.error.detail}`
            : `${op.kind} ${outcome.status}`,
      }
      return {
        data: {
          status: next as unknown as Prisma.InputJsonValue,
          ...(cluster.activeOperationId === op.id ? { activeOperationId: null } : {}),
        },
        audit: { action: `${op.kind}.${outcome.status}` },
      }
    },
  })
}
