import { randomBytes } from 'node:crypto'
import { type AddressInfo, createServer } from 'node:net'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { createApiToken } from '../../../packages/db/src/index.ts'
import { redisUrl, startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import { type AppDeps, buildApp, type KilnApp } from '../src/app.ts'
import { loadApiConfig } from '../src/config.ts'
import type { RateLimits } from '../src/rate-limits.ts'
import { expectProblem } from './helpers.ts'

// Rate limits counted in the real Redis: per identity (after authentication) and per client address
// (before it), shared by every API replica on the same Redis. Each test gets its own Redis key prefix,
// so counts never leak between tests.

let api: TestApi
const apps: KilnApp[] = []
const clients: Redis[] = []
const tokens: Record<string, string> = {}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** A Redis client in a fresh namespace; replicas given the same one share their counts. */
function freshRedis(): Redis {
  const redis = new Redis(redisUrl, {
    maxRetriesPerRequest: 1,
    keyPrefix: `kiln-test-${inject('runId')}:rl-${randomBytes(4).toString('hex')}:`,
  })
  clients.push(redis)
  return redis
}

/** An API replica on the test database, counting in `redis`. */
async function replica(limits: RateLimits, redis = freshRedis(), more: Partial<AppDeps> = {}) {
  const app = await buildApp({ db: api.db, redis, authentication: 'required', rateLimits: limits, ...more })
  apps.push(app)
  return app
}

const get = (app: KilnApp, token: string, address = '10.0.0.1', url = '/v1/projects/team-a') =>
  app.inject({ method: 'GET', url, headers: bearer(token), remoteAddress: address })

beforeAll(async () => {
  api = await startTestApi()
  const { project } = await aDataCentre(api.db)
  const other = await aProject(api.db, 'team-b')
  for (const [name, projectId] of [
    ['alice', project.id],
    ['bob', project.id],
    ['carol', other.id],
  ] as const) {
    const { plaintext } = await api.db.$transaction((tx) =>
      createApiToken(
        tx,
        { subject: 'user:bootstrap', requestId: 'test' },
        { projectId, name, role: 'viewer', expiresAt: new Date(Date.now() + 86_400_000) },
      ),
    )
    tokens[name] = plaintext
  }
})

afterAll(async () => {
  for (const app of apps) await app.close()
  for (const client of clients) client.disconnect()
  await api?.close()
})

describe('rate limits', () => {
  it('answers 429 problem+json with Retry-After and RateLimit-* once an identity is over its limit', async () => {
    const app = await replica({ perIdentity: 3, perAddress: 1000, windowMs: 60_000 })
    for (let i = 3; i > 0; i--) {
      const ok = await get(app, tokens['alice']!)
      expect(ok.statusCode, ok.body).toBe(200)
      expect(ok.headers['ratelimit-limit']).toBe('3')
      expect(ok.headers['ratelimit-remaining']).toBe(String(i - 1))
    }
    const res = await get(app, tokens['alice']!)
    const problem = expectProblem(res, 429)
    expect(problem.type).toBe('https://kiln.dev/problems/rate-limited')
    expect(problem.detail).toContain('with your credentials')
    expect(res.headers['ratelimit-limit']).toBe('3')
    expect(res.headers['ratelimit-remaining']).toBe('0')
    const retryAfter = Number(res.headers['retry-after'])
    expect(retryAfter).toBeGreaterThan(0)
    expect(retryAfter).toBeLessThanOrEqual(60)
    expect(res.headers['ratelimit-reset']).toBe(String(retryAfter))
    expect(res.headers['x-request-id']).toBe(problem.requestId)

    // Another identity, even from the same address, has its own count.
    expect((await get(app, tokens['bob']!)).statusCode).toBe(200)
    expect((await get(app, tokens['carol']!, '10.0.0.1', '/v1/projects/team-b')).statusCode).toBe(200)
  })

  it('counts an identity across API replicas that share Redis', async () => {
    const redis = freshRedis()
    const limits = { perIdentity: 4, perAddress: 1000, windowMs: 60_000 }
    const [one, two] = [await replica(limits, redis), await replica(limits, redis)]
    expect((await get(one, tokens['alice']!)).statusCode).toBe(200)
    expect((await get(two, tokens['alice']!)).statusCode).toBe(200)
    expect((await get(one, tokens['alice']!)).statusCode).toBe(200)
    const last = await get(two, tokens['alice']!)
    expect(last.statusCode).toBe(200)
    expect(last.headers['ratelimit-remaining']).toBe('0')
    expectProblem(await get(one, tokens['alice']!), 429)
    expectProblem(await get(two, tokens['alice']!), 429)
  })

  it('limits an address before authentication: bad credentials count, and another address is not affected', async () => {
    const app = await replica({ perIdentity: 1000, perAddress: 2, windowMs: 60_000 })
    expectProblem(await get(app, 'kiln_00000000_nope', '10.0.0.7'), 401)
    expectProblem(await get(app, 'kiln_00000000_nope', '10.0.0.7'), 401)
    const limited = await get(app, tokens['alice']!, '10.0.0.7')
    const problem = expectProblem(limited, 429)
    expect(problem.detail).toContain('from your address')
    expect(limited.headers['retry-after']).toBeDefined()
    // An unknown route is counted too (a scanner is still a client).
    expectProblem(await app.inject({ method: 'GET', url: '/no-such-route', remoteAddress: '10.0.0.7' }), 429)
    expect((await get(app, tokens['alice']!, '10.0.0.8')).statusCode).toBe(200)
  })

  it('never limits health, readiness, the OpenAPI document, the docs or the portal', async () => {
    const app = await replica({ perIdentity: 1, perAddress: 1, windowMs: 60_000 })
    expect((await get(app, tokens['alice']!, '10.0.0.9')).statusCode).toBe(200)
    expectProblem(await get(app, tokens['alice']!, '10.0.0.9'), 429)
    for (const url of [
      '/healthz',
      '/readyz',
      '/openapi.json',
      '/docs',
      '/docs/static/index.html',
      '/portal/',
    ]) {
      for (let i = 0; i < 3; i++) {
        const res = await app.inject({ method: 'GET', url, remoteAddress: '10.0.0.9' })
        expect(res.statusCode, `${url}: ${res.body.slice(0, 200)}`).not.toBe(429)
        expect(res.headers['ratelimit-limit'], url).toBeUndefined()
      }
    }
  })

  it('lets requests through, unlimited, and logs a warning when Redis cannot count', async () => {
    const warnings: string[] = []
    // Fastify's own pino, writing its JSON lines here.
    const logger = { level: 'warn', stream: { write: (line: string) => void warnings.push(line) } }
    // Nothing listens on port 1: every count fails.
    const dead = new Redis('redis://127.0.0.1:1', {
      maxRetriesPerRequest: 0,
      lazyConnect: true,
      retryStrategy: () => null,
    })
    dead.on('error', () => {})
    clients.push(dead)
    const app = await replica({ perIdentity: 1, perAddress: 1, windowMs: 60_000 }, dead, { logger })
    for (let i = 0; i < 4; i++) {
      const res = await get(app, tokens['alice']!, '10.0.0.10')
      expect(res.statusCode, res.body).toBe(200)
      expect(res.headers['ratelimit-limit']).toBeUndefined()
    }
    expect(warnings.filter((w) => w.includes('rate limits not applied'))).toHaveLength(1)
  })

  it('does not wait for a Redis that accepts connections and never answers', async () => {
    // A server that takes the connection and says nothing: every count would hang.
    const silent = createServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address() as AddressInfo
    const stalled = new Redis(`redis://127.0.0.1:${port}`, { maxRetriesPerRequest: null })
    stalled.on('error', () => {})
    clients.push(stalled)
    try {
      const app = await replica(
        { perIdentity: 1, perAddress: 1, windowMs: 60_000, redisTimeoutMs: 100 },
        stalled,
      )
      for (let i = 0; i < 3; i++) {
        const started = Date.now()
        const res = await get(app, tokens['alice']!, '10.0.0.11')
        expect(res.statusCode, res.body).toBe(200)
        // Two counts (address, identity), each given up after 100 ms.
        expect(Date.now() - started).toBeLessThan(2_000)
      }
    } finally {
      silent.close()
    }
  })
})

describe('rate-limit configuration', () => {
  const required = { DATABASE_URL: 'postgresql://x', REDIS_URL: 'redis://x' }

  it('defaults to generous limits, and reads them from the environment', () => {
    expect(loadApiConfig(required).rateLimits).toEqual({
      perIdentity: 600,
      perAddress: 1200,
      windowMs: 60_000,
    })
    expect(loadApiConfig(required).trustProxy).toBeUndefined()
    const set = loadApiConfig({
      ...required,
      KILN_RATE_LIMIT_PER_IDENTITY: '0',
      KILN_RATE_LIMIT_PER_ADDRESS: '50',
      KILN_RATE_LIMIT_WINDOW_SECONDS: '10',
      KILN_TRUST_PROXY: '10.0.0.0/8, 192.168.1.1',
    })
    expect(set.rateLimits).toEqual({ perIdentity: 0, perAddress: 50, windowMs: 10_000 })
    expect(set.trustProxy).toEqual(['10.0.0.0/8', '192.168.1.1'])
    expect(loadApiConfig({ ...required, KILN_TRUST_PROXY: 'true' }).trustProxy).toBe(true)
    expect(() => loadApiConfig({ ...required, KILN_RATE_LIMIT_PER_ADDRESS: '-1' })).toThrow(
      /KILN_RATE_LIMIT_PER_ADDRESS/,
    )
  })
})
