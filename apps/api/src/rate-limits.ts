import rateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { RedisClient as Redis } from '@kiln/jobs'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HttpProblem } from './problems.ts'

export interface RateLimits {
  /** Requests per window for one authenticated identity (an API token, a user); 0: unlimited. */
  perIdentity: number
  /** Requests per window from one client address, counted before authentication; 0: unlimited. */
  perAddress: number
  windowMs: number
  /** How long the count may take; a slower (or unreachable) Redis lets the request through. */
  redisTimeoutMs?: number
}

/** Never limited: probes, the API's own documents, and the portal's static files. */
export function isExemptFromRateLimits(routeUrl: string | undefined): boolean {
  if (routeUrl === undefined) return false
  return (
    ['/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/portal'].includes(routeUrl) ||
    routeUrl.startsWith('/docs/') ||
    routeUrl.startsWith('/portal/')
  )
}

type Check = ReturnType<FastifyInstance['createRateLimit']>
type Counted = Exclude<Awaited<ReturnType<Check>>, { isAllowed: true }>

const warnEveryMs = 60_000

/**
 * Rate limits per client address and per authenticated identity, counted in Redis by
 * @fastify/rate-limit so every API replica shares the counts. Returns the two onRequest hooks:
 * `byAddress` goes before authentication (it also protects it), `byIdentity` after (the identity is
 * only known then). Over a limit is a 429 problem with Retry-After and RateLimit-*; every limited
 * answer carries RateLimit-* of the tighter limit. When Redis cannot count, requests go through
 * unlimited (and a warning is logged at most once a minute): losing Redis must not take the API down.
 */
export async function rateLimitHooks(app: FastifyInstance, redis: Redis, limits: RateLimits) {
  // Only createRateLimit is used: the plugin's own route hooks would run once per request, and
  // outside the order authentication needs.
  await app.register(rateLimit, { global: false, redis, nameSpace: 'rate-limit:', skipOnError: false })
  const timeoutMs = limits.redisTimeoutMs ?? 250
  let lastWarning = 0

  async function count(check: Check, request: FastifyRequest): Promise<Counted | undefined> {
    let timer: NodeJS.Timeout | undefined
    try {
      const result = await Promise.race([
        check(request),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from Redis in ${timeoutMs} ms`)), timeoutMs)
        }),
      ])
      return result.isAllowed ? undefined : result
    } catch (error) {
      if (Date.now() - lastWarning > warnEveryMs) {
        lastWarning = Date.now()
        request.log.warn({ err: error }, 'rate limits not applied: Redis cannot count requests')
      }
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  function hook(max: number, keyOf: (request: FastifyRequest) => string | undefined, whose: string) {
    const check = app.createRateLimit({
      max,
      timeWindow: limits.windowMs,
      keyGenerator: (request) => keyOf(request) ?? '',
    })
    return async (request: FastifyRequest, reply: FastifyReply) => {
      if (max === 0 || isExemptFromRateLimits(request.routeOptions.url)) return
      const key = keyOf(request)
      if (key === undefined) return
      const result = await count(check, request)
      if (!result) return
      const headers = {
        'ratelimit-limit': String(result.max),
        'ratelimit-remaining': String(result.remaining),
        'ratelimit-reset': String(result.ttlInSeconds),
      }
      if (result.isExceeded) {
        throw new HttpProblem(
          429,
          'rate-limited',
          'Too many requests',
          `More than ${result.max} requests in ${limits.windowMs / 1000} s ${whose}; retry in ${result.ttlInSeconds} s.`,
          [],
          { ...headers, 'ratelimit-remaining': '0', 'retry-after': String(result.ttlInSeconds) },
        )
      }
      // Two limits apply to most requests: the headers show the one closer to running out.
      const shown = reply.getHeader('ratelimit-remaining')
      if (shown === undefined || Number(shown) > result.remaining) reply.headers(headers)
    }
  }

  return {
    byAddress: hook(
      limits.perAddress,
      (request) => `address:${normalizeIP(request.ip)}`,
      'from your address',
    ),
    byIdentity: hook(
      limits.perIdentity,
      (request) =>
        request.principal.kind === 'anonymous' ? undefined : `identity:${request.principal.subject}`,
      'with your credentials',
    ),
  }
}
