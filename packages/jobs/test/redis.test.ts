import { describe, expect, it } from 'vitest'
import { queueConnection, queuePrefixFor, redisTopologyFromEnv } from '../src/redis.ts'

// The failover itself is proven against real servers in test/reliability/redis-sentinel.test.ts;
// this is how the environment selects a topology.
describe('redis topology from the environment', () => {
  it('is a single server with only REDIS_URL', () => {
    const t = redisTopologyFromEnv({ REDIS_URL: 'redis://10.0.0.5:6379/2' })
    expect(t).toEqual({ mode: 'standalone', url: 'redis://10.0.0.5:6379/2' })
    expect(queueConnection(t, { maxRetriesPerRequest: null })).toEqual({
      url: 'redis://10.0.0.5:6379/2',
      maxRetriesPerRequest: null,
    })
    expect(queuePrefixFor(t, 'kiln')).toBe('kiln')
  })

  it('is a Sentinel-managed primary, with password and database from REDIS_URL', () => {
    const t = redisTopologyFromEnv({
      KILN_REDIS_SENTINELS: 'sentinel-0:26379, sentinel-1:26379,[::1]:26380',
      KILN_REDIS_SENTINEL_MASTER: 'kiln',
      REDIS_URL: 'redis://:s%40cret@ignored:6379/3',
    })
    expect(t).toEqual({
      mode: 'sentinel',
      sentinels: [
        { host: 'sentinel-0', port: 26379 },
        { host: 'sentinel-1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      masterName: 'kiln',
      db: 3,
      password: 's@cret',
    })
    expect(queueConnection(t, { maxRetriesPerRequest: 1 })).toMatchObject({
      sentinels: t.mode === 'sentinel' ? t.sentinels : [],
      name: 'kiln',
      db: 3,
      password: 's@cret',
      maxRetriesPerRequest: 1,
    })
    expect(queuePrefixFor(t, 'kiln')).toBe('kiln')
  })

  it('is a Redis Cluster, whose queue prefix is hash-tagged; KILN_REDIS_PASSWORD wins', () => {
    const t = redisTopologyFromEnv({
      KILN_REDIS_CLUSTER_NODES: 'redis-0:7000,redis-1:7001',
      KILN_REDIS_PASSWORD: 'pw',
      REDIS_URL: 'rediss://user:other@x:1',
    })
    expect(t).toEqual({
      mode: 'cluster',
      nodes: [
        { host: 'redis-0', port: 7000 },
        { host: 'redis-1', port: 7001 },
      ],
      username: 'user',
      password: 'pw',
      tls: true,
    })
    expect(queuePrefixFor(t, 'kiln')).toBe('{kiln}')
    expect(queuePrefixFor(t, '{kiln}-eu')).toBe('{kiln}-eu')
  })

  it('names what is missing or contradictory', () => {
    expect(() => redisTopologyFromEnv({})).toThrow(/REDIS_URL: required/)
    expect(() => redisTopologyFromEnv({ KILN_REDIS_SENTINELS: 'a:1' })).toThrow(/KILN_REDIS_SENTINEL_MASTER/)
    expect(() =>
      redisTopologyFromEnv({ KILN_REDIS_SENTINELS: 'a:1', KILN_REDIS_CLUSTER_NODES: 'b:2' }),
    ).toThrow(/not both/)
    expect(() => redisTopologyFromEnv({ KILN_REDIS_CLUSTER_NODES: 'redis-0' })).toThrow(
      /KILN_REDIS_CLUSTER_NODES: "redis-0" is not host:port/,
    )
  })
})
