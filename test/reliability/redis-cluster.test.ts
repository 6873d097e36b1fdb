// Proves: Kiln runs on a Redis Cluster (KILN_REDIS_CLUSTER_NODES). Three masters joined by
// `redis-cli --cluster create`; an API process and a worker process reach them only through the
// cluster client. Creates go end to end, and the queue's keys carry the hash-tagged prefix
// (`{kiln-reliability}`), so BullMQ's multi-key scripts stay within one slot. A smoke test: no node
// is killed here (Sentinel failover is redis-sentinel.test.ts).
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest'
import { askRedis } from '../support/ephemeral-services.ts'
import { type RedisClusterSet, startRedisCluster } from '../support/redis-ha.ts'
import { type ApiProcess, dataCentre, postCluster, type Stack, startStack } from './harness.ts'

const creates = 2
const machinesPerCluster = 3

describe('redis cluster', () => {
  let stack: Stack
  let cluster: RedisClusterSet
  let api: ApiProcess

  beforeAll(async () => {
    stack = await startStack({ simulator: dataCentre(), controlPlane: 1, workers: 2 })
    cluster = stack.adopt(await startRedisCluster())
    const env = { REDIS_URL: undefined, KILN_REDIS_CLUSTER_NODES: cluster.nodes.join(',') }
    stack.startWorker(env)
    api = await stack.startApi(env)
    await Promise.all(stack.workers.map((w) => w.ready))
  }, 300_000)

  afterAll(async () => {
    await stack?.close()
  })

  it('creates clusters end to end with the queue on a Redis Cluster', async () => {
    onTestFailed(() => stack.dumpLogs(200))
    expect((await fetch(`${api.url}/readyz`)).status).toBe(200)
    const ids: string[] = []
    for (let i = 0; i < creates; i++) {
      const res = await postCluster(api.url, `rc-${i}`, `redis-cluster-${i}`)
      expect(res.status, JSON.stringify(res.body)).toBe(202)
      ids.push(res.body.id as string)
    }
    await stack.expectAllReady(ids, machinesPerCluster, 120_000)

    // Every queue key is hash-tagged, so all of them live on the one node owning that slot.
    const keysPerNode = await Promise.all(
      cluster.nodes.map(async (node) => {
        const keys = ((await askRedis(`redis://${node}`, 'KEYS', '*')) as string[] | undefined) ?? []
        return keys.filter((k) => k.includes('kiln-reliability'))
      }),
    )
    const queueKeys = keysPerNode.flat()
    expect(queueKeys.length).toBeGreaterThan(0)
    expect(queueKeys.filter((k) => !k.startsWith('{kiln-reliability}:'))).toEqual([])
    expect(keysPerNode.filter((keys) => keys.length > 0)).toHaveLength(1)
    console.log(
      `[redis-cluster] ${creates} creates succeeded over a 3-master Redis Cluster; ${queueKeys.length} queue keys, all under {kiln-reliability}`,
    )
  })
})
