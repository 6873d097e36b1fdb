// Proves: a PostgreSQL restart is an outage, not a failure. With 20 cluster creates in flight on a
// real worker process, the (throwaway) PostgreSQL is stopped for ~3 s and started again. While it
// is down, the in-process API answers 503 application/problem+json with Retry-After, and /readyz
// is 503. Once it is back, the same API (not rebuilt) answers 200 again and the same worker process
// (not restarted) finishes every operation; the simulator's books match Kiln's exactly.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import {
  clusterPhases,
  dataCentre,
  describeUnsucceeded,
  project,
  retryFigures,
  type Stack,
  sleep,
  slowMachineCalls,
  startStack,
} from './harness.ts'

const clusters = 20
const machinesPerCluster = 3
const downMs = 3_000

describe('postgres restart', () => {
  let stack: Stack

  beforeAll(async () => {
    stack = await startStack({
      simulator: dataCentre({
        latency: slowMachineCalls(300, 1000),
      }),
      controlPlane: 1,
      workers: 2,
    })
  })

  afterAll(async () => {
    await stack?.close()
  })

  it('answers 503 while PostgreSQL is down and finishes every operation after it returns', async () => {
    onTestFailed(() => stack.dumpLogs(400))
    const worker = stack.startWorker()
    await worker.ready
    const ids: string[] = []
    for (let i = 0; i < clusters; i++) ids.push(await stack.createCluster(`pg-${String(i).padStart(2, '0')}`))
    const opUrl = `/v1/operations/${ids[0]}`

    // Stop only once the worker is busy: at least 4 operations running.
    const busyDeadline = Date.now() + 30_000
    for (;;) {
      const running = await stack.db.operation.count({ where: { id: { in: ids }, status: 'running' } })
      if (running >= 4) break
      if (Date.now() > busyDeadline) throw new Error('the worker never got busy')
      await sleep(50)
    }
    const before = [...(await stack.statuses(ids)).values()]
    const inFlight = before.filter((s) => s === 'pending' || s === 'running').length

    const stoppedAt = Date.now()
    await stack.pg.stop()
    stack.log(`[test] postgres stopped with ${inFlight} operations in flight`)

    // While it is down: a GET is a 503 problem with Retry-After (poll: the pool may still hold
    // a connection that has not noticed yet), and /readyz is 503.
    let unavailable: { status: number; type: string; retryAfter: string | undefined; ms: number } | undefined
    let lastSeen = ''
    while (!unavailable && Date.now() - stoppedAt < downMs + 5_000) {
      const res = await stack.app.inject({ method: 'GET', url: opUrl })
      lastSeen = `${res.statusCode} ${res.headers['content-type']} ${res.body.slice(0, 200)}`
      if (res.statusCode === 503) {
        expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
        const body = res.json() as { type: string; status: number }
        expect(body.status).toBe(503)
        unavailable = {
          status: res.statusCode,
          type: body.type,
          retryAfter: res.headers['retry-after'] as string | undefined,
          ms: Date.now() - stoppedAt,
        }
      } else {
        await sleep(100)
      }
    }
    expect(unavailable, `no 503 while PostgreSQL was down; last answer: ${lastSeen}`).toBeDefined()
    expect(unavailable!.type).toBe('https://kiln.dev/problems/service-unavailable')
    expect(unavailable!.retryAfter).toMatch(/^\d+$/)

    // Every read route says the same: 503, problem+json, Retry-After (soft: report them all).
    const reads = [
      `/v1/projects/${project}`,
      `/v1/projects/${project}/clusters`,
      `/v1/projects/${project}/clusters/pg-00`,
      `/v1/projects/${project}/operations`,
      opUrl,
    ]
    for (const url of reads) {
      const res = await stack.app.inject({ method: 'GET', url })
      expect.soft(res.statusCode, `GET ${url} while PostgreSQL is down: ${res.body.slice(0, 300)}`).toBe(503)
      expect.soft(String(res.headers['content-type']), `GET ${url}`).toMatch(/^application\/problem\+json/)
      expect.soft(String(res.headers['retry-after']), `GET ${url} Retry-After`).toMatch(/^\d+$/)
    }

    const ready = await stack.app.inject({ method: 'GET', url: '/readyz' })
    expect(ready.statusCode, ready.body).toBe(503)
    expect(ready.headers['content-type']).toMatch(/^application\/problem\+json/)
    expect(ready.headers['retry-after']).toMatch(/^\d+$/)
    expect((ready.json() as { checks: { postgres: string; redis: string } }).checks).toEqual({
      postgres: 'unavailable',
      redis: 'ok',
    })

    await sleep(Math.max(0, downMs - (Date.now() - stoppedAt)))
    const downFor = Date.now() - stoppedAt
    await stack.pg.start()
    const restartedAt = Date.now()
    stack.log(`[test] postgres started again after ${downFor} ms`)

    // The same API instance recovers by itself.
    let recoveredMs: number | undefined
    while (recoveredMs === undefined && Date.now() - restartedAt < 60_000) {
      const res = await stack.app.inject({ method: 'GET', url: opUrl })
      if (res.statusCode === 200) recoveredMs = Date.now() - restartedAt
      else await sleep(100)
    }
    expect(recoveredMs, 'the API answered 200 again after the restart').toBeDefined()
    expect((await stack.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200)
    for (const url of reads) {
      const res = await stack.app.inject({ method: 'GET', url })
      expect(res.statusCode, `GET ${url} after the restart: ${res.body.slice(0, 300)}`).toBe(200)
    }

    // The same worker process finishes everything.
    await stack.waitTerminal(ids, 3 * 60_000)
    const finishedMs = Date.now() - restartedAt
    expect(worker.alive(), 'the worker survived the restart').toBe(true)
    expect(stack.workers).toHaveLength(1)

    const unsucceeded = await describeUnsucceeded(stack.db, ids)
    expect(unsucceeded, JSON.stringify(unsucceeded, null, 2)).toEqual([])
    const phases = await clusterPhases(stack.app)
    expect(phases.size).toBe(clusters)
    expect([...phases.values()].filter((p) => p !== 'Ready')).toEqual([])
    await worker.stop()
    const books = await stack.expectNoOrphans(clusters * machinesPerCluster)
    expect(books.clusters).toBe(clusters)

    const retries = await retryFigures(stack.db, ids)
    console.log(
      `[postgres-restart] ${inFlight} of ${clusters} creates in flight when PostgreSQL stopped; down ${downFor} ms; ` +
        `first 503 after ${unavailable!.ms} ms (Retry-After: ${unavailable!.retryAfter}); ` +
        `API 200 again ${recoveredMs} ms after start; all ${clusters} succeeded ${(finishedMs / 1000).toFixed(1)} s after start; ` +
        `${retries.retriedRuns} extra runs over ${retries.opsWithRetries} operations (max attempts ${retries.maxAttempts}); ` +
        `${books.simulatorAllocated} machines allocated, 0 orphans`,
    )
  })
})
