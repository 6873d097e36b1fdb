import type { JobsOptions } from 'bullmq'
import Type from 'typebox'

/** Queue names; a prefix (per deployment or per test) keeps them apart in one Redis. */
export const queueNames = {
  operations: 'operations',
  housekeeping: 'housekeeping',
} as const
export type QueueName = (typeof queueNames)[keyof typeof queueNames]

interface JobDefinition<P extends Type.TSchema> {
  queue: QueueName
  payload: P
  options: JobsOptions
  /** De-duplicates: a second enqueue of the same id while the job exists is a no-op. */
  jobId(payload: Type.Static<P>): string
}

const define = <P extends Type.TSchema>(def: JobDefinition<P>) => def

/**
 * Every job Kiln runs. A job carries only ids; Postgres holds everything that matters, so a lost
 * job is re-created by the dispatcher and a duplicated one finds nothing left to do.
 */
export const jobCatalogue = {
  'run-operation': define({
    queue: queueNames.operations,
    payload: Type.Object({ operationId: Type.String({ format: 'uuid' }) }, { additionalProperties: false }),
    options: {
      // A failed step waits in the delayed set until its next attempt (the step runner sets the
      // time and fails the operation past its retry horizon); this backoff serves only failures
      // without a time of their own, such as PostgreSQL being down.
      attempts: 1000,
      backoff: { type: 'kiln' },
      removeOnComplete: { age: 3600, count: 10_000 },
      removeOnFail: { age: 24 * 3600 },
    },
    jobId: (p) => `op-${p.operationId}`,
  }),
  'observe-clusters': define({
    queue: queueNames.housekeeping,
    payload: Type.Object({}, { additionalProperties: false }),
    options: { attempts: 1, removeOnComplete: true, removeOnFail: true },
    jobId: () => 'observe-clusters',
  }),
}

export type JobName = keyof typeof jobCatalogue
export type JobPayload<N extends JobName> = Type.Static<(typeof jobCatalogue)[N]['payload']>

/** Exponential backoff with full jitter, capped: retries spread out and never wait too long. */
export function backoffDelay(attemptsMade: number, baseMs = 200, capMs = 15_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attemptsMade, 16))
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2))
}
