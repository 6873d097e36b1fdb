import swagger from '@fastify/swagger'
import Fastify from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from './support/api.ts'
import { AnswerChecker, recordAnswers } from './support/recorder.ts'

// The recorder must catch what it exists for: an undeclared status, an undeclared content type and a
// body that does not match its schema, on a route of its own and on Kiln's operations.

async function teapot() {
  const app = Fastify()
  await app.register(swagger, { openapi: { openapi: '3.1.0', info: { title: 't', version: '1' } } })
  app.get(
    '/v1/teapots/:name',
    {
      schema: {
        params: { type: 'object', properties: { name: { type: 'string' } } },
        querystring: { type: 'object', properties: { answer: { type: 'string' } } },
        response: {
          200: {
            description: 'A teapot.',
            content: {
              'application/json': {
                schema: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } },
              },
            },
          },
        },
      },
    },
    async (request, reply) => {
      const { answer } = request.query as { answer?: string }
      // Undeclared on purpose (the cast only quiets the typed reply).
      if (answer === 'undeclared') return reply.code(418 as 200).send({ name: 'short and stout' })
      if (answer === 'html') return reply.type('text/html').send('<p>tea</p>')
      // A string bypasses the serializer, as problem answers do.
      if (answer === 'wrong') return reply.type('application/json').send('{"name":42}')
      return { name: (request.params as { name: string }).name }
    },
  )
  await app.ready()
  return app
}

describe('the response recorder', () => {
  it('passes answers that keep the document and names each that does not', async () => {
    const app = await teapot()
    const recorder = recordAnswers(app)
    expect((await app.inject({ method: 'GET', url: '/v1/teapots/brown' })).statusCode).toBe(200)
    expect(recorder.violations).toEqual([])
    await app.inject({ method: 'GET', url: '/v1/teapots/brown?answer=undeclared' })
    await app.inject({ method: 'GET', url: '/v1/teapots/brown?answer=html' })
    await app.inject({ method: 'GET', url: '/v1/teapots/brown?answer=wrong' })
    expect(recorder.violations).toEqual([
      expect.stringMatching(
        /^GET \/v1\/teapots\/brown\?answer=undeclared → 418 .*status 418 is not declared/,
      ),
      expect.stringMatching(/→ 200 .*content type text\/html is not one of application\/json/),
      expect.stringMatching(/→ 200 .*does not match the declared schema: body\/name must be string/),
    ])
    expect(() => recorder.assertClean()).toThrow(/3 answer\(s\) do not keep the OpenAPI document/)
    await app.close()
  })
})

describe('the recorder on Kiln', () => {
  let api: TestApi
  beforeAll(async () => {
    api = await startTestApi()
  })
  afterAll(async () => {
    await api?.close()
  })

  it('checks Kiln answers against the document Kiln generates', async () => {
    const res = await api.app.inject({ method: 'GET', url: '/v1/projects?limit=1' })
    expect(res.statusCode).toBe(200)
    expect(api.recorder.violations).toEqual([])
    const checker = new AnswerChecker(api.app.swagger() as never)
    const answer = {
      method: 'GET',
      url: '/v1/projects?limit=1',
      statusCode: 200,
      contentType: 'application/json; charset=utf-8',
      body: res.body,
    }
    expect(checker.check(answer)).toBeUndefined()
    expect(checker.check({ ...answer, statusCode: 418 })).toMatch(
      /^GET \/v1\/projects\?limit=1 → 418 \(listProjects\): status 418 is not declared/,
    )
    expect(checker.check({ ...answer, body: '{"items":"none"}' })).toMatch(
      /does not match the declared schema/,
    )
    // A problem answer is checked against Problem.
    expect(
      checker.check({
        ...answer,
        statusCode: 401,
        contentType: 'application/problem+json',
        body: '{"title":"no type"}',
      }),
    ).toMatch(/must have required property 'type'/)
  })
})
