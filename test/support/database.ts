import { randomBytes } from 'node:crypto'
import pg from 'pg'

const server = process.env.KILN_TEST_POSTGRES ?? 'postgresql://postgres@127.0.0.1:5432'

export const databaseUrl = (name: string) => `${server}/${name}`
export const adminDatabaseUrl = () => databaseUrl('postgres')

/** A fresh database for one test file, cloned from the run's migrated template. */
export async function createTestDatabase(template: string, runId: string) {
  const name = `kiln_test_${runId}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: adminDatabaseUrl() })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`)
  } finally {
    await admin.end()
  }
  return {
    url: databaseUrl(name),
    async drop() {
      const c = new pg.Client({ connectionString: adminDatabaseUrl() })
      await c.connect()
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
      await c.end()
    },
  }
}
