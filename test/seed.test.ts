import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { demoCatalogue, seedDemo } from '../apps/api/src/seed.ts'
import { startTestStack, type TestStack } from './support/engine.ts'

// What `scripts/up.sh` seeds must work: every public template builds a Ready cluster through the
// API and the real engine, at the demo's latency.
describe('the embedded default (demo seed)', () => {
  let stack: TestStack
  beforeAll(async () => {
    stack = await startTestStack({ engine: false })
    await seedDemo(stack.db)
    await seedDemo(stack.db) // idempotent: a second start changes nothing
    // The demo's clusters answer on :6443 (scripts/up.sh); here, on this stack's simulated API server.
    const backend = await stack.db.backend.findUniqueOrThrow({ where: { name: demoCatalogue.backend.name } })
    await stack.db.backend.update({
      where: { id: backend.id },
      data: {
        config: {
          ...(backend.config as object),
          apiServerUrl: `https://127.0.0.1:${stack.apiServer.port}`,
        },
      },
    })
    await stack.startEngine()
  })
  afterAll(async () => stack?.close())

  it('seeds once, however often it runs', async () => {
    expect(await stack.db.clusterTemplate.count()).toBe(demoCatalogue.templates.length)
    expect(await stack.db.machineClass.count()).toBe(demoCatalogue.machineClasses.length)
    expect(await stack.db.project.count({ where: { name: 'demo' } })).toBe(1)
  })

  it('builds a Ready cluster from every public template', async () => {
    const started = Date.now()
    const ops = await Promise.all(
      demoCatalogue.templates.map(async (t, i) => {
        const res = await stack.app.inject({
          method: 'POST',
          url: '/v1/projects/demo/clusters',
          payload: { name: `demo-${i}`, template: t.name },
        })
        expect(res.statusCode, res.body).toBe(202)
        return res.json<{ id: string }>().id
      }),
    )
    for (const id of ops) {
      let op = { status: 'pending', error: null as unknown }
      while (op.status === 'pending' || op.status === 'running') {
        op = (await stack.app.inject({ url: `/v1/operations/${id}?wait=20s` })).json()
      }
      expect(op.status, JSON.stringify(op.error)).toBe('succeeded')
    }
    const elapsed = Date.now() - started
    // Demo latency is 0.5–2.5 s per backend call, a few calls per create: seconds, not minutes.
    expect(elapsed).toBeLessThan(30_000)
    const list = (await stack.app.inject({ url: '/v1/projects/demo/clusters?phase=Ready' })).json<{
      items: unknown[]
    }>()
    expect(list.items).toHaveLength(demoCatalogue.templates.length)
  }, 60_000)
})
