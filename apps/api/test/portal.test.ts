import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'

// How the API serves the built portal: files as they are, every other /portal/ path as the app's
// index.html (the app routes itself), hashed assets cached for good, nothing outside the directory.

let dir: string
let api: TestApi
let unbuilt: TestApi

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-portal-dist-'))
  await mkdir(join(dir, 'assets'))
  await writeFile(join(dir, 'index.html'), '<!doctype html><div id="root"></div>')
  await writeFile(join(dir, 'assets', 'index-abc123.js'), 'console.log(1)')
  await writeFile(join(dir, '..', 'kiln-portal-secret.txt'), 'outside')
  api = await startTestApi({ app: { authentication: 'required', portalDir: dir } })
  unbuilt = await startTestApi({ app: { portalDir: join(dir, 'missing') } })
})

afterAll(async () => {
  await api?.close()
  await unbuilt?.close()
  await rm(dir, { recursive: true, force: true })
  await rm(join(dir, '..', 'kiln-portal-secret.txt'), { force: true })
})

describe('GET /portal/…', () => {
  it('serves the app without credentials, for any path the app routes', async () => {
    for (const url of ['/portal/', '/portal/projects/demo/clusters/web', '/portal/templates']) {
      const res = await api.app.inject({ method: 'GET', url })
      expect(res.statusCode, url).toBe(200)
      expect(res.headers['content-type']).toContain('text/html')
      expect(res.headers['cache-control']).toBe('no-cache')
      expect(res.headers['content-security-policy']).toContain("default-src 'self'")
      expect(res.body).toContain('<div id="root">')
    }
    const bare = await api.app.inject({ method: 'GET', url: '/portal' })
    expect(bare.statusCode).toBe(200)
    expect(bare.body).toContain('<div id="root">')
  })

  it('serves hashed assets as immutable, and nothing outside its directory', async () => {
    const asset = await api.app.inject({ method: 'GET', url: '/portal/assets/index-abc123.js' })
    expect(asset.statusCode).toBe(200)
    expect(asset.headers['content-type']).toContain('javascript')
    expect(asset.headers['cache-control']).toBe('public, max-age=31536000, immutable')
    for (const url of ['/portal/../kiln-portal-secret.txt', '/portal/%2e%2e/kiln-portal-secret.txt']) {
      const res = await api.app.inject({ method: 'GET', url })
      expect(res.body, url).not.toContain('outside')
    }
  })

  it('says how to build the portal when it is not built', async () => {
    const res = await unbuilt.app.inject({ method: 'GET', url: '/portal/' })
    expect(res.statusCode).toBe(404)
    expect(res.headers['content-type']).toContain('application/problem+json')
    expect(res.json()).toMatchObject({ title: 'The portal is not built' })
    expect((res.json() as { detail: string }).detail).toContain('npm run build -w @kiln/portal')
  })

  it('keeps the portal out of the OpenAPI document', async () => {
    const doc = (await api.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, unknown>
    }
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/portal'))).toEqual([])
  })
})
