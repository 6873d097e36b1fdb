import type { ConnectionOptions } from 'bullmq'
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis'

// Every Kiln process reaches Redis through this module, so one set of variables picks the topology:
// a single server (REDIS_URL), a Sentinel-managed primary (KILN_REDIS_SENTINELS +
// KILN_REDIS_SENTINEL_MASTER) or a Redis Cluster (KILN_REDIS_CLUSTER_NODES).

export interface HostPort {
  host: string
  port: number
}

interface RedisAuth {
  username?: string
  password?: string
  /** `rediss://` in REDIS_URL: TLS to the data nodes. */
  tls?: boolean
}

export type RedisTopology =
  | { mode: 'standalone'; url: string }
  | ({ mode: 'sentinel'; sentinels: HostPort[]; masterName: string; db: number } & RedisAuth)
  | ({ mode: 'cluster'; nodes: HostPort[] } & RedisAuth)

/** A client for plain commands (rate limits, OIDC sessions, readiness): one server or a cluster. */
export type RedisClient = Redis | Cluster

function hostPorts(variable: string, text: string): HostPort[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
  if (list.length === 0) throw new Error(`Invalid configuration:\n  /${variable}: no host:port in it`)
  return list.map((entry) => {
    const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(entry)
    const port = Number(match?.[2])
    if (!match || port < 1 || port > 65535)
      throw new Error(`Invalid configuration:\n  /${variable}: "${entry}" is not host:port`)
    return { host: match[1]!, port }
  })
}

/**
 * Reads the Redis topology from the environment. Sentinel and Cluster take the password (and the
 * Sentinel database number) from REDIS_URL's userinfo and path when it is set, or from
 * KILN_REDIS_PASSWORD; REDIS_URL itself is only required for a single server.
 */
export function redisTopologyFromEnv(env: Record<string, string | undefined>): RedisTopology {
  const sentinels = env.KILN_REDIS_SENTINELS?.trim()
  const clusterNodes = env.KILN_REDIS_CLUSTER_NODES?.trim()
  const url = env.REDIS_URL?.trim() || undefined
  if (sentinels && clusterNodes)
    throw new Error(
      'Invalid configuration:\n  /KILN_REDIS_SENTINELS: set either it or KILN_REDIS_CLUSTER_NODES, not both',
    )
  if (!sentinels && !clusterNodes) {
    if (!url)
      throw new Error(
        'Invalid configuration:\n  /REDIS_URL: required (or KILN_REDIS_SENTINELS with KILN_REDIS_SENTINEL_MASTER, or KILN_REDIS_CLUSTER_NODES)',
      )
    return { mode: 'standalone', url }
  }
  const parsed = url ? new URL(url) : undefined
  const auth: RedisAuth = {}
  const username = parsed?.username ? decodeURIComponent(parsed.username) : undefined
  const password =
    env.KILN_REDIS_PASSWORD || (parsed?.password ? decodeURIComponent(parsed.password) : undefined)
  if (username) auth.username = username
  if (password) auth.password = password
  if (parsed?.protocol === 'rediss:') auth.tls = true
  if (clusterNodes)
    return { mode: 'cluster', nodes: hostPorts('KILN_REDIS_CLUSTER_NODES', clusterNodes), ...auth }
  const masterName = env.KILN_REDIS_SENTINEL_MASTER?.trim()
  if (!masterName)
    throw new Error(
      'Invalid configuration:\n  /KILN_REDIS_SENTINEL_MASTER: required with KILN_REDIS_SENTINELS (the monitored master name)',
    )
  const db = Number(parsed?.pathname.replace(/^\//, '') || 0)
  if (!Number.isInteger(db) || db < 0)
    throw new Error(`Invalid configuration:\n  /REDIS_URL: bad database "${db}"`)
  return {
    mode: 'sentinel',
    sentinels: hostPorts('KILN_REDIS_SENTINELS', sentinels!),
    masterName,
    db,
    ...auth,
  }
}

function authOptions(t: RedisAuth): RedisOptions {
  return {
    ...(t.username ? { username: t.username } : {}),
    ...(t.password ? { password: t.password } : {}),
    ...(t.tls ? { tls: {} } : {}),
  }
}

function clusterOf(t: Extract<RedisTopology, { mode: 'cluster' }>, options: RedisOptions): Cluster {
  const { enableOfflineQueue, lazyConnect, ...perNode } = options
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...authOptions(t), ...perNode },
    ...(enableOfflineQueue !== undefined ? { enableOfflineQueue } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
  }
  return new Cluster(t.nodes, clusterOptions)
}

/** A client for plain commands; `options` are ioredis' (retries, offline queue…), applied per node. */
export function createRedisClient(t: RedisTopology, options: RedisOptions = {}): RedisClient {
  switch (t.mode) {
    case 'standalone':
      return new Redis(t.url, options)
    case 'sentinel':
      return new Redis(sentinelOptions(t, options))
    case 'cluster':
      return clusterOf(t, options)
  }
}

function sentinelOptions(
  t: Extract<RedisTopology, { mode: 'sentinel' }>,
  options: RedisOptions,
): RedisOptions {
  return { sentinels: t.sentinels, name: t.masterName, db: t.db, ...authOptions(t), ...options }
}

/**
 * BullMQ's connection for queues and workers. A single server or a Sentinel primary is given as
 * options (BullMQ opens and closes its own connections); a Cluster as a client, the only form BullMQ
 * takes one in, which `closeQueueConnection` disconnects.
 */
export function queueConnection(t: RedisTopology, options: RedisOptions = {}): ConnectionOptions {
  switch (t.mode) {
    case 'standalone':
      return { url: t.url, ...options }
    case 'sentinel':
      return sentinelOptions(t, options)
    case 'cluster':
      return clusterOf(t, options)
  }
}

/** Disconnects a connection `queueConnection` opened (a Cluster client); options need nothing. */
export async function closeQueueConnection(connection: ConnectionOptions): Promise<void> {
  if (connection instanceof Cluster || connection instanceof Redis)
    await connection.quit().catch(() => undefined)
}

/**
 * BullMQ's key prefix. On a Redis Cluster every key of a queue must hash to one slot (its Lua scripts
 * touch several keys at once), so the prefix is wrapped in a hash tag: `kiln` becomes `{kiln}`.
 */
export function queuePrefixFor(t: RedisTopology, prefix: string): string {
  if (t.mode !== 'cluster' || /\{[^}]+\}/.test(prefix)) return prefix
  return `{${prefix}}`
}
