import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { isUniqueViolation } from './errors.ts'
import { Prisma, PrismaClient } from './generated/prisma/client.ts'

export type Database = PrismaClient
/** A Prisma interactive transaction. */
export type Tx = Parameters<Parameters<PrismaClient['$transaction']>[0]>[0]
/** Anything queries can run on: the client or a transaction. */
export type Queryable = PrismaClient | Tx

export interface DatabaseOptions {
  url: string
  /** Pool size; node-postgres' default is 10. */
  maxConnections?: number
}

/**
 * The one place a Prisma client is built: the query compiler over node-postgres, no native engine.
 * The pool is ours, and the client carries it, so the hottest reads can skip Prisma's result
 * mapping (see findClusterInProject); everything else goes through Prisma.
 */
export function createDatabase(options: DatabaseOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: 5_000,
  })
  pool.on('error', () => {
    // An idle connection dropped (PostgreSQL restarting): the next query reconnects or reports it.
  })
  // node-postgres emits 'error' on a client whose server goes away (57P01 on restart) even while it
  // is checked out; with no listener at that moment the process dies. Every client gets one for
  // life: the failure still reaches the query that was using it.
  pool.on('connect', (client) => {
    client.on('error', () => {})
  })
  const client = new PrismaClient({ adapter: new PrismaPg(pool) })
  pools.set(client, pool)
  return client
}

const pools = new WeakMap<Database, pg.Pool>()

/** The node-postgres pool behind a client (a transaction has none: use Prisma there). */
export function poolOf(db: Queryable): pg.Pool | undefined {
  return pools.get(db as Database)
}

/** What a nullable JSON column is set to for SQL NULL (a JS null would be ambiguous to Prisma). */
export const DbNull = Prisma.DbNull

type TransactionOptions = Parameters<PrismaClient['$transaction']>[1]

/**
 * Runs an interactive transaction; one that lost a race on a unique key runs once more.
 * Writers check "is this name taken?" before they insert, but two transactions can both pass
 * the check; the loser's insert then waits for the winner to commit and fails. Its retry sees the
 * winner's row, so its own check answers exactly as it would to a request that came second.
 */
export async function runTransaction<T>(
  db: Database,
  work: (tx: Tx) => Promise<T>,
  options?: TransactionOptions,
): Promise<T> {
  try {
    return await db.$transaction(work, options)
  } catch (error) {
    if (!isUniqueViolation(error)) throw error
    return db.$transaction(work, options)
  }
}
