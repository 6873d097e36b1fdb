import { type ConnectionOptions, Queue } from 'bullmq'
import Value from 'typebox/value'
import { type JobName, type JobPayload, jobCatalogue, type QueueName, queueNames } from './catalogue.ts'

export interface QueueSettings {
  connection: ConnectionOptions
  /** BullMQ key prefix; one per deployment (or per test). */
  prefix: string
}

/** The only way jobs are produced: typed, validated, de-duplicated by job id. */
export class JobProducer {
  private readonly queues = new Map<QueueName, Queue>()

  constructor(private readonly settings: QueueSettings) {}

  queue(name: QueueName): Queue {
    let q = this.queues.get(name)
    if (!q) {
      q = new Queue(name, { connection: this.settings.connection, prefix: this.settings.prefix })
      q.on('error', () => {
        // Connection errors surface on the calls that need Redis.
      })
      this.queues.set(name, q)
    }
    return q
  }

  async enqueue<N extends JobName>(name: N, payload: JobPayload<N>, options: { delayMs?: number } = {}) {
    const def = jobCatalogue[name]
    if (!Value.Check(def.payload, payload)) throw new Error(`Invalid payload for job ${name}`)
    return this.queue(def.queue).add(name, payload, {
      ...def.options,
      jobId: def.jobId(payload as never),
      ...(options.delayMs ? { delay: options.delayMs } : {}),
    })
  }

  /**
   * Makes sure a live job exists for this payload: a missing one (Redis flushed) or a finished one
   * (a job that ended while its operation did not) is created again. Used by the dispatcher.
   */
  async ensure<N extends JobName>(name: N, payload: JobPayload<N>): Promise<'exists' | 'enqueued'> {
    const def = jobCatalogue[name]
    const queue = this.queue(def.queue)
    const existing = await queue.getJob(def.jobId(payload as never))
    if (existing) {
      const state = await existing.getState()
      // Asked to run it means it is due: a job delayed for a later attempt runs now (its runner
      // answers "busy" and delays it again if the operation is not due after all).
      if (state === 'delayed') await existing.promote().catch(() => undefined)
      if (state !== 'completed' && state !== 'failed' && state !== 'unknown') return 'exists'
      await existing.remove().catch(() => undefined)
    }
    await this.enqueue(name, payload)
    return 'enqueued'
  }

  async close() {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()))
  }
}

export { queueNames }
