import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { loadavg } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import pg from 'pg'

// Start-up time (spawn → ready) and idle RSS of each process, built JavaScript
// (`node --enable-source-maps apps/<app>/dist/main.js`, after `npm run build`) against TypeScript
// through tsx (`node --import tsx apps/<app>/src/main.ts`), on a fresh database on the local
// PostgreSQL and Redis. The API runs as one process (KILN_API_PROCESSES=1) so the figures are per
// process. Ready is: the API answers /healthz; the worker, simulator and issuer print their
// ready line. RSS is read from /proc 5 s after ready. Each figure is the median of --runs runs.
//
//   npm run build && npx tsx scripts/measure-startup.ts [--runs 3]

const runs = Number(process.argv[process.argv.indexOf('--runs') + 1] || 3)
const server = process.env.KILN_MEASURE_POSTGRES ?? 'postgresql://postgres@127.0.0.1:5432'
const database = `kiln_measure_${process.pid}`
const env = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  DATABASE_URL: `${server}/${database}`,
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  KILN_QUEUE_PREFIX: `kiln-measure-${process.pid}`,
  KILN_DEV_MODE: 'true',
  KILN_API_PROCESSES: '1',
  LOG_LEVEL: 'info',
}

interface Subject {
  name: string
  app: string
  ready: (child: ChildProcess, output: () => string, port: number) => Promise<boolean>
  portVariable?: string
}
const printed = (text: string) => async (_: ChildProcess, output: () => string) => output().includes(text)
const subjects: Subject[] = [
  {
    name: 'api',
    app: 'api',
    portVariable: 'PORT',
    ready: async (_, __, port) =>
      (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok ?? false,
  },
  { name: 'worker', app: 'worker', ready: printed('"worker ready"') },
  { name: 'simulator', app: 'simulator', portVariable: 'SIMULATOR_API_PORT', ready: printed('server ready') },
  {
    name: 'issuer',
    app: 'issuer',
    portVariable: 'KILN_ISSUER_PORT',
    ready: printed('Development OIDC issuer on'),
  },
]
const variants = {
  built: (app: string) => ['--enable-source-maps', `apps/${app}/dist/main.js`],
  tsx: (app: string) => ['--import', 'tsx', `apps/${app}/src/main.ts`],
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

const rssMiB = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024

async function measure(subject: Subject, args: string[]): Promise<{ startMs: number; rssMiB: number }> {
  const port = await freePort()
  const started = performance.now()
  const child = spawn('node', args, {
    env: { ...env, ...(subject.portVariable ? { [subject.portVariable]: String(port) } : {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stderr.on('data', (chunk) => (output += chunk))
  try {
    while (!(await subject.ready(child, () => output, port))) {
      if (child.exitCode !== null) throw new Error(`${subject.name} exited:\n${output}`)
      if (performance.now() - started > 180_000) throw new Error(`${subject.name} not ready in 180 s`)
      await sleep(20)
    }
    const startMs = performance.now() - started
    await sleep(5000)
    return { startMs, rssMiB: rssMiB(child.pid!) }
  } finally {
    child.kill('SIGTERM')
    await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!

const admin = new pg.Client({ connectionString: `${server}/postgres` })
await admin.connect()
try {
  execFileSync('node', ['apps/api/dist/migrate.js'], { env, stdio: 'ignore' })
  execFileSync('node', ['apps/api/dist/seed.main.js'], { env, stdio: 'ignore' })
  console.log(
    `load average before: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ${runs} runs each\n`,
  )
  console.log('| process | built: start-up | tsx: start-up | built: idle RSS | tsx: idle RSS |')
  console.log('|---|---|---|---|---|')
  for (const subject of subjects) {
    const figures: Record<string, { startMs: number; rssMiB: number }[]> = { built: [], tsx: [] }
    // Alternated, so a change in the machine's load falls on both.
    for (let i = 0; i < runs; i++) {
      for (const [variant, args] of Object.entries(variants)) {
        figures[variant]!.push(await measure(subject, args(subject.app)))
      }
    }
    const start = (v: string) => `${(median(figures[v]!.map((f) => f.startMs)) / 1000).toFixed(2)} s`
    const rss = (v: string) => `${median(figures[v]!.map((f) => f.rssMiB)).toFixed(0)} MiB`
    console.log(`| ${subject.name} | ${start('built')} | ${start('tsx')} | ${rss('built')} | ${rss('tsx')} |`)
  }
  console.log(
    `\nload average after: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  )
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
  await admin.end()
  const redis = new Redis(env.REDIS_URL)
  const keys = await redis.keys(`${env.KILN_QUEUE_PREFIX}:*`)
  if (keys.length > 0) await redis.del(...keys)
  redis.disconnect()
}
