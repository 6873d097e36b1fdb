import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { issueNextClusterCa, retirePreviousClusterCas } from '../../../apps/worker/src/cluster-pki.ts'
import type { Operation } from '../../../packages/db/src/index.ts'
import { type TestStack, testMasterKey } from '../../../test/support/engine.ts'
import {
  clusterUrl,
  conditionOf,
  getCluster,
  startOperation,
  startStackWithCluster,
  waitForOperation,
} from './support.ts'

// The rotation steps on their own: a retried step adopts what the first run stored, a rotation
// that no longer matches the stored CAs fails as the user's problem, and the cluster stays Ready.
let stack: TestStack
let clusterId: string

beforeAll(async () => {
  ;({ stack, clusterId } = await startStackWithCluster('rot'))
}, 60_000)
afterAll(async () => stack?.close())

const generations = async () =>
  (
    await stack.db.clusterSecret.findMany({
      where: { clusterId, purpose: 'cluster-ca' },
      orderBy: { generation: 'asc' },
      select: { generation: true, publicPem: true },
    })
  ).map((row) => row.generation)

const operation = (id: string) => stack.db.operation.findUniqueOrThrow({ where: { id } })

describe('CA rotation steps', () => {
  it('start and complete are idempotent: a retried step changes nothing', async () => {
    const start = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'POST', `${clusterUrl('rot')}/rotate-ca`, { phase: 'start' })).id,
    )
    expect(start.status, JSON.stringify(start.steps)).toBe('succeeded')
    expect(await generations()).toEqual([1, 2])
    const stored = await stack.db.clusterSecret.findMany({ where: { clusterId, purpose: 'cluster-ca' } })

    // The worker died after the step committed: its retry finds generation 2 and generates nothing.
    const again = await issueNextClusterCa(stack.db, testMasterKey, await operation(start.id))
    expect(again?.message).toMatch(/already issued/)
    expect(await stack.db.clusterSecret.findMany({ where: { clusterId, purpose: 'cluster-ca' } })).toEqual(
      stored,
    )

    const complete = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'POST', `${clusterUrl('rot')}/rotate-ca`, { phase: 'complete' })).id,
    )
    expect(complete.status, JSON.stringify(complete.steps)).toBe('succeeded')
    expect(await generations()).toEqual([2])
    const retried = await retirePreviousClusterCas(stack.db, await operation(complete.id))
    expect(retried?.message).toMatch(/Nothing left to retire/)
    expect(await generations()).toEqual([2])

    const cluster = await getCluster(stack.app, 'rot')
    expect(cluster.status.phase).toBe('Ready')
    expect(conditionOf(cluster, 'CertificateAuthorityRotating')?.status).toBe('False')
    expect(conditionOf(cluster, 'Progressing')).toMatchObject({ status: 'False', reason: 'Succeeded' })
  })

  it('refuses a rotation that no longer matches the stored CAs, as the user’s problem', async () => {
    const stale = {
      ...(await stack.db.operation.findFirstOrThrow({
        where: { clusterId, kind: 'cluster.rotate-ca-start' },
      })),
    }
    // Generation 2 exists and is current; a start that would add generation 2 again after a
    // completed rotation cannot run, and one that skips a generation is refused.
    const skipping: Operation = {
      ...stale,
      params: { purpose: 'cluster-ca', generation: 5, previousGenerations: [4] },
    }
    await expect(issueNextClusterCa(stack.db, testMasterKey, skipping)).rejects.toMatchObject({
      code: 'ERR_INVALID_REQUEST',
      errorClass: 'user',
    })
    const notARotation: Operation = { ...stale, params: {} }
    await expect(retirePreviousClusterCas(stack.db, notARotation)).rejects.toMatchObject({
      code: 'ERR_INVALID_REQUEST',
    })
    expect(await generations()).toEqual([2])
  })
})
