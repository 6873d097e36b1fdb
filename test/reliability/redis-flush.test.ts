// Proves: Redis holds nothing that matters. While 30 cluster creates run on a real worker process,
// the (throwaway) Redis is FLUSHALLed twice and restarted once without persistence, so every queued
// job, lock and delay is lost three times mid-run. The worker's dispatcher re-creates the jobs from
// PostgreSQL, every create succeeds, and the simulator's books match Kiln's exactly (no orphans).
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  clusterPhases,
  dataCentre,
  describeUnsucceeded,
  isTerminal,
  retryFigures,
  type Stack,
  slowMachineCalls,
  startStack,
} from './harness.ts'

const clusters = 30
const machinesPerCluster = 3

describe('redis flush', () => {
  let stack: Stack

  beforeAll(async () => {
    stack = await startStack({
      // Slow machine calls keep operations in flight across the flushes.
      simulator: dataCentre({
        latency: slowMachineCalls(200, 800),
      }),
      controlPlane: 1,
      workers: 2,
    })
  })

  afterAll(async () => {
    await stack?.close()
  })

  it('finishes every create with no orphans after two FLUSHALLs and a restart', async () => {
    onTestFailed(() => stack.dumpLogs(400))
    const worker = stack.startWorker()
    await worker.ready
    const started = Date.now()
    const ids: string[] = []
    for (let i = 0; i < clusters; i++)
      ids.push(await stack.createCluster(`flush-${String(i).padStart(2, '0')}`))

    const queueKeys = async () => {
      const client = new Redis(stack.redis.url, { maxRetriesPerRequest: 1 })
      try {
        return (await client.keys(`${stack.prefix}:*`)).length
      } finally {
        client.disconnect()
      }
    }

    // Each event fires once enough operations have finished, so all three land mid-run.
    const events: { at: number; what: 'flush' | 'restart' }[] = [
      { at: 3, what: 'flush' },
      { at: 12, what: 'restart' },
      { at: 21, what: 'flush' },
    ]
    const fired: { what: string; afterMs: number; inFlight: number; keysBefore: number }[] = []
    await stack.waitTerminal(ids, 4 * 60_000, async () => {
      const next = events[fired.length]
      if (!next) return
      const statuses = [...(await stack.statuses(ids)).values()]
      const done = statuses.filter(isTerminal).length
      if (done < next.at) return
      const inFlight = statuses.length - done
      const keysBefore = await queueKeys()
      // Only a Redis that holds jobs again (re-created since the last loss) makes a real loss.
      if (keysBefore === 0) return
      if (next.what === 'flush') await stack.redis.flushAll()
      else await stack.redis.restart(1000)
      fired.push({ what: next.what, afterMs: Date.now() - started, inFlight, keysBefore })
      stack.log(`[test] ${next.what}: ${inFlight} operations in flight, ${keysBefore} queue keys lost`)
    })
    const elapsed = Date.now() - started

    expect(fired.map((f) => f.what)).toEqual(['flush', 'restart', 'flush'])
    for (const f of fired) {
      expect(f.inFlight, `${f.what} landed mid-run`).toBeGreaterThan(0)
      expect(f.keysBefore, `${f.what} destroyed queued jobs`).toBeGreaterThan(0)
    }
    // The same worker process did all of it.
    expect(worker.alive()).toBe(true)
    expect(stack.workers).toHaveLength(1)

    const unsucceeded = await describeUnsucceeded(stack.db, ids)
    expect(unsucceeded, JSON.stringify(unsucceeded, null, 2)).toEqual([])
    const phases = await clusterPhases(stack.app)
    expect([...phases.values()].filter((p) => p !== 'Ready')).toEqual([])
    expect(phases.size).toBe(clusters)
    await worker.stop()
    const books = await stack.expectNoOrphans(clusters * machinesPerCluster)
    expect(books.clusters).toBe(clusters)

    // The dispatcher re-created the lost jobs (it logs how many it queued).
    const requeued = stack
      .logs()
      .map((l) =>
        l.includes('"msg":"dispatcher queued operations"') ? /"queued":(\d+)/.exec(l)?.[1] : undefined,
      )
      .reduce((sum, n) => sum + (n ? Number(n) : 0), 0)
    expect(requeued).toBeGreaterThan(0)

    const retries = await retryFigures(stack.db, ids)
    console.log(
      `[redis-flush] ${clusters} creates succeeded in ${(elapsed / 1000).toFixed(1)} s across ` +
        fired
          .map(
            (f) =>
              `${f.what} at ${(f.afterMs / 1000).toFixed(1)} s (${f.inFlight} in flight, ${f.keysBefore} keys lost)`,
          )
          .join(', ') +
        `; dispatcher re-queued ${requeued} jobs; ${retries.retriedRuns} extra runs over ${retries.opsWithRetries} operations; ` +
        `${books.simulatorAllocated} machines allocated, 0 orphans`,
    )
  })
})
