import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createApiToken } from '../../../packages/db/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { findNul, maxHeaderBytes, maxJsonDepth, nestsDeeperThan } from '../src/problems.ts'
import { expectProblem, pointersOf } from './helpers.ts'

// Requests no client should send, from any layer (route, hook, router, Node's HTTP parser): each is
// a 4xx problem+json with a stable type, never a 500 and never Fastify's or Node's own error body.
// The app requires credentials and the caller is a project admin (not a platform admin).

let api: TestApi
let app: KilnApp
let admin: { authorization: string }
let clusterETag: string

beforeAll(async () => {
  api = await startTestApi({ app: { authentication: 'required' } })
  app = api.app
  const { project } = await aDataCentre(api.db)
  const { plaintext } = await api.db.$transaction((tx) =>
    createApiToken(
      tx,
      { subject: 'user:bootstrap', requestId: 'test' },
      { projectId: project.id, name: 'admin', role: 'admin', expiresAt: new Date(Date.now() + 86_400_000) },
    ),
  )
  admin = { authorization: `Bearer ${plaintext}` }
  const created = await app.inject({
    method: 'POST',
    url: '/v1/projects/team-a/clusters',
    headers: admin,
    payload: { name: 'c1', template: 'k8s-1.31' },
  })
  expect(created.statusCode, created.body).toBe(202)
  // Cancelled while pending: the cluster is idle, so it can be patched.
  const cancel = await app.inject({
    method: 'POST',
    url: `/v1/operations/${created.json<{ id: string }>().id}/cancel`,
    headers: admin,
  })
  expect(cancel.statusCode, cancel.body).toBe(200)
  const got = await app.inject({ method: 'GET', url: '/v1/projects/team-a/clusters/c1', headers: admin })
  clusterETag = String(got.headers.etag)
})

afterAll(async () => {
  await api?.close()
})

const get = (url: string, headers: Record<string, string> = admin) =>
  app.inject({ method: 'GET', url, headers })

describe('a NUL byte', () => {
  it.each([
    ['/v1/projects/%00/clusters', '/project'],
    ['/v1/templates/%00', '/template'],
    ['/v1/backends/%00', '/backend'],
    ['/v1/machine-classes/%00', '/machineClass'],
    ['/v1/kubernetes-versions/%00', '/version'],
    ['/v1/projects/team-a/clusters/a%00b', '/cluster'],
    ['/v1/projects/team-a/clusters/c1/nodegroups/a%00', '/nodegroup'],
  ])('in the path %s → 400 naming the parameter', async (url, pointer) => {
    const p = expectProblem(await get(url), 400)
    expect(p.errors).toEqual([expect.objectContaining({ pointer, in: 'path' })])
  })

  it('in a query value → 400 naming it', async () => {
    const p = expectProblem(await get('/v1/projects/team-a/clusters?label=a%00b'), 400)
    expect(pointersOf(p, 'query')).toEqual(['/label'])
  })

  it('in a header → 400 naming it', async () => {
    const p = expectProblem(await get('/v1/projects', { ...admin, 'x-trace': 'a\u0000b' }), 400)
    expect(pointersOf(p, 'header')).toEqual(['/x-trace'])
  })
})

describe('deeply nested JSON', () => {
  const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`

  it.each([
    ['POST', '/v1/auth/logout', false],
    ['POST', '/v1/projects/team-a/clusters', true],
    ['PATCH', '/v1/projects/team-a/clusters/c1', true],
  ] as const)(
    '%s %s: 3,000 levels → 400 (logout takes no credentials)',
    async (method, url, authenticated) => {
      const headers = authenticated ? admin : {}
      const res = await app.inject({
        method,
        url,
        headers: { ...headers, 'content-type': 'application/json' },
        payload: `{"labels":${nested(3000)}}`,
      })
      const p = expectProblem(res, 400)
      expect(p.errors).toEqual([expect.objectContaining({ pointer: '/', in: 'body' })])
      expect(p.detail).toContain(`${maxJsonDepth} levels`)
    },
  )

  it('counts arrays and objects, not brackets inside strings', () => {
    expect(nestsDeeperThan(nested(maxJsonDepth), maxJsonDepth)).toBe(false)
    expect(nestsDeeperThan(nested(maxJsonDepth + 1), maxJsonDepth)).toBe(true)
    expect(nestsDeeperThan(JSON.stringify({ a: '[{'.repeat(100), 'b\\"[': 1 }), 2)).toBe(false)
  })

  it('findNul walks any depth without recursion', () => {
    let deep: unknown = 'a\u0000b'
    for (let i = 0; i < 100_000; i++) deep = [deep]
    expect(findNul(deep)).toBe(`${'/0'.repeat(100_000)}`)
  })
})

describe('URLs the router refuses', () => {
  it.each(['/v1/projects/%ff', '/v1/projects/%zz/clusters', '/v1/templates/%e0%a4'])(
    '%s (malformed percent-encoding) → 400 problem',
    async (url) => {
      const p = expectProblem(await get(url), 400)
      expect(p.type).toBe('https://kiln.dev/problems/malformed-url')
    },
  )

  it('a path parameter over 100 characters → 400 naming it, from the schema', async () => {
    const p = expectProblem(await get(`/v1/projects/team-a/clusters/${'a'.repeat(150)}`), 400)
    expect(p.errors).toEqual([expect.objectContaining({ pointer: '/cluster', in: 'path' })])
  })
})

describe('operation ids', () => {
  it.each([
    ['GET', '/v1/operations/not-a-uuid'],
    ['GET', '/v1/operations/not-a-uuid/events'],
    ['POST', '/v1/operations/not-a-uuid/cancel'],
    ['POST', '/v1/operations/not-a-uuid/retry'],
  ] as const)('%s %s → 400 naming the parameter', async (method, url) => {
    const p = expectProblem(await app.inject({ method, url, headers: admin }), 400)
    expect(p.errors).toEqual([expect.objectContaining({ pointer: '/operation', in: 'path' })])
  })

  it('an unknown one → 404', async () => {
    expectProblem(await get('/v1/operations/00000000-0000-4000-8000-000000000000'), 404)
  })

  it('without credentials, a malformed one is still 401 first', async () => {
    expectProblem(await get('/v1/operations/not-a-uuid', {}), 401)
  })
})

describe('a refused bearer token', () => {
  it.each([
    ['no credentials', {}, 'missing-token'],
    ['not a bearer token', { authorization: 'Basic YTpi' }, 'malformed-token'],
    ['not a Kiln token', { authorization: 'Bearer nope' }, 'malformed-token'],
    ['an unknown Kiln token', { authorization: `Bearer kiln_00000000_${'0'.repeat(64)}` }, 'token-unknown'],
  ] as const)('%s: 401 with its reason on every route', async (_, headers, reason) => {
    for (const url of [
      '/v1/projects',
      '/v1/projects/team-a/clusters',
      '/v1/templates',
      '/v1/kubernetes-versions',
    ]) {
      const p = expectProblem(await get(url, headers), 401)
      expect(p.reason, url).toBe(reason)
    }
  })
})

describe('If-Match', () => {
  const patch = (ifMatch: string) =>
    app.inject({
      method: 'PATCH',
      url: '/v1/projects/team-a/clusters/c1',
      headers: { ...admin, 'if-match': ifMatch },
      payload: { labels: { a: 'b' } },
    })

  it.each(['garbage', '"unterminated', '3', 'W/3', '"a"b"'])(
    'malformed (%s) → 400 naming the header',
    async (v) => {
      const p = expectProblem(await patch(v), 400)
      expect(p.errors).toEqual([expect.objectContaining({ pointer: '/If-Match', in: 'header' })])
    },
  )

  it('well-formed but stale → 412', async () => {
    expectProblem(await patch('"99999"'), 412)
    expectProblem(await patch('W/"opaque"'), 412)
  })

  it('the current ETag → 202 (a PATCH answers with its operation)', async () => {
    const res = await patch(clusterETag)
    expect(res.statusCode, res.body).toBe(202)
  })
})

describe('label keys', () => {
  it('a unicode key → 400 at the key, saying the key rule it breaks', async () => {
    const res = await app.inject({
      method: 'PATCH',
      url: '/v1/projects/team-a/clusters/c1',
      headers: admin,
      payload: { labels: { ключ: 'v', 'a/b/c': 'v', fine: 'v' } },
    })
    const p = expectProblem(res, 400)
    expect(p.errors).toEqual([
      {
        pointer: '/labels/ключ',
        in: 'body',
        message: expect.stringMatching(/^key 'ключ' is not valid: a label key/),
      },
      { pointer: '/labels/a~1b~1c', in: 'body', message: expect.stringContaining('63 characters') },
    ])
  })
})

describe('what Node’s HTTP parser refuses, on a listening server', () => {
  let port: number

  beforeAll(async () => {
    await app.listen({ host: '127.0.0.1', port: 0 })
    port = (app.server.address() as { port: number }).port
  })

  /** Writes raw bytes and reads the whole answer: status, headers and body. */
  function raw(request: string): Promise<{ status: number; headers: string; body: string }> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1')
      const chunks: Buffer[] = []
      socket.on('data', (c) => chunks.push(c))
      socket.on('error', reject)
      socket.on('close', () => {
        const text = Buffer.concat(chunks).toString('utf8')
        const [head = '', ...rest] = text.split('\r\n\r\n')
        resolve({
          status: Number(head.split(' ')[1]),
          headers: head.toLowerCase(),
          body: rest.join('\r\n\r\n'),
        })
      })
      socket.end(request)
    })
  }

  const expectRawProblem = (res: { status: number; headers: string; body: string }, status: number) => {
    expect(res.status, res.body).toBe(status)
    expect(res.headers).toContain('content-type: application/problem+json')
    const body = JSON.parse(res.body) as { type: string; status: number }
    expect(body.type).toMatch(/^https:\/\/kiln\.dev\/problems\/[a-z-]+$/)
    expect(body.status).toBe(status)
    return body
  }

  const request = (path: string, headers: string[] = []) =>
    [`GET ${path} HTTP/1.1`, 'Host: kiln', 'Connection: close', ...headers, '', ''].join('\r\n')

  it('a malformed percent-encoding → 400 problem', async () => {
    expectRawProblem(await raw(request('/v1/projects/%ff')), 400)
  })

  it('a 40 kB bearer token is judged: 401 problem with its reason', async () => {
    const res = await raw(request('/v1/projects', [`Authorization: Bearer kiln_${'a'.repeat(40_000)}`]))
    expect(expectRawProblem(res, 401)).toMatchObject({ reason: 'malformed-token' })
  })

  it(`headers beyond ${maxHeaderBytes} bytes → 431 problem`, async () => {
    const res = await raw(request('/v1/projects', [`Authorization: Bearer ${'a'.repeat(100_000)}`]))
    expectRawProblem(res, 431)
  })

  it('a control character in a header → 400 problem', async () => {
    expectRawProblem(await raw(request('/v1/projects', ['X-Trace: a\u0001b'])), 400)
  })

  it('a request line that is not HTTP → 400 problem', async () => {
    expectRawProblem(await raw('HELLO\r\n\r\n'), 400)
  })
})
