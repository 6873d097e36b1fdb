import { PrismaPg } from '@prisma/adapter-pg'
import { PrismaClient } from './generated/prisma/client.ts'

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

/** The one place a Prisma client is built: the query compiler over node-postgres, no native engine. */
export function createDatabase(options: DatabaseOptions): Database {
  const adapter = new PrismaPg({
    connectionString: options.url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: 5_000,
  })
  return new PrismaClient({ adapter })
}
