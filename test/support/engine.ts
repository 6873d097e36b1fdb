import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { inject } from 'vitest'
import { type AppDeps, buildApp, type KilnApp } from '../../apps/api/src/app.ts'
import { type ApiServer, startApiServer } from '../../apps/simulator/src/server.ts'
import { type Engine, type EngineOptions, startEngine } from '../../apps/worker/src/engine.ts'
import { createDatabase, type Database } from '../../packages/db/src/index.ts'
import type { SimulatorConfig } from '../../packages/drivers/src/index.ts'
import { parseMasterKey } from '../../packages/pki/src/index.ts'
import { redisUrl } from './api.ts'
import { createTestDatabase } from './database.ts'

/** A master key for one test run; what it seals is thrown away with the test database. */
export const testMasterKeyBase64 = randomBytes(32).toString('base64')
export const testMasterKey = parseMasterKey(testMasterKeyBase64)

/** A small, fast simulated data centre for engine tests. */
export const testDataCentre = (over: Partial<SimulatorConfig> = {}): SimulatorConfig => ({
  zones: ['zone-a', 'zone-b'],
  racksPerZone: 2,
  machineClasses: [
    { name: 'm1.large', cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, perRack: 10 },
    {
      name: 'gpu.a100x4',
      cpu: 32,
      memoryMiB: 262144,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      perRack: 1,
      zones: ['zone-a'],
    },
  ],
  ...over,
})

/**
 * The simulated API server of each test database: backends created without an `apiServerUrl`
 * point their clusters at it, so the engine's add-on step talks to a real (simulated) cluster.
 */
export const apiServerUrls = new WeakMap<Database, string>()

export interface TestStack {
  app: KilnApp
  /** The simulated Kubernetes API server every simulated cluster of this stack answers on. */
  apiServer: ApiServer
  db: Database
  databaseUrl: string
  /** BullMQ prefix of this stack; its keys are removed on close. */
  prefix: string
  engine: Engine | null
  startEngine(over?: Partial<EngineOptions>): Promise<Engine>
  stopEngine(): Promise<void>
  close(): Promise<void>
}

/**
 * The real API and (optionally) the real engine in this process, on a fresh database and a
 * private queue prefix on the real Redis.
 */
export async function startTestStack(
  options: {
    engine?: Partial<EngineOptions> | false
    /** More of the API's options: OIDC, authentication, the built portal. */
    api?: Partial<
      Pick<AppDeps, 'oidc' | 'authentication' | 'platformAdminGroups' | 'portalDir' | 'metrics' | 'logger'>
    >
  } = {},
): Promise<TestStack> {
  const database = await createTestDatabase(inject('templateDatabase'), inject('runId'))
  const db = createDatabase({ url: database.url, maxConnections: 10 })
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 })
  const prefix = `kiln-test-${randomBytes(4).toString('hex')}`
  const connection = { url: redisUrl, maxRetriesPerRequest: null }
  const app = await buildApp({
    db,
    redis,
    masterKey: testMasterKey,
    queue: { connection: { url: redisUrl, maxRetriesPerRequest: 1 }, prefix },
    operationPollMs: 25,
    ...options.api,
  })
  const apiServer = await startApiServer({ db, masterKey: testMasterKey, port: 0 })
  apiServerUrls.set(db, `https://127.0.0.1:${apiServer.port}`)
  const stack: TestStack = {
    app,
    apiServer,
    db,
    databaseUrl: database.url,
    prefix,
    engine: null,
    async startEngine(over = {}) {
      stack.engine = await startEngine({
        db,
        masterKey: testMasterKey,
        databaseUrl: database.url,
        connection,
        prefix,
        leaseMs: 3000,
        dispatchIntervalMs: 200,
        healthIntervalMs: 0,
        // Retries as quick as the queue's old backoff (0.2 s doubling), capped low: tests wait for
        // seeded faults to pass, not for production's 30 s pauses. The horizon stays 30 min.
        retryBaseDelayMs: 200,
        retryMaxDelayMs: 2000,
        ...over,
      })
      return stack.engine
    },
    async stopEngine() {
      await stack.engine?.stop()
      stack.engine = null
    },
    async close() {
      await stack.stopEngine()
      await apiServer.close()
      await app.close()
      await db.$disconnect()
      const keys = await redis.keys(`${prefix}:*`)
      if (keys.length > 0) await redis.del(...keys)
      redis.disconnect()
      await database.drop()
    },
  }
  if (options.engine !== false) await stack.startEngine(options.engine || {})
  return stack
}
