import { type ChildProcess, execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { askRedis, exited, freePort, spawnTracked } from './ephemeral-services.ts'

// Throwaway Redis topologies for the high-availability tests: a primary, a replica and a Sentinel;
// or a three-master Redis Cluster. Every server is a real redis-server on a free loopback port, in
// its own process group (spawnTracked), so it dies with the test process.

const run = promisify(execFile)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface Server {
  port: number
  child: ChildProcess
}

function startServer(dir: string, args: string[], lines: string[], label: string): Server {
  const child = spawnTracked('redis-server', args, { cwd: dir, dir })
  const push = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue
      lines.push(`[${label}] ${line}`)
      if (lines.length > 600) lines.splice(0, lines.length - 600)
    }
  }
  child.stdout?.on('data', push)
  child.stderr?.on('data', push)
  return { port: Number(args[args.indexOf('--port') + 1]), child }
}

const ask = (port: number, ...command: string[]) => askRedis(`redis://127.0.0.1:${port}`, ...command)

async function until(what: string, check: () => Promise<boolean>, lines: string[], timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`${what} within ${timeoutMs} ms:\n${lines.slice(-30).join('\n')}`)
    await sleep(100)
  }
}

const dataArgs = (port: number, dir: string) => [
  '--port',
  String(port),
  '--bind',
  '127.0.0.1',
  '--save',
  '',
  '--appendonly',
  'no',
  '--dir',
  dir,
]

export interface SentinelSet {
  masterName: string
  sentinelPort: number
  /** The primary at start, and its replica (the one Sentinel promotes). */
  primaryPort: number
  replicaPort: number
  /** SIGKILL to the primary: no shutdown, no last sync to the replica. */
  killPrimary(): Promise<void>
  /** The port Sentinel currently names as the master's. */
  currentMasterPort(): Promise<number | undefined>
  /** How many keys a server holds that start with `prefix`. */
  keysOn(port: number, prefix: string): Promise<number>
  logs(): string[]
  close(): Promise<void>
}

/**
 * A primary, a replica of it, and one Sentinel watching them with a quorum of 1 and short timeouts
 * (down after 1 s, failover timeout 3 s), so a killed primary is replaced within seconds.
 */
export async function startSentinelSet(masterName = 'kiln'): Promise<SentinelSet> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-sentinel-'))
  const lines: string[] = []
  const [primaryPort, replicaPort, sentinelPort] = [await freePort(), await freePort(), await freePort()]
  const primary = startServer(dir, dataArgs(primaryPort, dir), lines, `primary:${primaryPort}`)
  const replicaDir = mkdtempSync(join(dir, 'replica-'))
  const replica = startServer(
    dir,
    [...dataArgs(replicaPort, replicaDir), '--replicaof', '127.0.0.1', String(primaryPort)],
    lines,
    `replica:${replicaPort}`,
  )
  const servers = [primary, replica]
  try {
    await until(
      'the replica did not sync',
      async () => /master_link_status:up/.test(String(await ask(replicaPort, 'INFO', 'replication'))),
      lines,
    )
    const conf = join(dir, 'sentinel.conf')
    // Sentinel rewrites its configuration file as it learns the topology: it must be writable.
    writeFileSync(
      conf,
      [
        `port ${sentinelPort}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} 1`,
        `sentinel down-after-milliseconds ${masterName} 1000`,
        `sentinel failover-timeout ${masterName} 3000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    )
    const sentinel = startServer(dir, [conf, '--sentinel', '--port', String(sentinelPort)], lines, 'sentinel')
    servers.push(sentinel)
    await until(
      'Sentinel did not discover the replica',
      async () => {
        const replicas = (await ask(sentinelPort, 'SENTINEL', 'REPLICAS', masterName)) as
          | string[][]
          | undefined
        return (replicas ?? []).some((fields) => fields.includes(String(replicaPort)))
      },
      lines,
    )
  } catch (error) {
    for (const s of servers) s.child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
  return {
    masterName,
    sentinelPort,
    primaryPort,
    replicaPort,
    async killPrimary() {
      primary.child.kill('SIGKILL')
      await exited(primary.child)
    },
    async currentMasterPort() {
      const addr = (await ask(sentinelPort, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName)) as
        | string[]
        | undefined
      return addr ? Number(addr[1]) : undefined
    },
    async keysOn(port, prefix) {
      const keys = (await ask(port, 'KEYS', `${prefix}*`)) as string[] | undefined
      return keys?.length ?? 0
    },
    logs: () => [...lines],
    async close() {
      for (const s of servers) s.child.kill('SIGKILL')
      await Promise.all(servers.map((s) => exited(s.child)))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface RedisClusterSet {
  /** `host:port` of every master, as KILN_REDIS_CLUSTER_NODES takes them. */
  nodes: string[]
  logs(): string[]
  close(): Promise<void>
}

/** Three masters with `--cluster-enabled yes`, joined by `redis-cli --cluster create` (no replicas). */
export async function startRedisCluster(): Promise<RedisClusterSet> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-rcluster-'))
  const lines: string[] = []
  const servers: Server[] = []
  try {
    for (let i = 0; i < 3; i++) {
      const port = await freePort()
      const nodeDir = mkdtempSync(join(dir, `node-${i}-`))
      servers.push(
        startServer(
          dir,
          [
            ...dataArgs(port, nodeDir),
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(nodeDir, 'nodes.conf'),
            '--cluster-node-timeout',
            '2000',
          ],
          lines,
          `cluster:${port}`,
        ),
      )
    }
    for (const s of servers)
      await until(`node ${s.port} did not start`, async () => (await ask(s.port, 'PING')) === 'PONG', lines)
    const nodes = servers.map((s) => `127.0.0.1:${s.port}`)
    await run('redis-cli', ['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'])
    for (const s of servers)
      await until(
        `node ${s.port} did not see the cluster ok`,
        async () => /cluster_state:ok/.test(String(await ask(s.port, 'CLUSTER', 'INFO'))),
        lines,
      )
    return {
      nodes,
      logs: () => [...lines],
      async close() {
        for (const s of servers) s.child.kill('SIGKILL')
        await Promise.all(servers.map((s) => exited(s.child)))
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (error) {
    for (const s of servers) s.child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
