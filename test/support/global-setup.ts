import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import type {} from 'vitest'
import type { TestProject } from 'vitest/node'
import { adminDatabaseUrl, databaseUrl } from './database.ts'

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string
    runId: string
  }
}

/**
 * Migrates one template database per test run with the real `prisma migrate deploy`; each test file
 * clones it (CREATE DATABASE … TEMPLATE), which takes milliseconds, and drops its clone.
 */
export default async function setup(project: TestProject) {
  const runId = randomBytes(4).toString('hex')
  const template = `kiln_test_${runId}_template`
  const admin = new pg.Client({ connectionString: adminDatabaseUrl() })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${template}`)
  execFileSync('npx', ['prisma', 'migrate', 'deploy'], {
    env: {
      ...process.env,
      DATABASE_URL: databaseUrl(template),
      PRISMA_SCHEMA_ENGINE_BINARY: 'prisma/engine/schema-engine.mjs',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  project.provide('templateDatabase', template)
  project.provide('runId', runId)

  return async () => {
    const { rows } = await admin.query<{ datname: string }>(
      'SELECT datname FROM pg_database WHERE datname LIKE $1',
      [`kiln_test_${runId}_%`],
    )
    for (const { datname } of rows) await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`)
    await admin.end()
  }
}
