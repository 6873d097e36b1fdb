// Proves: worker processes killed with SIGKILL at random moments — mid-step, mid-allocation, two
// at once — lose no work and leak nothing. 50 clusters (1 control plane + 2 workers each) are
// created through the API while real worker processes are killed every 2–5 s and replaced. Every
// create still succeeds, every cluster is Ready, and the simulator's books match Kiln's exactly:
// no machine allocated twice, no allocation without a Machine row, no Machine row without an
// allocation, 150 allocations in all.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  between,
  clusterPhases,
  dataCentre,
  describeUnsucceeded,
  retryFigures,
  type Stack,
  slowMachineCalls,
  startStack,
  type WorkerProcess,
} from './harness.ts'

const clusters = 50
const machinesPerCluster = 3
const timeoutMs = 5 * 60_000

describe('worker crash', () => {
  let stack: Stack

  beforeAll(async () => {
    stack = await startStack({
      // Latency on every driver call, and more on the ones that change machines, so each step
      // takes long enough for kills to land inside operations rather than between them.
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

  it('finishes 50 creates with no orphan or double allocation while workers are SIGKILLed', async () => {
    onTestFailed(() => stack.dumpLogs(400))
    const started = Date.now()
    const names = Array.from({ length: clusters }, (_, i) => `crash-${String(i).padStart(2, '0')}`)
    const ids: string[] = []
    for (const name of names) ids.push(await stack.createCluster(name))

    let kills = 0
    let killEvents = 0
    let pairChances = 0
    let doubleKills = 0
    let interruptedLeases = 0
    const killAt = new Map<WorkerProcess, number>()
    // Two from the start, so the first kill already takes both at once (a double kill is required).
    stack.startWorker()
    stack.startWorker()

    await stack.waitTerminal(ids, timeoutMs, async () => {
      const now = Date.now()
      const live = stack.liveWorkers()
      // A worker lives 2–5 s: long enough for the longest step (install-addons, ~45 requests to the
      // cluster's API server) to finish now and then under this load, short enough that kills land
      // inside steps. A step that never outlives its worker could not finish by construction.
      for (const w of live) if (w.readyAt && !killAt.has(w)) killAt.set(w, w.readyAt + between(2000, 5000))
      const due = live.filter((w) => (killAt.get(w) ?? Number.POSITIVE_INFINITY) <= now)
      if (due.length > 0) {
        const victims = [...due]
        // Two at once: every other time two ready workers are up, both die together.
        const other = live.find((w) => w.readyAt && !victims.includes(w))
        if (other && pairChances++ % 2 === 0) victims.push(other)
        const owners = victims.map((v) => v.workerId).filter((id): id is string => !!id)
        const held = await stack.db.operation.count({
          where: { status: 'running', leaseOwner: { in: owners }, leaseUntil: { gt: new Date() } },
        })
        await Promise.all(victims.map((v) => v.kill9()))
        kills += victims.length
        if (victims.length > 1) doubleKills++
        interruptedLeases += held
        stack.log(`[test] SIGKILL ${victims.map((v) => v.name).join(', ')} holding ${held} operations`)
        // Replace them; every third time two workers come up side by side.
        const want = ++killEvents % 3 === 0 ? 2 : 1
        while (stack.liveWorkers().length < want) stack.startWorker()
      }
      if (stack.liveWorkers().length === 0) stack.startWorker()
    })
    const elapsed = Date.now() - started
    await Promise.all(stack.liveWorkers().map((w) => w.stop()))

    const unsucceeded = await describeUnsucceeded(stack.db, ids)
    expect(unsucceeded, JSON.stringify(unsucceeded, null, 2)).toEqual([])

    const phases = await clusterPhases(stack.app)
    expect(phases.size).toBe(clusters)
    expect([...phases.entries()].filter(([, phase]) => phase !== 'Ready')).toEqual([])

    const books = await stack.expectNoOrphans(clusters * machinesPerCluster)
    expect(books.clusters).toBe(clusters)

    const retries = await retryFigures(stack.db, ids)
    console.log(
      `[worker-crash] ${clusters} creates succeeded in ${(elapsed / 1000).toFixed(1)} s; ` +
        `${kills} SIGKILLs (${doubleKills} double), ${stack.workers.length} worker processes started, ` +
        `${interruptedLeases} running operations interrupted; ` +
        `${retries.retriedRuns} extra runs over ${retries.opsWithRetries} operations (max attempts ${retries.maxAttempts}); ` +
        `${books.simulatorAllocated} machines allocated, 0 orphans, 0 double allocations`,
    )
    // The run must actually have been chaotic, or it proves nothing.
    expect(kills).toBeGreaterThanOrEqual(3)
    expect(doubleKills).toBeGreaterThanOrEqual(1)
    expect(interruptedLeases).toBeGreaterThan(0)
  })
})
