import { existsSync, statSync } from 'node:fs'
import path from 'node:path'
import fastifyStatic from '@fastify/static'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { HttpProblem } from '../problems.ts'
import type { KilnApp } from '../route-deps.ts'

// The self-service portal (apps/portal, built by Vite into its dist/) under /portal/. It is a
// single-page app: any /portal/… path that is not a built file answers index.html, and the app routes
// itself. Hashed assets are cached for good; index.html never, so a deploy shows at once.

const securityHeaders = {
  'content-security-policy':
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
}

export async function registerPortalRoutes(app: KilnApp, portalDir: string | undefined) {
  const built = portalDir !== undefined && existsSync(path.join(portalDir, 'index.html'))
  if (built) await app.register(fastifyStatic, { root: portalDir, serve: false })
  const hidden = { config: { permission: 'public' as const }, schema: { hide: true } }

  // Both: with ignoreTrailingSlash, `/portal/` arrives as `/portal`, which `/portal/*` does not match.
  const serve = async (request: FastifyRequest, reply: FastifyReply) => {
    if (!built) {
      throw new HttpProblem(
        404,
        'not-found',
        'The portal is not built',
        'Build it with `npm run build -w @kiln/portal` (scripts/up.sh does), or set KILN_PORTAL_DIR.',
      )
    }
    const wanted = (request.params as { '*'?: string })['*'] ?? ''
    const file = path.normalize(wanted).replace(/^(\.\.(\/|\\|$))+/, '')
    const onDisk = path.join(portalDir, file)
    const isFile =
      file !== '' && onDisk.startsWith(portalDir) && existsSync(onDisk) && statSync(onDisk).isFile()
    reply.headers(securityHeaders)
    if (isFile) {
      reply.header(
        'cache-control',
        file.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
      )
      return reply.sendFile(file, { cacheControl: false })
    }
    reply.header('cache-control', 'no-cache')
    return reply.sendFile('index.html', { cacheControl: false })
  }
  app.get('/portal', hidden, serve)
  app.get('/portal/*', hidden, serve)
}
