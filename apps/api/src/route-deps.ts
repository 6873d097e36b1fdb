import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Database } from '@kiln/db'
import type { RedisClient as Redis } from '@kiln/jobs'
import type { MasterKeyring } from '@kiln/pki'
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify'
import type { ApiMetrics } from './metrics.ts'

// What routes share, apart from app.ts: routes and their helpers import this, app.ts imports them,
// so no import leads back to app.ts.

export type KilnApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>

export interface RouteDeps {
  db: Database
  redis: Redis
  operationPollMs: number
  /**
   * Hands a committed operation to the queue. Best effort: Postgres already holds it, and the
   * worker's dispatcher queues whatever this misses (Redis down, process killed).
   */
  dispatch(operationId: string): void
  metrics: ApiMetrics
  masterKey: MasterKeyring | null
}
