#!/usr/bin/env node
// Drop-in replacement for Prisma's native `schema-engine` binary, for machines that
// cannot download it.  Point the official CLI at it:
//
//   PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma migrate dev
//
// It speaks the same protocol as the native binary (the CLI spawns it with
// `--datamodels <file>... --datasource <json>` and sends newline-delimited JSON-RPC
// 2.0 on stdin; `... cli can-connect-to-database|create-database|drop-database` for
// the one-shot helpers) and forwards every RPC to the same engine code compiled to
// WebAssembly, connected through @prisma/adapter-pg (see lib/schema-engine.mjs).
// PostgreSQL only.
import fs from 'node:fs'
import readline from 'node:readline'
import {
  connectionErrorCode,
  canConnect,
  createDatabase,
  describeEngineError,
  dropDatabase,
  loadSchemaEngine,
  openEngine,
} from './lib/schema-engine.mjs'

const argv = process.argv.slice(2)
const flag = (name) => {
  const out = []
  argv.forEach((a, i) => a === name && argv[i + 1] !== undefined && out.push(argv[i + 1]))
  return out
}

// Everything on stderr is JSON log lines, like the native engine's tracing output.
const log = (level, fields, target = 'schema_engine::logger') =>
  process.stderr.write(JSON.stringify({ timestamp: new Date().toISOString(), level, fields, target }) + '\n')

if (argv.includes('--version') || argv.includes('-V')) {
  const { version } = await loadSchemaEngine()
  process.stdout.write(`schema-engine-cli ${version}\n`)
  process.exit(0)
}

const datasource = JSON.parse(flag('--datasource')[0] ?? '{}')

// --- one-shot helpers: `schema-engine --datasource <json> cli <command>` ----------------
const cliIndex = argv.indexOf('cli')
if (cliIndex !== -1) {
  const sub = argv[cliIndex + 1]
  // The CLI drops the first stderr line (the native binary's start-up log) before
  // looking for the ERROR line, so emit the same kind of start-up line first.
  log('INFO', { message: 'Starting schema engine CLI', git_hash: (await loadSchemaEngine()).version }, 'schema_engine_cli')
  try {
    if (sub === 'can-connect-to-database') await canConnect(datasource.url)
    else if (sub === 'create-database') log('INFO', { message: `Database '${await createDatabase(datasource.url)}' was successfully created.` })
    else if (sub === 'drop-database') log('INFO', { message: `The database '${await dropDatabase(datasource.url)}' was successfully dropped.` })
    else throw new Error(`Unsupported schema-engine cli command: ${sub}`)
    process.exit(0)
  } catch (e) {
    const db = (() => { try { return new URL(datasource.url) } catch { return undefined } })()
    const code = connectionErrorCode(e)
    const message =
      code === 'P1003' && db
        ? `Database \`${decodeURIComponent(db.pathname.slice(1))}\` does not exist on the database server at \`${db.host}\`.`
        : e.message
    log('ERROR', { is_panic: false, error_code: code, message })
    process.exit(1)
  }
}

// --- JSON-RPC server -----------------------------------------------------------------------
const schemaFiles = flag('--datamodels').map((p) => [p, fs.readFileSync(p, 'utf8')])
const forward = (line) => {
  // The wasm engine already emits the native engine's JSON log format.
  process.stderr.write(line.endsWith('\n') ? line : line + '\n')
}
let opened // Promise<{ engine, adapterFactory }>
const open = () => (opened ??= openEngine({ schemaFiles, datasource, log: forward }))

const send = (msg) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...msg }) + '\n')

// Server-initiated requests (the native engine uses "print" for `migrate diff` output).
let nextOwnId = 1_000_000
const pendingOwn = new Map()
const request = (method, params) =>
  new Promise((resolve) => {
    const id = nextOwnId++
    pendingOwn.set(id, resolve)
    send({ id, method, params })
  })

const methods = {
  async getDatabaseVersion(engine, params) {
    return engine.version(params)
  },
  async diff(engine, params) {
    const { stdout, exitCode } = await engine.diff(params)
    if (stdout) await request('print', { content: stdout.replace(/\n$/, '') })
    return { exitCode, stdout: null }
  },
  async createDatabase(_engine, params) {
    return { databaseName: await createDatabase(params?.datasource?.url ?? datasource.url) }
  },
}

async function handle({ id, method, params }) {
  let adapterFactory
  try {
    const o = await open()
    adapterFactory = o.adapterFactory
    const impl = methods[method] ?? (typeof o.engine[method] === 'function' ? (engine, p) => engine[method](p) : undefined)
    if (!impl) throw Object.assign(new Error(`The wasm schema engine does not support the \`${method}\` method.`), { code: undefined })
    const result = await impl(o.engine, params)
    send({ id, result: result === undefined ? null : result })
  } catch (e) {
    const err = describeEngineError(e, adapterFactory)
    send({
      id,
      error: {
        code: 4466,
        message: 'An error happened. Check the data field for details.',
        data: { is_panic: err.isPanic, message: err.message, meta: err.meta ?? null, error_code: err.errorCode ?? null },
      },
    })
    if (err.isPanic) process.exit(101) // the wasm instance is unusable after a panic
  }
}

// The engine is stateful (&mut self): run requests strictly one after another.
let queue = Promise.resolve()
readline.createInterface({ input: process.stdin, crlfDelay: Infinity }).on('line', (line) => {
  if (!line.trim()) return
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    return log('ERROR', { message: `Could not parse JSON-RPC message: ${line.slice(0, 200)}` })
  }
  if (msg.method === undefined && pendingOwn.has(msg.id)) {
    pendingOwn.get(msg.id)(msg.result)
    pendingOwn.delete(msg.id)
    return
  }
  queue = queue.then(() => handle(msg))
}).on('close', async () => {
  await queue
  const o = await opened?.catch(() => undefined)
  o?.engine.free()
  process.exit(0)
})
