import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { exited, freePort, spawnTracked } from './ephemeral-services.ts'

// A throwaway PgBouncer (Debian's package; scripts/test-tools.sh installs it) in front of a test
// PostgreSQL, in transaction pooling mode: the mode a production pooler runs in, and the one that
// breaks code relying on session state (session advisory locks, LISTEN, SET, named statements).

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface PgBouncer {
  port: number
  /** A connection string for `database` through the pooler. */
  url(database?: string): string
  /** SHOW <what> on the admin console (simple query protocol only). */
  show(what: 'POOLS' | 'STATS' | 'CONFIG'): Promise<Record<string, unknown>[]>
  logs(): string[]
  close(): Promise<void>
}

export async function startPgBouncer(options: {
  postgresPort: number
  database: string
  /** Server connections per database/user pair: few, so that clients share them. */
  poolSize?: number
}): Promise<PgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-pgbouncer-'))
  // PgBouncer refuses to run as root; it runs as postgres, which must read its files.
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  chownSync(dir, uid, gid)
  const port = await freePort()
  const users = join(dir, 'userlist.txt')
  writeFileSync(users, '"postgres" ""\n')
  const ini = join(dir, 'pgbouncer.ini')
  writeFileSync(
    ini,
    [
      '[databases]',
      `${options.database} = host=127.0.0.1 port=${options.postgresPort} dbname=${options.database}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${users}`,
      'admin_users = postgres',
      'pool_mode = transaction',
      `default_pool_size = ${options.poolSize ?? 5}`,
      'max_client_conn = 1000',
      // node-postgres sends none of these, but tools do; unknown startup parameters are refused otherwise.
      'ignore_startup_parameters = extra_float_digits,options',
      '',
    ].join('\n'),
  )
  for (const file of [users, ini]) chownSync(file, uid, gid)
  const lines: string[] = []
  const child = spawnTracked('runuser', ['-u', 'postgres', '--', '/usr/sbin/pgbouncer', ini], {
    cwd: dir,
    dir,
  })
  const push = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) {
      if (line.trim() === '') continue
      lines.push(`[pgbouncer:${port}] ${line}`)
      if (lines.length > 400) lines.splice(0, lines.length - 400)
    }
  }
  child.stdout?.on('data', push)
  child.stderr?.on('data', push)
  const url = (database = options.database) => `postgresql://postgres@127.0.0.1:${port}/${database}`

  const show = async (what: string) => {
    const client = new pg.Client({ connectionString: url('pgbouncer') })
    await client.connect()
    try {
      return (await client.query(`SHOW ${what}`)).rows as Record<string, unknown>[]
    } finally {
      await client.end()
    }
  }
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      await show('POOLS')
      break
    } catch (error) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`pgbouncer did not start: ${error}\n${lines.slice(-20).join('\n')}`)
      await sleep(100)
    }
  }
  return {
    port,
    url,
    show,
    logs: () => [...lines],
    async close() {
      child.kill('SIGKILL')
      await exited(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
