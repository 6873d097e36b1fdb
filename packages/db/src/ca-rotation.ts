import { DomainError, ErrorCode } from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import type { Tx } from './client.ts'
import { listClusterSecretGenerations } from './cluster-secrets.ts'
import { assertIdle, lockLiveCluster, startClusterOperation } from './clusters.ts'
import type { Operation } from './generated/prisma/client.ts'

/** The CA a rotation replaces: the cluster CA that signs the API server and every client certificate. */
const rotatedPurpose = 'cluster-ca'

export type CaRotationPhase = 'start' | 'complete'

/** What a rotation operation was asked to do; the worker checks it against what is stored. */
export interface CaRotationParams {
  purpose: typeof rotatedPurpose
  /** start: the generation it adds. complete: the generation that remains. */
  generation: number
  /** start: the generation being replaced. complete: the generations it destroys. */
  previousGenerations: number[]
}

/**
 * Accepts one phase of a two-phase cluster CA rotation on a locked, idle cluster: `start` while a
 * rotation is already under way, or `complete` when none is, is a 409. The phase's operation and
 * its audit row are written in the caller's transaction.
 */
export async function requestCaRotation(
  tx: Tx,
  actor: Actor,
  projectId: string,
  ref: string,
  phase: CaRotationPhase,
): Promise<{ operation: Operation; params: CaRotationParams }> {
  const cluster = await lockLiveCluster(tx, projectId, ref)
  assertIdle(cluster)
  const generations = (await listClusterSecretGenerations(tx, cluster.id, rotatedPurpose)).map(
    (g) => g.generation,
  )
  const newest = generations[generations.length - 1]
  if (newest === undefined) {
    throw new DomainError(
      ErrorCode.conflict,
      `Cluster '${cluster.name}' has no cluster CA yet; wait for its create operation to finish.`,
    )
  }
  const rotating = generations.length > 1
  if (phase === 'start' && rotating) {
    throw new DomainError(
      ErrorCode.conflict,
      `A CA rotation is already in progress on cluster '${cluster.name}' (generations ${generations.join(', ')} are trusted); complete it before starting another.`,
      { extensions: { caGenerations: generations } },
    )
  }
  if (phase === 'complete' && !rotating) {
    throw new DomainError(
      ErrorCode.conflict,
      `No CA rotation is in progress on cluster '${cluster.name}'; start one first.`,
      { extensions: { caGenerations: generations } },
    )
  }
  const params: CaRotationParams =
    phase === 'start'
      ? { purpose: rotatedPurpose, generation: newest + 1, previousGenerations: [newest] }
      : { purpose: rotatedPurpose, generation: newest, previousGenerations: generations.slice(0, -1) }
  const kind = phase === 'start' ? 'cluster.rotate-ca-start' : 'cluster.rotate-ca-complete'
  const operation = await startClusterOperation(tx, actor, cluster, kind, params)
  await recordAudit(tx, actor, {
    projectId,
    action: `credential.ca-rotation.${phase}`,
    targetKind: 'cluster',
    targetId: cluster.id,
    data: { operationId: operation.id, ...params },
  })
  return { operation, params }
}
