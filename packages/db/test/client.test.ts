import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createTestDatabase } from '../../../test/support/database.ts'
import { createDatabase, type Database, poolOf } from '../src/index.ts'

// A PostgreSQL restart ends every backend with 57P01 ("terminating connection due to administrator
// command"). node-postgres emits that as 'error' on each client, even one checked out and idle;
// unheard, the event kills the process (seen once in five PostgreSQL-restart reliability runs).
describe('the database pool when the server drops connections', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let db: Database

  beforeAll(async () => {
    database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
    db = createDatabase({ url: database.url, maxConnections: 2 })
  })
  afterAll(async () => {
    await db?.$disconnect()
    await database?.drop()
  })

  it('survives the server terminating a checked-out client, and serves the next query', async () => {
    const pool = poolOf(db)!
    const client = await pool.connect()
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    // The pool gave the client a listener for life; nothing else listens here.
    expect(client.listenerCount('error')).toBeGreaterThan(0)
    const admin = new pg.Client({ connectionString: database.url })
    await admin.connect()
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid])
    await admin.end()
    await new Promise((resolve) => setTimeout(resolve, 300))
    // Had the 57P01 event gone unheard, the process (and so this test run) would have failed here.
    client.release(true)
    expect(await db.project.count()).toBe(0)
  })
})
