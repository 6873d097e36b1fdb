// Proves: Kiln runs through PgBouncer in transaction pooling mode. An API process and two worker
// processes reach PostgreSQL only through a PgBouncer with 20 server connections for ~50 client ones,
// so consecutive transactions of one client land on different server connections; anything that
// leaned on session state (a session advisory lock, LISTEN, SET, a named prepared statement) would
// break or hang here. Creates run end to end, the API follows one as server-sent events, and
// PgBouncer's own statistics show that the traffic went through it.
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { type PgBouncer, startPgBouncer } from '../support/pgbouncer.ts'
import {
  type ApiProcess,
  dataCentre,
  postCluster,
  type Stack,
  slowMachineCalls,
  startStack,
} from './harness.ts'

const creates = 6
const machinesPerCluster = 3

describe('pgbouncer in transaction mode', () => {
  let stack: Stack
  let bouncer: PgBouncer
  let api: ApiProcess

  beforeAll(async () => {
    stack = await startStack({
      simulator: dataCentre({ latency: slowMachineCalls(100, 300) }),
      controlPlane: 1,
      workers: 2,
    })
    // 20 server connections: at least the workers' total concurrency (2 × 8) and a few more. A step
    // holds its transaction (under the backend's capacity lock) across the backend call, and the
    // simulated backend keeps its books in PostgreSQL too: a smaller pool can fill up with waiters
    // (docs/high-availability.md, "Sizing the pool").
    bouncer = stack.adopt(
      await startPgBouncer({ postgresPort: stack.pg.port, database: 'kiln', poolSize: 20 }),
    )
    const env = { DATABASE_URL: bouncer.url() }
    stack.startWorker(env)
    stack.startWorker(env)
    api = await stack.startApi(env)
    await Promise.all(stack.workers.map((w) => w.ready))
  }, 300_000)

  afterAll(async () => {
    await stack?.close()
  })

  it('creates clusters end to end with every Kiln process behind the pooler', async () => {
    onTestFailed(() => stack.dumpLogs(200))
    const xactsBefore = Number(
      (await bouncer.show('STATS')).find((r) => r.database === 'kiln')?.total_xact_count ?? 0,
    )
    const ids: string[] = []
    for (let i = 0; i < creates; i++) {
      const res = await postCluster(api.url, `pgb-${i}`, `pgbouncer-${i}`)
      expect(res.status, JSON.stringify(res.body)).toBe(202)
      ids.push(res.body.id as string)
    }
    // Server-sent events through the pooled API, to the operation's end.
    const stream = await fetch(`${api.url}/v1/operations/${ids[0]}/events`, {
      signal: AbortSignal.timeout(120_000),
    })
    const events = (await stream.text()).split('\n\n').filter((b) => b.includes('event: operation'))
    expect(events.at(-1)).toContain('"status":"succeeded"')

    await stack.expectAllReady(ids, machinesPerCluster, 120_000)

    const pools = await bouncer.show('POOLS')
    const kiln = pools.find((r) => r.database === 'kiln')
    expect(kiln?.pool_mode).toBe('transaction')
    const xacts =
      Number((await bouncer.show('STATS')).find((r) => r.database === 'kiln')?.total_xact_count) - xactsBefore
    expect(xacts).toBeGreaterThan(creates * 10)
    console.log(
      `[pgbouncer] ${creates} creates succeeded with the API and 2 workers behind PgBouncer (transaction mode, ` +
        `20 server connections); ${xacts} transactions through it, ${events.length} SSE events`,
    )
  })
})
