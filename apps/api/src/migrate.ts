import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { LogLevelSetting, parseSettings } from '@kiln/domain'
import { createLogger } from '@kiln/telemetry'
import Type from 'typebox'
import {
  describeEngineError,
  ensureDatabaseExists,
  openEngine,
  readMigrationsList,
} from '../../../prisma/engine/lib/schema-engine.mjs'

// `prisma migrate deploy` for the runtime image, which has no prisma CLI (a dev dependency): the
// same schema engine the CLI uses here (Prisma's, compiled to WebAssembly, over @prisma/adapter-pg;
// see prisma/engine) applies prisma/migrations and records them in _prisma_migrations, so the CLI
// and this agree on the database's state. Creates the database if it is missing, like the CLI.
// Exits 0 when every migration is applied (also when there was nothing to do).

// apps/api/src/ and apps/api/dist/ are both three levels below the repository (the image's /app).
const prismaDir = fileURLToPath(new URL('../../../prisma/', import.meta.url))
const { DATABASE_URL: url, LOG_LEVEL: level } = parseSettings(
  Type.Object({
    DATABASE_URL: Type.String({ minLength: 1, description: 'PostgreSQL connection string.' }),
    LOG_LEVEL: LogLevelSetting,
  }),
  process.env,
)
const logger = createLogger({ service: 'kiln-migrate', level })

const schemaPath = `${prismaDir}schema.prisma`
const created = await ensureDatabaseExists(url)
if (created) logger.info({ database: created }, `created database ${created}`)
const { engine, adapterFactory } = await openEngine({
  schemaFiles: [[schemaPath, await readFile(schemaPath, 'utf8')]],
  datasource: { url },
})
try {
  const migrationsList = await readMigrationsList(`${prismaDir}migrations`)
  const { appliedMigrationNames } = await engine.applyMigrations({
    migrationsList,
    filters: { externalTables: [], externalEnums: [] },
  })
  for (const name of appliedMigrationNames) logger.info({ migration: name }, `applied ${name}`)
  logger.info(
    `${migrationsList.migrationDirectories.length} migrations in prisma/migrations, ${appliedMigrationNames.length} applied now: the database is up to date`,
  )
} catch (error) {
  const { errorCode, message } = describeEngineError(error, adapterFactory)
  logger.error({ errorCode }, `migrate: ${errorCode ? `${errorCode}: ` : ''}${message}`)
  process.exitCode = 1
} finally {
  engine.free()
}
// The engine keeps its connection pool (inside the adapter) open: done is done.
process.exit()
