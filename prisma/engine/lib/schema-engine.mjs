// Offline Prisma Migrate building blocks: Prisma's own schema engine compiled to
// WebAssembly (@prisma/schema-engine-wasm), talking to PostgreSQL through the
// official driver adapter (@prisma/adapter-pg).  No native binary, no network.
//
// Used by prisma/engine/schema-engine.mjs
// (drop-in PRISMA_SCHEMA_ENGINE_BINARY for the official `prisma` CLI).
import fs from 'node:fs'
import { randomUUID } from 'node:crypto'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { createRequire } from 'node:module'
import pg from 'pg'
import { parse as parsePgUrl } from 'pg-connection-string'
import { PrismaPg } from '@prisma/adapter-pg'
import { DriverAdapterError, bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils'

const require = createRequire(import.meta.url)

// ---------------------------------------------------------------------------
// 1. Loading the WebAssembly schema engine
// ---------------------------------------------------------------------------

/** The engine commit the installed `prisma` CLI was built against. */
export function expectedEngineVersion() {
  try {
    return createRequire(require.resolve('prisma/package.json'))('@prisma/engines-version').enginesVersion
  } catch {
    return undefined // prisma CLI not installed (e.g. production image): nothing to compare with
  }
}

function cliWasmPath() {
  try {
    return path.join(path.dirname(require.resolve('prisma/package.json')), 'build', 'schema_engine_bg.wasm')
  } catch {
    return undefined
  }
}

let loaded
/**
 * Instantiates the wasm engine once per process (wasm-bindgen keeps global state).
 *
 * The JS glue always comes from the npm package `@prisma/schema-engine-wasm`.
 * The .wasm binary is chosen by PRISMA_SCHEMA_ENGINE_WASM:
 *   - "auto" (default): `prisma/build/schema_engine_bg.wasm` -- the exact engine
 *     build (same commit as @prisma/engines-version) that the installed prisma CLI
 *     ships, and the file Prisma 6's own CLI loaded for its wasm migrations -- if its
 *     import/export table matches the glue; otherwise the package's own .wasm.
 *   - "package": always the .wasm shipped inside @prisma/schema-engine-wasm.
 *   - "cli": always prisma/build/schema_engine_bg.wasm (fails if incompatible).
 *   - an absolute path to a .wasm file.
 */
export async function loadSchemaEngine() {
  if (loaded) return loaded
  const gluePath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg')
  const glue = await import('@prisma/schema-engine-wasm/schema_engine_bg')
  const packageWasm = path.join(path.dirname(gluePath), 'schema_engine_bg.wasm')
  const cliWasm = cliWasmPath()
  const packageModule = new WebAssembly.Module(fs.readFileSync(packageWasm))
  const wantedExports = WebAssembly.Module.exports(packageModule).map((e) => e.name)

  const compatible = (mod) =>
    WebAssembly.Module.imports(mod).every((i) => i.module === './schema_engine_bg.js' && typeof glue[i.name] === 'function') &&
    wantedExports.every((name) => WebAssembly.Module.exports(mod).some((e) => e.name === name))

  const choice = process.env.PRISMA_SCHEMA_ENGINE_WASM || 'auto'
  let wasmPath = packageWasm
  let mod = packageModule
  if (choice === 'cli' || choice === 'auto' || path.isAbsolute(choice)) {
    const candidate = path.isAbsolute(choice) ? choice : cliWasm
    if (candidate && fs.existsSync(candidate)) {
      const candidateModule = new WebAssembly.Module(fs.readFileSync(candidate))
      if (compatible(candidateModule)) {
        wasmPath = candidate
        mod = candidateModule
      } else if (choice !== 'auto') {
        throw new Error(`${candidate} is not ABI-compatible with the JS glue of @prisma/schema-engine-wasm`)
      }
    } else if (choice !== 'auto') {
      throw new Error(`${candidate} does not exist`)
    }
  }

  // wasm-bindgen's `panic` hook reports through this global (see prisma-engines).
  globalThis.PRISMA_WASM_PANIC_REGISTRY ??= { message: '', set_message(m) { this.message = `RuntimeError: ${m}` } }
  const instance = new WebAssembly.Instance(mod, { './schema_engine_bg.js': glue })
  glue.__wbg_set_wasm(instance.exports)
  instance.exports.__wbindgen_start()
  loaded = { SchemaEngine: glue.SchemaEngine, version: glue.version(), wasmPath }
  return loaded
}

// ---------------------------------------------------------------------------
// 2. A migration-aware PostgreSQL driver adapter factory
// ---------------------------------------------------------------------------

// Work-around A: @prisma/adapter-pg 7.10.x maps the catalog type "name" but not the
// internal one-byte type "char" (OID 18), which the schema describer selects from
// pg_catalog (relkind, contype, ...).  Without this every describe (migrate dev,
// diff, status with drift check) fails with
//   "Column type 'char' could not be deserialized from the database."
// "char" values arrive in text format exactly like `text`, so we report OID 25.
// Only this migration process is affected; the application runtime is untouched.
let charPatched = false
function reportCharColumnsAsText() {
  if (charPatched) return
  const adapterPg = createRequire(require.resolve('@prisma/adapter-pg')).resolve('pg')
  if (adapterPg !== require.resolve('pg')) {
    throw new Error(`@prisma/adapter-pg uses a different copy of pg (${adapterPg}); dedupe pg (npm dedupe)`)
  }
  const addFields = pg.Result.prototype.addFields
  pg.Result.prototype.addFields = function (fieldDescriptions) {
    for (const f of fieldDescriptions) if (f.dataTypeID === 18 && (f.format ?? 'text') === 'text') f.dataTypeID = 25
    return addFields.call(this, fieldDescriptions)
  }
  charPatched = true
}

function toDriverAdapterError(e) {
  if (e && typeof e.code === 'string' && e.severity) {
    return new DriverAdapterError({
      kind: 'postgres',
      code: e.code,
      severity: e.severity,
      message: e.message,
      detail: e.detail,
      column: e.column,
      hint: e.hint,
    })
  }
  return e
}

// Work-around B: adapter-pg's executeScript() splits the script on every ';' and runs
// the pieces one by one on pooled connections.  That breaks migrations containing
// function bodies / DO blocks / string literals with ';' and is not atomic.  The
// native engine sends the whole migration.sql as ONE simple-protocol query (which
// PostgreSQL runs as one implicit transaction); do exactly that.
function withWholeScriptExecution(adapter) {
  const pool = adapter.underlyingDriver()
  adapter.executeScript = async (script) => {
    try {
      await pool.query(script)
    } catch (e) {
      throw toDriverAdapterError(e)
    }
  }
  return adapter
}

function pgConfig(url) {
  const { schema, ...config } = parsePgUrl(url)
  // Drop Prisma-specific URL parameters that node-postgres does not understand.
  for (const k of ['connection_limit', 'pool_timeout', 'connect_timeout', 'socket_timeout', 'sslaccept', 'pgbouncer', 'statement_cache_size']) delete config[k]
  return { config, schema: schema || undefined }
}

async function currentDatabase(adapter) {
  const r = await adapter.queryRaw({ sql: 'SELECT current_database()::text AS db', args: [], argTypes: [] })
  return r.rows[0][0]
}

async function withAdminClient(config, fn) {
  const client = new pg.Client(config)
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/**
 * SqlMigrationAwareDriverAdapterFactory for PostgreSQL (bound for the wasm engine).
 *
 * Work-around C: adapter-pg 7.10.x's own connectToShadowDb() is unusable:
 *  - it spreads `{ ...config, database }`, but node-postgres lets `connectionString`
 *    override `database`, so with `new PrismaPg({ connectionString })` the "shadow"
 *    database IS the main database;
 *  - its dispose() runs DROP DATABASE before closing the shadow pool, which fails with
 *    "database ... is being accessed by other users" and leaks the shadow database.
 * So the shadow database lifecycle is implemented here, like the native engine does
 * it: CREATE DATABASE prisma_migrate_shadow_db_<uuid>, use it, close, DROP DATABASE;
 * or use datasource.shadowDatabaseUrl when configured.  As a last line of defence we
 * refuse to continue if the shadow connection lands in the main database.
 */
export function createPgAdapterFactory({ url, shadowDatabaseUrl }) {
  if (!url) throw new Error('datasource.url is not set in prisma.config.ts')
  reportCharColumnsAsText()
  const main = pgConfig(url)
  const mainFactory = new PrismaPg(main.config, { schema: main.schema })
  const factory = {
    provider: mainFactory.provider,
    adapterName: mainFactory.adapterName,
    async connect() {
      return withWholeScriptExecution(await mainFactory.connect())
    },
    async connectToShadowDb() {
      let shadow
      if (shadowDatabaseUrl) {
        const s = pgConfig(shadowDatabaseUrl)
        if (s.config.database === main.config.database && s.config.host === main.config.host && s.config.port === main.config.port) {
          throw new Error('The shadow database you configured appears to be the same as the main database.')
        }
        shadow = await new PrismaPg(s.config).connect()
      } else {
        const name = `prisma_migrate_shadow_db_${randomUUID()}`
        await withAdminClient(main.config, (c) => c.query(`CREATE DATABASE "${name}"`))
        shadow = await new PrismaPg({ ...main.config, database: name }).connect()
        const dispose = shadow.dispose.bind(shadow)
        shadow.dispose = async () => {
          await dispose() // close the shadow pool first ...
          await withAdminClient(main.config, (c) => c.query(`DROP DATABASE IF EXISTS "${name}"`)) // ... then drop it
        }
      }
      if ((await currentDatabase(shadow)) === main.config.database && !shadowDatabaseUrl) {
        await shadow.dispose().catch(() => {})
        throw new Error('Refusing to continue: the shadow database connection points at the main database.')
      }
      return withWholeScriptExecution(shadow)
    },
  }
  return bindMigrationAwareSqlAdapterFactory(factory)
}

// ---------------------------------------------------------------------------
// 3. Project files (prisma.config.ts, schema, migrations directory)
// ---------------------------------------------------------------------------

async function collectPrismaFiles(p) {
  const st = await fsp.stat(p)
  if (st.isFile()) return [p]
  const out = []
  for (const entry of await fsp.readdir(p, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith('.prisma')) out.push(path.join(entry.parentPath ?? entry.path, entry.name))
  }
  return out.sort()
}

/** Loads prisma.config.ts exactly like the CLI does (via @prisma/config). */
export async function loadProject({ configFile, url } = {}) {
  const { loadConfigFromFile } = await import('@prisma/config')
  const { config, error, resolvedPath } = await loadConfigFromFile({ configFile })
  if (error) {
    const detail = error.error ? `: ${error.error.message}` : ''
    throw new Error(`Could not load Prisma config (${error._tag})${detail}`)
  }
  const schemaPath = path.resolve(config.schema ?? 'prisma/schema.prisma')
  const files = await collectPrismaFiles(schemaPath)
  const schemaFiles = await Promise.all(files.map(async (f) => [f, await fsp.readFile(f, 'utf8')]))
  const schemaDir = fs.statSync(schemaPath).isFile() ? path.dirname(schemaPath) : schemaPath
  return {
    configPath: resolvedPath,
    schemaFiles,
    migrationsDir: path.resolve(config.migrations?.path ?? path.join(schemaDir, 'migrations')),
    shadowDbInitScript: config.migrations?.initShadowDb ?? '',
    filters: { externalTables: config.tables?.external ?? [], externalEnums: config.enums?.external ?? [] },
    datasource: { url: url ?? config.datasource?.url, shadowDatabaseUrl: config.datasource?.shadowDatabaseUrl },
  }
}

/** Same structure (and ordering) the prisma CLI hands to the engine. */
export async function readMigrationsList(baseDir, shadowDbInitScript = '') {
  const lockPath = 'migration_lock.toml'
  const lockContent = await fsp.readFile(path.join(baseDir, lockPath), 'utf8').catch(() => null)
  const entries = await fsp.readdir(baseDir, { withFileTypes: true }).catch(() => [])
  const migrationDirectories = []
  for (const d of entries.filter((e) => e.isDirectory())) {
    const content = await fsp
      .readFile(path.join(baseDir, d.name, 'migration.sql'), 'utf8')
      .then((value) => ({ tag: 'ok', value }))
      .catch((e) => ({ tag: 'error', value: e.message }))
    migrationDirectories.push({ path: d.name, migrationFile: { path: 'migration.sql', content } })
  }
  migrationDirectories.sort((a, b) => a.path.localeCompare(b.path))
  return { baseDir, lockfile: { path: lockPath, content: lockContent }, migrationDirectories, shadowDbInitScript }
}

/** Writes <baseDir>/<name>/migration.<ext> and migration_lock.toml like the CLI. */
export async function writeMigration({ baseDir, generatedMigrationName, extension, migrationScript, connectorType }) {
  const dir = path.join(baseDir, generatedMigrationName)
  if (fs.existsSync(dir)) throw new Error(`The migration directory already exists at ${dir}`)
  await fsp.mkdir(dir, { recursive: true })
  await fsp.writeFile(path.join(dir, `migration.${extension}`), migrationScript, 'utf8')
  await fsp.writeFile(
    path.join(baseDir, 'migration_lock.toml'),
    `# Please do not edit this file manually\n# It should be added in your version-control system (e.g., Git)\nprovider = "${connectorType}"\n`,
    'utf8',
  )
  return dir
}

/** Creates an engine connected to the datasource. */
export async function openEngine({ schemaFiles, datasource, log = () => {} }) {
  const { SchemaEngine } = await loadSchemaEngine()
  const adapterFactory = createPgAdapterFactory(datasource)
  const engine = await SchemaEngine.new({ datamodels: schemaFiles.length ? schemaFiles : undefined }, log, adapterFactory)
  return { engine, adapterFactory }
}

/** Converts whatever the wasm engine threw into { errorCode?, message, meta? }. */
export function describeEngineError(e, adapterFactory) {
  let err = e
  const genericId = typeof e?.message === 'string' && /GenericJs.*?id[":\s]+(\d+)/.exec(e.message)?.[1]
  if (genericId && adapterFactory?.errorRegistry?.consumeError) {
    const original = adapterFactory.errorRegistry.consumeError(Number(genericId))
    if (original?.error) err = original.error
  }
  return {
    errorCode: typeof err?.code === 'string' && /^P\d{4}$/.test(err.code) ? err.code : undefined,
    message: String(err?.message ?? err),
    meta: err?.meta,
    isPanic: err instanceof WebAssembly.RuntimeError,
  }
}

// ---------------------------------------------------------------------------
// 4. Database existence (what `prisma migrate dev|deploy` do before migrating)
// ---------------------------------------------------------------------------

/** Maps a connection failure to the Prisma error code the CLI understands. */
export function connectionErrorCode(e) {
  if (e?.code === '3D000') return 'P1003' // database does not exist
  if (e?.code === '28P01' || e?.code === '28000') return 'P1000' // authentication failed
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT'].includes(e?.code)) return 'P1001' // can't reach server
  return undefined
}

export async function canConnect(url) {
  const { config } = pgConfig(url)
  await withAdminClient(config, (c) => c.query('SELECT 1'))
}

/** CREATE DATABASE via the `postgres` maintenance database (like the native engine). */
export async function createDatabase(url) {
  const { config } = pgConfig(url)
  await withAdminClient({ ...config, database: 'postgres' }, (c) => c.query(`CREATE DATABASE ${pg.escapeIdentifier(config.database)}`))
  return config.database
}

export async function dropDatabase(url) {
  const { config } = pgConfig(url)
  await withAdminClient({ ...config, database: 'postgres' }, (c) => c.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(config.database)}`))
  return config.database
}

/** Returns the database name if it had to be created, undefined if it existed. */
export async function ensureDatabaseExists(url) {
  try {
    await canConnect(url)
    return undefined
  } catch (e) {
    if (connectionErrorCode(e) !== 'P1003') throw e
    return createDatabase(url)
  }
}
