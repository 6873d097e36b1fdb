import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import { aSimulatedBackend, clusterUrl, createCluster, getCluster, waitForOperation } from './support.ts'

// A cluster's TTL: once `expiresAt` passes, the worker deletes it as DELETE would.

let stack: TestStack

beforeAll(async () => {
  // The periodic loop is off: the test drives expiry itself.
  stack = await startTestStack({ engine: { expiryIntervalMs: 0 } })
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
})

afterAll(async () => {
  await stack?.close()
})

describe('cluster expiry', () => {
  it('deletes clusters past their expiresAt, and only those', async () => {
    // An hour away, so a busy machine's slow creates cannot see it pass early; the test then lets it
    // pass by moving it into the past instead of sleeping until a guessed moment.
    const expiresAt = new Date(Date.now() + 3600_000).toISOString()
    for (const [name, extra] of [
      ['short-lived', { expiresAt }],
      ['long-lived', { expiresAt: new Date(Date.now() + 7200_000).toISOString() }],
      ['forever', {}],
    ] as const) {
      const op = await waitForOperation(
        stack.app,
        (await createCluster(stack.app, { name, template: 'k8s-1.31', ...extra })).id,
      )
      expect(op.status).toBe('succeeded')
    }
    expect((await getCluster(stack.app, 'short-lived')).status.phase).toBe('Ready')
    expect(await stack.engine!.expireOnce()).toBe(0)

    const shortLived = await stack.db.cluster.findFirstOrThrow({ where: { name: 'short-lived' } })
    expect(shortLived.expiresAt?.toISOString()).toBe(expiresAt)
    await stack.db.cluster.update({
      where: { id: shortLived.id },
      data: { expiresAt: new Date(Date.now() - 1) },
    })
    expect(await stack.engine!.expireOnce()).toBe(1)
    // Asking again while the delete runs starts nothing new.
    expect(await stack.engine!.expireOnce()).toBe(0)
    const deleting = await stack.db.operation.findFirstOrThrow({
      where: { kind: 'cluster.delete' },
      orderBy: { createdAt: 'desc' },
    })
    expect(deleting.requestedBy).toBe('system:expiry')
    expect((await waitForOperation(stack.app, deleting.id)).status).toBe('succeeded')
    expect((await stack.app.inject({ method: 'GET', url: clusterUrl('short-lived') })).statusCode).toBe(404)
    expect((await getCluster(stack.app, 'long-lived')).status.phase).toBe('Ready')
    expect((await getCluster(stack.app, 'forever')).status.phase).toBe('Ready')
  })
})
