// Proves: retries absorb driver faults without leaking machines or wedging operations. 300
// create/delete cycles (30 concurrent streams × 10 cycles, clusters of 1 control plane + 1 worker)
// run through the API against two real worker processes, while the simulated data centre fails 10%
// of its mutating calls (seeded). Every create and delete ends succeeded (an operation that gives up
// after its attempt budget is retried through POST /v1/operations/{id}/retry and counted), and
// afterwards nothing is left: no simulator allocation, no Machine row, no cluster, no operation
// pending or running.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  dataCentre,
  describeUnsucceeded,
  isTerminal,
  type OperationStatus,
  retryFigures,
  type Stack,
  startStack,
} from './harness.ts'

const streams = 30
const cyclesPerStream = 10
const maxApiRetries = 5
const soakBudgetMs = 4 * 60_000

interface OperationBody {
  id: string
  kind: string
  status: OperationStatus
  error: { detail?: string; code?: string } | null
}

describe('fault soak', () => {
  let stack: Stack

  beforeAll(async () => {
    stack = await startStack({
      simulator: dataCentre({ faults: { seed: 7, callFailureRate: 0.1 } }),
      controlPlane: 1,
      workers: 1,
    })
  })

  afterAll(async () => {
    await stack?.close()
  })

  it('ends every create and delete succeeded with nothing orphaned or stuck', async () => {
    onTestFailed(() => stack.dumpLogs(300))
    await Promise.all([stack.startWorker().ready, stack.startWorker().ready])
    const started = Date.now()
    const deadline = started + soakBudgetMs
    const ids: string[] = []
    const apiRetried: { id: string; kind: string; detail: string }[] = []

    /** Long-polls the operation through the API until it is terminal. */
    const waitFor = async (id: string): Promise<OperationBody> => {
      for (;;) {
        const res = await stack.app.inject({ method: 'GET', url: `/v1/operations/${id}?wait=20s` })
        expect(res.statusCode, res.body).toBe(200)
        const op = res.json() as OperationBody
        if (isTerminal(op.status)) return op
        if (Date.now() > deadline)
          throw new Error(`operation ${id} (${op.kind}) still ${op.status} at the deadline`)
      }
    }

    /** Waits for success; an operation that gave up is retried through the API. */
    const settle = async (id: string) => {
      for (let retries = 0; ; retries++) {
        const op = await waitFor(id)
        if (op.status === 'succeeded') return
        const detail = op.error?.detail ?? ''
        if (op.status !== 'failed' || !detail.startsWith('Gave up') || retries >= maxApiRetries) {
          throw new Error(`${op.kind} ${id} ended ${op.status}: ${JSON.stringify(op.error)}`)
        }
        apiRetried.push({ id, kind: op.kind, detail })
        expect(await stack.retryOperation(id)).toBe(202)
      }
    }

    const stream = async (s: number) => {
      const name = `soak-${String(s).padStart(2, '0')}`
      for (let c = 0; c < cyclesPerStream; c++) {
        const create = await stack.createCluster(name)
        ids.push(create)
        await settle(create)
        const del = await stack.deleteCluster(name)
        ids.push(del)
        await settle(del)
      }
    }

    const results = await Promise.allSettled(Array.from({ length: streams }, (_, s) => stream(s)))
    const elapsed = Date.now() - started
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    expect(failures.map((f) => String(f.reason))).toEqual([])

    expect(ids).toHaveLength(streams * cyclesPerStream * 2)
    const unsucceeded = await describeUnsucceeded(stack.db, ids)
    expect(unsucceeded, JSON.stringify(unsucceeded.slice(0, 10), null, 2)).toEqual([])
    const stuck = await stack.db.operation.count({ where: { status: { in: ['pending', 'running'] } } })
    expect(stuck).toBe(0)

    await Promise.all(stack.liveWorkers().map((w) => w.stop()))
    const books = await stack.expectNoOrphans(0)
    expect(books.clusters).toBe(0)

    const retries = await retryFigures(stack.db, ids)
    const byKind = (kind: string) => retries.rows.filter((r) => r.kind === kind)
    const extraRuns = (kind: string) => byKind(kind).reduce((sum, r) => sum + r.attempts, 0)
    console.log(
      `[fault-soak] ${streams * cyclesPerStream} create/delete cycles (${ids.length} operations) all succeeded in ` +
        `${(elapsed / 1000).toFixed(1)} s (${(ids.length / (elapsed / 1000)).toFixed(1)} ops/s) with 10% driver faults; ` +
        `${retries.retriedRuns} retried runs (create ${extraRuns('cluster.create')}, delete ${extraRuns('cluster.delete')}) ` +
        `over ${retries.opsWithRetries} operations, max attempts ${retries.maxAttempts}; ` +
        `${apiRetried.length} operations gave up and were retried through the API; ` +
        `0 orphaned machines (simulator ${books.simulatorAllocated}, Machine rows ${books.machineRows}), 0 stuck operations`,
    )
    // With a 10% fault rate over hundreds of driver calls, retries must have happened.
    expect(retries.retriedRuns).toBeGreaterThan(0)
  })
})
