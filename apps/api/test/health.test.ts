import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createDatabase } from '../../../packages/db/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { buildApp, type KilnApp } from '../src/app.ts'
import { expectProblem } from './helpers.ts'

let api: TestApi

beforeAll(async () => {
  api = await startTestApi()
})

afterAll(async () => {
  await api?.close()
})

/** A Redis client that can never connect, and fails commands at once instead of queueing them. */
function unreachableRedis() {
  const redis = new Redis('redis://127.0.0.1:1', {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  })
  redis.on('error', () => {})
  return redis
}

describe('liveness and readiness', () => {
  it('GET /healthz answers 200 ok', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/healthz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ok' })
  })

  it('GET /readyz answers 200 when PostgreSQL and Redis are reachable', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/readyz' })
    expect(res.statusCode).toBe(200)
    expect(res.json()).toEqual({ status: 'ready', checks: { postgres: 'ok', redis: 'ok' } })
  })

  describe('with Redis unreachable', () => {
    let app: KilnApp
    let redis: Redis

    beforeAll(async () => {
      redis = unreachableRedis()
      app = await buildApp({ db: api.db, redis })
    })

    afterAll(async () => {
      await app?.close()
      redis?.disconnect()
    })

    it('GET /readyz → 503 problem+json with Retry-After, naming Redis', async () => {
      const started = performance.now()
      const res = await app.inject({ method: 'GET', url: '/readyz' })
      expect(performance.now() - started).toBeLessThan(3_000)
      const p = expectProblem(res, 503)
      expect(res.headers['retry-after']).toBe('5')
      expect(p['checks']).toEqual({ postgres: 'ok', redis: 'unavailable' })
      expect(p.detail).toContain('redis: unavailable')
    })

    it('GET /healthz still answers 200: the process is alive', async () => {
      const res = await app.inject({ method: 'GET', url: '/healthz' })
      expect(res.statusCode).toBe(200)
    })
  })

  describe('with PostgreSQL unreachable', () => {
    let app: KilnApp
    let db: ReturnType<typeof createDatabase>

    beforeAll(async () => {
      db = createDatabase({ url: 'postgresql://postgres@127.0.0.1:1/kiln', maxConnections: 1 })
      app = await buildApp({ db, redis: api.redis })
    })

    afterAll(async () => {
      await app?.close()
      await db?.$disconnect()
    })

    it('GET /readyz → 503 naming PostgreSQL', async () => {
      const p = expectProblem(await app.inject({ method: 'GET', url: '/readyz' }), 503)
      expect(p['checks']).toEqual({ postgres: 'unavailable', redis: 'ok' })
    })

    it('API requests → 503 problem+json with Retry-After, not 500', async () => {
      for (const [method, url, payload] of [
        ['GET', '/v1/projects', undefined],
        ['POST', '/v1/projects', { name: 'offline' }],
      ] as const) {
        const res = await app.inject({ method, url, ...(payload ? { payload } : {}) })
        const p = expectProblem(res, 503)
        expect(p.type).toBe('https://kiln.dev/problems/service-unavailable')
        expect(res.headers['retry-after']).toBe('5')
      }
    })
  })
})

describe('documents', () => {
  // biome-ignore lint/suspicious/noExplicitAny: an OpenAPI document is walked generically
  type Doc = { paths: Record<string, Record<string, any>> }
  const methods = ['get', 'post', 'put', 'patch', 'delete']
  const operationsOf = (doc: Doc) =>
    Object.entries(doc.paths).flatMap(([path, item]) =>
      methods.filter((m) => item[m]).map((m) => ({ path, method: m, op: item[m] })),
    )

  it('GET /openapi.json is the OpenAPI 3.1 document, every route with a unique operationId', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    const doc = res.json()
    expect(doc.openapi).toBe('3.1.0')
    expect(doc.info.title).toBe('Kiln API')

    const ops = operationsOf(doc)
    const ids = ops.map((o) => o.op.operationId)
    for (const o of ops) {
      expect(o.op.operationId, `${o.method.toUpperCase()} ${o.path}`).toMatch(/^[a-z][A-Za-z]+$/)
      expect(o.op.summary, `${o.method.toUpperCase()} ${o.path}`).toEqual(expect.any(String))
      expect(o.op.tags, `${o.method.toUpperCase()} ${o.path}`).toHaveLength(1)
    }
    expect(new Set(ids).size).toBe(ids.length)
    expect(ids).toEqual(
      expect.arrayContaining([
        'getHealth',
        'getReadiness',
        'listFeatures',
        'getFeature',
        'listBackends',
        'getBackend',
        'listMachineClasses',
        'getMachineClass',
        'listKubernetesVersions',
        'getKubernetesVersion',
        'updateKubernetesVersion',
        'listTemplates',
        'createTemplate',
        'getTemplate',
        'getTemplateVersion',
        'updateTemplateVersion',
        'listProjects',
        'createProject',
        'getProject',
        'createCluster',
        'listClusters',
        'getCluster',
        'updateCluster',
        'deleteCluster',
        'listNodeGroups',
        'createNodeGroup',
        'getNodeGroup',
        'updateNodeGroup',
        'deleteNodeGroup',
        'resizeNodeGroup',
        'getOperation',
        'cancelOperation',
        'listOperations',
      ]),
    )
    // Internal routes (the document itself, the UI) are not in it.
    expect(Object.keys(doc.paths)).not.toContain('/openapi.json')
    expect(Object.keys(doc.paths).some((p) => p.startsWith('/docs'))).toBe(false)
  })

  it('every documented operation is a route the app serves', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json() as Doc
    const documented = operationsOf(doc)
    expect(documented.length).toBeGreaterThanOrEqual(33)
    for (const { path, method } of documented) {
      const url = path.replace(/\{(\w+)\}/g, ':$1')
      expect(api.app.hasRoute({ method: method.toUpperCase() as 'GET', url }), `${method} ${path}`).toBe(true)
    }
  })

  it('/docs answers 200 with the HTML UI (following a redirect if there is one)', async () => {
    let res = await api.app.inject({ method: 'GET', url: '/docs' })
    for (let hops = 0; res.statusCode >= 300 && res.statusCode < 400 && hops < 5; hops++) {
      const location = res.headers.location as string
      expect(location).toBeTruthy()
      res = await api.app.inject({ method: 'GET', url: new URL(location, 'http://localhost/docs').pathname })
    }
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^text\/html/)
    expect(res.body).toContain('swagger-ui')
  })
})
