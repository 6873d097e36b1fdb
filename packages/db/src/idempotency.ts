import { createHash } from 'node:crypto'
import { canonicalJson, DomainError, ErrorCode } from '@kiln/domain'
import { type Database, runTransaction, type Tx } from './client.ts'
import type { Prisma } from './generated/prisma/client.ts'

export interface StoredResponse {
  statusCode: number
  body: unknown
  headers: Record<string, string>
}

export interface IdempotencyScope {
  /** Who sent it: keys are per caller, so two CI jobs cannot collide. */
  principal: string
  key: string
  /** method, route and canonical body. */
  fingerprint: unknown
  ttlMs: number
}

export const hashRequest = (fingerprint: unknown) =>
  createHash('sha256').update(canonicalJson(fingerprint)).digest('hex')

/**
 * Runs `handler` at most once per (principal, key). The record is inserted in the same transaction
 * as the handler's writes: a concurrent duplicate blocks on the unique key until the first commits
 * and then replays its response; if the first rolls back, the duplicate runs instead. Errors are not
 * recorded (a rejected request changed nothing, so a retry may be judged afresh).
 */
export async function runIdempotent(
  db: Database,
  scope: IdempotencyScope,
  handler: (tx: Tx) => Promise<StoredResponse>,
): Promise<StoredResponse & { replayed: boolean }> {
  const requestHash = hashRequest(scope.fingerprint)
  return runTransaction(
    db,
    async (tx) => {
      const now = new Date()
      await tx.idempotencyRecord.deleteMany({
        where: { principal: scope.principal, key: scope.key, expiresAt: { lt: now } },
      })
      const inserted = await tx.$executeRaw`
        INSERT INTO "IdempotencyRecord" ("principal", "key", "requestHash", "statusCode", "expiresAt")
        VALUES (${scope.principal}, ${scope.key}, ${requestHash}, 0, ${new Date(now.getTime() + scope.ttlMs)})
        ON CONFLICT ("principal", "key") DO NOTHING`
      if (inserted === 0) {
        const existing = await tx.idempotencyRecord.findUniqueOrThrow({
          where: { principal_key: { principal: scope.principal, key: scope.key } },
        })
        if (existing.requestHash !== requestHash) {
          throw new DomainError(
            ErrorCode.idempotencyKeyReused,
            'This Idempotency-Key was already used with a different request.',
            {
              violations: [
                { pointer: '/Idempotency-Key', message: 'Use a new key for a different request.' },
              ],
              extensions: { in: 'header' },
            },
          )
        }
        return {
          statusCode: existing.statusCode,
          body: existing.body,
          headers: existing.headers as Record<string, string>,
          replayed: true,
        }
      }
      const response = await handler(tx)
      await tx.idempotencyRecord.update({
        where: { principal_key: { principal: scope.principal, key: scope.key } },
        data: {
          statusCode: response.statusCode,
          body: response.body as Prisma.InputJsonValue,
          headers: response.headers,
        },
      })
      return { ...response, replayed: false }
    },
    { timeout: 20_000, maxWait: 10_000 },
  )
}

/** Removes expired records; run periodically. */
export async function purgeExpiredIdempotencyRecords(db: Database, now = new Date()) {
  const { count } = await db.idempotencyRecord.deleteMany({ where: { expiresAt: { lt: now } } })
  return count
}
