import { Redis } from 'ioredis'
import { inject } from 'vitest'
import { type AppDeps, buildApp, type KilnApp } from '../../apps/api/src/app.ts'
import { createDatabase, type Database } from '../../packages/db/src/index.ts'
import { createTestDatabase } from './database.ts'
import { type Recorder, recordAnswers } from './recorder.ts'

export const redisUrl = process.env.KILN_TEST_REDIS ?? 'redis://127.0.0.1:6379'

export interface TestApi {
  app: KilnApp
  db: Database
  redis: Redis
  /** Every answer `app.inject()` gave, checked against the OpenAPI document (see recorder.ts). */
  recorder: Recorder
  /** Closes everything, then fails when any answer broke the document. */
  close(): Promise<void>
}

/** The real API on a fresh database cloned from the run's migrated template, and the real Redis. */
export async function startTestApi(
  options: {
    operationPollMs?: number
    maxConnections?: number
    /** More of buildApp's options (authentication mode, OIDC, platform admin groups). */
    app?: Partial<Omit<AppDeps, 'db' | 'redis'>>
  } = {},
): Promise<TestApi> {
  const database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  const db = createDatabase({ url: database.url, maxConnections: options.maxConnections ?? 5 })
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, keyPrefix: `kiln-test-${inject('runId')}:` })
  const app = await buildApp({ db, redis, operationPollMs: options.operationPollMs ?? 50, ...options.app })
  const recorder = recordAnswers(app)
  return {
    app,
    db,
    redis,
    recorder,
    async close() {
      await app.close()
      await db.$disconnect()
      redis.disconnect()
      await database.drop()
      recorder.assertClean()
    },
  }
}
