// Proves: with Redis behind Sentinel (KILN_REDIS_SENTINELS + KILN_REDIS_SENTINEL_MASTER), losing the
// Redis primary is a pause, not a failure. An API process and two worker processes reach Redis only
// through a Sentinel. With cluster creates in flight, the primary is SIGKILLed; Sentinel promotes the
// replica, the same processes (none restarted) follow it, more creates are accepted through the
// same API, and every operation succeeds exactly once: one cluster and one operation per request,
// the simulator's books matching Kiln's. Jobs the replica had not received yet are re-created from
// PostgreSQL by the dispatcher.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { redisTopologyFromEnv } from '../../packages/jobs/src/redis.ts'
import { type SentinelSet, startSentinelSet } from '../support/redis-ha.ts'
import {
  type ApiProcess,
  dataCentre,
  type EnvOverrides,
  postCluster,
  type Stack,
  sleep,
  slowMachineCalls,
  startStack,
} from './harness.ts'

const before = 8
const after = 4
const machinesPerCluster = 3

describe('redis sentinel failover', () => {
  let stack: Stack
  let sentinel: SentinelSet
  let api: ApiProcess
  let env: EnvOverrides

  beforeAll(async () => {
    stack = await startStack({
      simulator: dataCentre({ latency: slowMachineCalls(400, 1200) }),
      controlPlane: 1,
      workers: 2,
    })
    sentinel = stack.adopt(await startSentinelSet())
    // No REDIS_URL: the processes find the primary by asking the Sentinel.
    env = {
      REDIS_URL: undefined,
      KILN_REDIS_SENTINELS: `127.0.0.1:${sentinel.sentinelPort}`,
      KILN_REDIS_SENTINEL_MASTER: sentinel.masterName,
    }
    expect(redisTopologyFromEnv(env).mode).toBe('sentinel')
    stack.startWorker(env)
    stack.startWorker(env)
    api = await stack.startApi(env)
    await Promise.all(stack.workers.map((w) => w.ready))
  }, 300_000)

  afterAll(async () => {
    await stack?.close()
  })

  it('finishes every operation exactly once after the primary is killed and the replica promoted', async () => {
    onTestFailed(() => stack.dumpLogs(300))
    const ids = new Map<string, string>()
    const create = async (name: string) => {
      const res = await postCluster(api.url, name, `sentinel-${name}`)
      expect(res.status, `create ${name}: ${JSON.stringify(res.body)}`).toBe(202)
      ids.set(name, res.body.id as string)
    }
    for (let i = 0; i < before; i++) await create(`sentinel-${i}`)

    // Mid-operation: steps have started, and the queue lives on the primary.
    const deadline = Date.now() + 60_000
    while ((await stack.db.operation.count({ where: { status: 'running', progress: { gt: 0 } } })) < 3) {
      expect(Date.now(), 'operations never got going').toBeLessThan(deadline)
      await sleep(100)
    }
    expect(await sentinel.keysOn(sentinel.primaryPort, stack.prefix)).toBeGreaterThan(0)
    const pids = stack.workers.map((w) => w.pid)

    await sentinel.killPrimary()
    const killedAt = Date.now()
    let promotedAt = 0
    while ((await sentinel.currentMasterPort()) !== sentinel.replicaPort) {
      expect(Date.now() - killedAt, 'Sentinel never promoted the replica').toBeLessThan(60_000)
      await sleep(100)
    }
    promotedAt = Date.now()
    stack.log(`[test] replica promoted ${promotedAt - killedAt} ms after the primary was killed`)

    // The same API, not restarted, accepts new work and reports ready on the promoted replica.
    for (let i = before; i < before + after; i++) await create(`sentinel-${i}`)
    const readyDeadline = Date.now() + 30_000
    for (;;) {
      const ready = await fetch(`${api.url}/readyz`).then((r) => r.status)
      if (ready === 200) break
      expect(Date.now(), '/readyz never came back').toBeLessThan(readyDeadline)
      await sleep(200)
    }

    const all = [...ids.values()]
    const books = await stack.expectAllReady(all, machinesPerCluster, 180_000)
    const finishedAfterKill = await stack.db.operation.count({
      where: { id: { in: all }, finishedAt: { gt: new Date(killedAt) } },
    })
    expect(finishedAfterKill, 'operations were in flight when the primary died').toBeGreaterThanOrEqual(
      before / 2,
    )

    // Nothing lost, nothing doubled.
    const rows = await stack.db.cluster.findMany({
      select: { name: true, _count: { select: { operations: true, machines: true } } },
    })
    expect(rows.map((r) => r.name).sort()).toEqual([...ids.keys()].sort())
    for (const r of rows) {
      expect(r._count.operations, `operations of ${r.name}`).toBe(1)
      expect(r._count.machines, `machines of ${r.name}`).toBe(machinesPerCluster)
    }

    // The same worker processes did it, through the promoted replica.
    expect(stack.workers.map((w) => w.pid)).toEqual(pids)
    expect(stack.workers.every((w) => w.alive())).toBe(true)
    expect(await sentinel.keysOn(sentinel.replicaPort, stack.prefix)).toBeGreaterThan(0)

    console.log(
      `[redis-sentinel] primary SIGKILLed with ${before} creates in flight; replica promoted in ` +
        `${((promotedAt - killedAt) / 1000).toFixed(1)} s; ${ids.size} creates succeeded ` +
        `(${finishedAfterKill} finished after the kill), ${books.simulatorAllocated} machines, 0 lost, 0 duplicated`,
    )
  })
})
