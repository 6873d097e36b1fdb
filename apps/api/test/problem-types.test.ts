import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { problemBase, problemTypes } from '../src/problem-types.ts'
import { expectProblem } from './helpers.ts'

// Every problem `type` Kiln sends is in one registry, listed in the document and described by a page
// at its path on every server.

let api: TestApi

beforeAll(async () => {
  api = await startTestApi({ app: { authentication: 'required' } })
})

afterAll(async () => {
  await api?.close()
})

const slugs = Object.keys(problemTypes)

describe('problem types', () => {
  it('the document lists every type, with its title, status and description', async () => {
    const doc = parse(await readFile('openapi/kiln.v1.yaml', 'utf8')) as {
      components: {
        schemas: { Problem: Record<string, unknown> & { properties: { type: { description: string } } } }
      }
    }
    const problem = doc.components.schemas.Problem
    const listed = problem['x-problem-types'] as { type: string; title: string; status: number }[]
    expect(listed.map((t) => t.type)).toEqual(slugs.map((s) => `${problemBase}${s}`))
    for (const slug of slugs) expect(problem.properties.type.description).toContain(`${problemBase}${slug}`)
  })

  it('every type URI the source code writes literally is registered', async () => {
    // API code is held to the registry by its types; this catches the packages that write URIs by hand.
    const { stdout } = await promisify(execFile)('grep', [
      '-rohE',
      '--include=*.ts',
      'kiln\\.dev/problems/[a-z0-9-]+',
      ...['apps/api/src', 'apps/worker/src', 'packages/db/src', 'packages/jobs/src', 'packages/domain/src'],
    ])
    const used = new Set(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((u) => u.replace('kiln.dev/problems/', '')),
    )
    expect([...used].filter((slug) => !slugs.includes(slug))).toEqual([])
  })

  it('serves a page for every type at /problems/{slug}, without credentials', async () => {
    for (const [slug, type] of Object.entries(problemTypes)) {
      const res = await api.app.inject({ method: 'GET', url: `/problems/${slug}` })
      expect(res.statusCode, slug).toBe(200)
      expect(res.headers['content-type']).toMatch(/^text\/html/)
      expect(res.body).toContain(`${problemBase}${slug}`)
      expect(res.body).toContain(`HTTP ${type.status}`)
    }
  })

  it('a type a live answer carries resolves to its page', async () => {
    const refused = expectProblem(await api.app.inject({ method: 'GET', url: '/v1/projects' }), 401)
    const page = await api.app.inject({ method: 'GET', url: new URL(refused.type).pathname })
    expect(page.statusCode).toBe(200)
    expect(page.body).toContain(problemTypes.unauthenticated.title)
  })

  it('an unknown type is a 404 problem', async () => {
    const body = expectProblem(await api.app.inject({ method: 'GET', url: '/problems/no-such-type' }), 404)
    expect(body.type).toBe(`${problemBase}not-found`)
  })
})
