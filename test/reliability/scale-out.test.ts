// Proves: Kiln scales out. Two API processes and three worker processes share one PostgreSQL and
// one Redis. A storm of cluster creates, each with an Idempotency-Key, goes to both APIs; the client
// retries a request against the other API on a connection error or 503, as a CI job would. Mid-storm
// the worker holding the most leases is SIGKILLed and one API is stopped (SIGTERM). Every requested
// cluster exists exactly once and ends Ready, with exactly one operation and three simulator machines;
// the killed worker's operations were finished by other workers; the same key sent to both APIs gives
// one operation; and a client of the surviving API follows, as server-sent events, an operation that
// was created through the stopped API and run by workers it never talked to.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  type ApiProcess,
  dataCentre,
  postCluster,
  type Stack,
  sleep,
  slowMachineCalls,
  startStack,
  type WorkerProcess,
} from './harness.ts'

const clusters = 30
const machinesPerCluster = 3
const clientConcurrency = 6

interface Accepted {
  operationId: string
  /** Which API answered, and whether it was a replay of an earlier answer to the same key. */
  api: string
  replayed: boolean
  attempts: number
}

interface OperationEvent {
  id: string
  status: string
  progress: number
}

describe('scale-out', () => {
  let stack: Stack
  let apis: ApiProcess[]

  beforeAll(async () => {
    stack = await startStack({
      simulator: dataCentre({ latency: slowMachineCalls(300, 900) }),
      controlPlane: 1,
      workers: 2,
    })
    const started = Date.now()
    for (let i = 0; i < 3; i++) stack.startWorker()
    apis = await Promise.all([stack.startApi(), stack.startApi()])
    await Promise.all(stack.workers.map((w) => w.ready))
    console.log(`[scale-out] 2 APIs and 3 workers started in ${((Date.now() - started) / 1000).toFixed(1)} s`)
    // Five TypeScript processes compile at once on a shared machine: starting them may take minutes.
  }, 300_000)

  afterAll(async () => {
    await stack?.close()
  })

  /** POST a create with its key to `first`; on a connection error or 503, the same request to the other API. */
  async function createWithRetry(name: string, key: string, first: number): Promise<Accepted> {
    let target = first
    for (let attempt = 1; attempt <= 10; attempt++) {
      const api = apis[target]!
      try {
        const res = await postCluster(api.url, name, key)
        const body = res.body
        if (res.status === 202) {
          return { operationId: body.id as string, api: api.name, replayed: res.replayed, attempts: attempt }
        }
        if (res.status !== 503)
          throw new Error(`create ${name} on ${api.name}: ${res.status} ${JSON.stringify(body)}`)
        stack.log(`[client] ${name} on ${api.name}: 503, trying the other API`)
      } catch (error) {
        if (error instanceof Error && error.message.startsWith(`create ${name}`)) throw error
        stack.log(`[client] ${name} on ${api.name}: ${String(error)}, trying the other API`)
      }
      target = 1 - target
      await sleep(100 * attempt)
    }
    throw new Error(`create ${name}: no API accepted it in 10 attempts`)
  }

  /** Reads `GET /v1/operations/{id}/events` to its end, returning every `operation` event. */
  async function followEvents(api: ApiProcess, operationId: string): Promise<OperationEvent[]> {
    const res = await fetch(`${api.url}/v1/operations/${operationId}/events`, {
      signal: AbortSignal.timeout(150_000),
    })
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const text = await res.text()
    return text
      .split('\n\n')
      .filter((block) => block.includes('event: operation'))
      .map((block) => JSON.parse(/^data: (.*)$/m.exec(block)![1]!) as OperationEvent)
  }

  /** The lease holders of running operations right now: worker id → operation ids. */
  async function leaseHolders(): Promise<Map<string, string[]>> {
    const rows = await stack.db.operation.findMany({
      where: { status: 'running', leaseOwner: { not: null }, leaseUntil: { gt: new Date() } },
      select: { id: true, leaseOwner: true },
    })
    const byOwner = new Map<string, string[]>()
    for (const r of rows) byOwner.set(r.leaseOwner!, [...(byOwner.get(r.leaseOwner!) ?? []), r.id])
    return byOwner
  }

  /** Which worker (by process name) logged `operation finished` for each operation. */
  function finishers(): Map<string, string> {
    const out = new Map<string, string>()
    for (const line of stack.logs()) {
      if (!line.includes('"operation finished"')) continue
      const worker = /\[(w\d+) pid \d+\]/.exec(line)?.[1]
      const operationId = /"operationId":"([0-9a-f-]+)"/.exec(line)?.[1]
      if (worker && operationId) out.set(operationId, worker)
    }
    return out
  }

  it('loses and duplicates nothing while a worker is SIGKILLed and an API stopped mid-storm', async () => {
    onTestFailed(() => stack.dumpLogs(400))
    const started = Date.now()
    const [stopped, survivor] = [apis[0]!, apis[1]!]
    const names = Array.from({ length: clusters }, (_, i) => `storm-${String(i).padStart(2, '0')}`)
    const accepted = new Map<string, Accepted>()
    let sent = 0

    // The client: a few requests in flight at a time, alternating between the two APIs.
    const storm = (async () => {
      const next = async (): Promise<void> => {
        const i = sent++
        if (i >= clusters) return
        const name = names[i]!
        accepted.set(name, await createWithRetry(name, `scale-out-${name}`, i % 2))
        await sleep(150)
        return next()
      }
      await Promise.all(Array.from({ length: clientConcurrency }, next))
    })()

    // Followed through the survivor from its first event: created through the API about to stop.
    while (!accepted.get(names[0]!)) await sleep(50)
    const followed = accepted.get(names[0]!)!
    expect(followed.api).toBe(stopped.name)
    const events = followEvents(survivor, followed.operationId)

    // Mid-storm, once work is spread out: SIGKILL the worker holding the most leases.
    let victim: WorkerProcess | undefined
    let held: string[] = []
    const chaosDeadline = Date.now() + 60_000
    while (!victim) {
      expect(Date.now(), 'no worker ever held two leases at once').toBeLessThan(chaosDeadline)
      const holders = await leaseHolders()
      const [owner, ops] = [...holders.entries()].sort((a, b) => b[1].length - a[1].length)[0] ?? []
      if (owner && ops && ops.length >= 2 && sent >= clusters / 3) {
        victim = stack.workers.find((w) => w.workerId === owner)
        held = ops
      } else await sleep(100)
    }
    await victim.kill9()
    const killedAt = Date.now()
    stack.log(`[test] SIGKILL ${victim.name} (${victim.workerId}) holding ${held.length} leases`)
    // And, a moment later, one of the two APIs goes away (gracefully) while requests keep coming.
    await sleep(500)
    // Counted when the stop begins: a graceful stop then drains, and the storm goes on meanwhile.
    const sentAtStop = sent
    // From this moment the API refuses new requests (503) while it drains.
    const apiStoppedAt = Date.now()
    await stopped.stop()
    // Drained and exited by itself, not killed at the end of its grace period.
    expect(stopped.child.exitCode, 'the stopped API exited by itself').toBe(0)
    stack.log(`[test] ${stopped.name} stopped after ${sentAtStop} creates were sent`)
    expect(sentAtStop, 'the API stopped after the storm had ended').toBeLessThan(clusters)

    await storm
    expect(accepted.size).toBe(clusters)
    const ids = names.map((n) => accepted.get(n)!.operationId)
    expect(new Set(ids).size, 'one operation per requested cluster').toBe(clusters)
    const failedOver = [...accepted.values()].filter((a) => a.attempts > 1).length
    expect(failedOver, 'requests retried on the surviving API').toBeGreaterThan(0)

    // The same key, sent again to the survivor, replays the first answer (given by either API).
    for (const name of names) {
      const again = await createWithRetry(name, `scale-out-${name}`, 1)
      expect(again.operationId, name).toBe(accepted.get(name)!.operationId)
      expect(again.replayed, name).toBe(true)
    }

    const books = await stack.expectAllReady(ids, machinesPerCluster, 150_000)
    const elapsed = Date.now() - started

    // Exactly once: one cluster row per name, one operation per cluster, three machines each.
    const rows = await stack.db.cluster.findMany({
      select: { name: true, _count: { select: { operations: true, machines: true } } },
    })
    expect(rows.map((r) => r.name).sort()).toEqual(names)
    for (const r of rows) {
      expect(r._count.operations, `operations of ${r.name}`).toBe(1)
      expect(r._count.machines, `machines of ${r.name}`).toBe(machinesPerCluster)
    }
    expect(await stack.db.operation.count()).toBe(clusters)

    // Leases changed hands: every operation the killed worker held was finished by another worker.
    const finishedBy = finishers()
    for (const id of held) {
      const finisher = finishedBy.get(id)
      expect(finisher, `who finished ${id}`).toBeDefined()
      expect(finisher).not.toBe(victim.name)
      expect(stack.workers.find((w) => w.name === finisher)?.alive()).toBe(true)
    }

    // The survivor streamed the stopped API's operation to its end, through PostgreSQL alone.
    const streamed = await events
    const last = streamed.at(-1)!
    expect(streamed.every((e) => e.id === followed.operationId)).toBe(true)
    expect(last.status).toBe('succeeded')
    expect(last.progress).toBe(100)
    expect(streamed.length).toBeGreaterThanOrEqual(3)
    const progress = streamed.map((e) => e.progress)
    expect(progress).toEqual([...progress].sort((a, b) => a - b))
    const streamedAfterStop = (
      await stack.db.operation.findUniqueOrThrow({ where: { id: followed.operationId } })
    ).finishedAt!
    expect(
      streamedAfterStop.getTime(),
      'the followed operation outlived the API that created it',
    ).toBeGreaterThan(apiStoppedAt)
    expect(finishedBy.get(followed.operationId)).toMatch(/^w\d+$/)

    console.log(
      `[scale-out] ${clusters} creates over 2 APIs and 3 workers in ${(elapsed / 1000).toFixed(1)} s; ` +
        `${victim.name} SIGKILLed holding ${held.length} leases (all finished by other workers), ` +
        `${stopped.name} stopped ${apiStoppedAt - killedAt} ms later, ${failedOver} requests failed over to ` +
        `${survivor.name}; ${streamed.length} SSE events through ${survivor.name}; ` +
        `${books.simulatorAllocated} machines, 0 lost, 0 duplicated`,
    )
  })
})
