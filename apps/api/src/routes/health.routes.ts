import { StringEnum } from '@kiln/domain'
import Type from 'typebox'
import { sendProblem } from '../problems.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { named, ref } from '../schemas.ts'

const Check = StringEnum(['ok', 'unavailable'])

async function withTimeout<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms)
      }),
    ])
  } finally {
    clearTimeout(timer)
  }
}

const HealthSchema = named('Health', {
  ...Type.Object({ status: Type.Literal('ok') }, { examples: [{ status: 'ok' }] }),
  description: 'The process is up.',
})

const ReadinessSchema = named('Readiness', {
  ...Type.Object(
    {
      status: Type.Literal('ready'),
      checks: Type.Object({ postgres: Check, redis: Check }),
    },
    { examples: [{ status: 'ready', checks: { postgres: 'ok', redis: 'ok' } }] },
  ),
  description: 'PostgreSQL and Redis both answer.',
})

export function registerHealthRoutes(app: KilnApp, { db, redis }: RouteDeps) {
  app.get(
    '/healthz',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'getHealth',
        summary: 'Liveness: the process is up',
        description:
          'Answers 200 while the process serves requests, without touching PostgreSQL or Redis: for a liveness probe. Needs no credentials and is not rate limited.',
        tags: ['health'],
        response: { 200: ref(HealthSchema) },
      },
    },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'getReadiness',
        summary: 'Readiness: PostgreSQL and Redis are reachable',
        description:
          'Checks that PostgreSQL and Redis answer (each within a short timeout): 200 `ready` when both do, 503 naming the one that does not. For a readiness probe; needs no credentials and is not rate limited.',
        tags: ['health'],
        response: {
          200: ref(ReadinessSchema),
        },
      },
    },
    async (request, reply) => {
      const [pgResult, redisResult] = await Promise.allSettled([
        withTimeout(db.$queryRaw`SELECT 1`, 2_000),
        withTimeout(redis.ping(), 2_000),
      ])
      const checks = {
        postgres: pgResult.status === 'fulfilled' ? ('ok' as const) : ('unavailable' as const),
        redis: redisResult.status === 'fulfilled' ? ('ok' as const) : ('unavailable' as const),
      }
      if (checks.postgres === 'ok' && checks.redis === 'ok') return { status: 'ready' as const, checks }
      return sendProblem(
        reply,
        {
          type: 'https://kiln.dev/problems/service-unavailable',
          title: 'Not ready',
          status: 503,
          detail: `postgres: ${checks.postgres}, redis: ${checks.redis}`,
          instance: request.url,
          requestId: request.id,
          checks,
        },
        { 'retry-after': '5' },
      )
    },
  )
}
