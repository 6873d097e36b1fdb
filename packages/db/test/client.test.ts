import pg from 'pg'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createTestDatabase } from '../../../test/support/database.ts'
import { createDatabase, type Database, isDatabaseUnavailable, poolOf } from '../src/index.ts'

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

// An overloaded database (every connection busy, or a transaction outliving its time limit) is a
// reason to answer 503 + Retry-After, not 500: the request did nothing and can be retried.
describe('a transaction the database could not serve in time', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  let db: Database

  beforeAll(async () => {
    database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
    db = createDatabase({ url: database.url, maxConnections: 1 })
  })
  afterAll(async () => {
    await db?.$disconnect()
    await database?.drop()
  })

  it('counts as the database being unavailable when it cannot start or outlives its timeout', async () => {
    const expired = await db
      .$transaction(
        async (tx) => {
          await new Promise((resolve) => setTimeout(resolve, 300))
          return tx.project.count()
        },
        { timeout: 50 },
      )
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    expect(expired).toBeInstanceOf(Error)
    expect(isDatabaseUnavailable(expired)).toBe(true)

    let release = () => {}
    const holding = db.$transaction(async (tx) => {
      await tx.project.count()
      await new Promise<void>((resolve) => {
        release = resolve
      })
    })
    await new Promise((resolve) => setTimeout(resolve, 100))
    const notStarted = await db
      .$transaction(async (tx) => tx.project.count(), { maxWait: 100 })
      .then(
        () => undefined,
        (error: unknown) => error,
      )
    release()
    await holding
    expect(notStarted).toBeInstanceOf(Error)
    expect(isDatabaseUnavailable(notStarted)).toBe(true)
    // A query that is simply wrong is not unavailability.
    const wrong = await db.$queryRawUnsafe('SELECT * FROM no_such_table').catch((error: unknown) => error)
    expect(isDatabaseUnavailable(wrong)).toBe(false)
  })
})
