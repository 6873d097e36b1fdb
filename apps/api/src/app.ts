import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { Database } from '@kiln/db'
import type { RedisClient as Redis } from '@kiln/jobs'
import { JobProducer, type QueueSettings } from '@kiln/jobs'
import type { MasterKeyring } from '@kiln/pki'
import Fastify, { type FastifyBaseLogger, type FastifyServerOptions, LogController } from 'fastify'
import { registerAuthentication } from './auth.ts'
import { type ApiMetrics, createApiMetrics, registerRequestMetrics } from './metrics.ts'
import { type OidcSettings, type OidcVerifier, sessionIdentity } from './oidc.ts'
import { openApiOptions } from './openapi.ts'
import {
  buildValidatorCompiler,
  clientErrorHandler,
  frameworkErrors,
  maxHeaderBytes,
  registerProblemHandlers,
} from './problems.ts'
import { type RateLimits, rateLimitHooks } from './rate-limits.ts'
import { registerRequestTelemetry } from './request-telemetry.ts'
import type { KilnApp, RouteDeps } from './route-deps.ts'
import { registerAccessRoutes } from './routes/access.routes.ts'
import { registerAuditRoutes } from './routes/audit.routes.ts'
import { registerBackendRoutes } from './routes/backends.routes.ts'
import { registerCatalogueRoutes } from './routes/catalogue.routes.ts'
import { registerClusterRoutes } from './routes/clusters.routes.ts'
import { registerCredentialRoutes } from './routes/credentials.routes.ts'
import { registerHealthRoutes } from './routes/health.routes.ts'
import { registerMasterKeyRoutes } from './routes/master-keys.routes.ts'
import { registerNodeGroupRoutes } from './routes/nodegroups.routes.ts'
import { registerOidcRoutes } from './routes/oidc.routes.ts'
import { registerOperationRoutes } from './routes/operations.routes.ts'
import { registerPortalRoutes } from './routes/portal.routes.ts'
import { registerProblemRoutes } from './routes/problems.routes.ts'
import { registerProjectRoutes } from './routes/projects.routes.ts'
import { registerQuotaRoutes } from './routes/quotas.routes.ts'
import { registerTemplateRoutes } from './routes/templates.routes.ts'
import { namedSchemas } from './schemas.ts'
import { registerSharedAnswers } from './shared-answers.ts'

export interface AppDeps {
  db: Database
  redis: Redis
  /** Where to hand new operations to the workers at once; without it the dispatcher picks them up. */
  queue?: QueueSettings
  /** Opens cluster CA keys to sign the credentials the API issues; without it, issuance answers 503. */
  masterKey?: MasterKeyring
  logger?: boolean | { level: string } | FastifyBaseLogger
  bodyLimitBytes?: number
  /** How often `?wait=` re-reads an operation. */
  operationPollMs?: number
  /**
   * `local` (the default): a request without credentials is the local operator, the embedded
   * single-user mode. `required`: it gets 401. Presented credentials are checked in both.
   */
  authentication?: 'local' | 'required'
  /** OIDC groups whose members are platform admins. */
  platformAdminGroups?: string[]
  /** The OIDC issuer, discovered at boot: bearer JWTs and the portal login. Without it, neither. */
  oidc?: { verifier: OidcVerifier; settings: OidcSettings }
  /** The built portal (apps/portal/dist), served under /portal/; without it /portal/ says how to build it. */
  portalDir?: string
  /** Request rate limits, counted in `redis`; without them, none (main.ts always passes the configured ones). */
  rateLimits?: RateLimits
  /** Which proxies' X-Forwarded-For to believe for the client address (Fastify's `trustProxy`). */
  trustProxy?: boolean | string[]
  /** Where requests, issued credentials and quota refusals are counted; main.ts serves its registry. */
  metrics?: ApiMetrics
}

export type { KilnApp, RouteDeps } from './route-deps.ts'

const isLoggerInstance = (logger: AppDeps['logger']): logger is FastifyBaseLogger =>
  typeof logger === 'object' && typeof (logger as Partial<FastifyBaseLogger>).child === 'function'

/** Builds the API without listening; tests call `inject()` on it, `main.ts` listens. */
export async function buildApp(deps: AppDeps): Promise<KilnApp> {
  const schemas = namedSchemas()
  const app = Fastify({
    // A logger of our own (main.ts: Kiln's one log shape) is an instance; options build Fastify's.
    ...(isLoggerInstance(deps.logger) ? { loggerInstance: deps.logger } : { logger: deps.logger ?? false }),
    logController: new LogController({ requestIdLogLabel: 'requestId' }),
    bodyLimit: deps.bodyLimitBytes ?? 262_144,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    // A path parameter as long as the request head allows: the route's schema judges its length (400).
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: maxHeaderBytes },
    http: { maxHeaderSize: maxHeaderBytes },
    frameworkErrors,
    clientErrorHandler,
    ...(deps.trustProxy !== undefined ? { trustProxy: deps.trustProxy } : {}),
    schemaController: {
      compilersFactory: {
        // Strict bodies, coerced query/path/header values: see buildValidatorCompiler.
        buildValidator: ((external: Record<string, unknown>) =>
          buildValidatorCompiler({ ...external })) as unknown as NonNullable<
          NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
        >['buildValidator'],
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as KilnApp

  for (const schema of schemas) app.addSchema(schema as { $id: string })
  registerRequestTelemetry(app)
  registerProblemHandlers(app)
  const metrics = deps.metrics ?? createApiMetrics({ processMetrics: false })
  registerRequestMetrics(app, metrics)
  registerSharedAnswers(app)
  const limits = deps.rateLimits ? await rateLimitHooks(app, deps.redis, deps.rateLimits) : undefined
  // The per-address limit runs before authentication (and shields it); the per-identity one after.
  if (limits) app.addHook('onRequest', limits.byAddress)
  registerAuthentication(app, deps.db, {
    mode: deps.authentication ?? 'local',
    platformAdminGroups: deps.platformAdminGroups ?? [],
    ...(deps.oidc ? { verifyJwt: (jwt: string) => deps.oidc!.verifier.verify(jwt), sessionIdentity } : {}),
  })
  if (limits) app.addHook('onRequest', limits.byIdentity)
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id)
  })

  await app.register(swagger, openApiOptions)
  await app.register(swaggerUi, { routePrefix: '/docs' })
  app.get('/openapi.json', { schema: { hide: true }, config: { permission: 'public' } }, async () =>
    app.swagger(),
  )

  const producer = deps.queue ? new JobProducer(deps.queue) : null
  app.addHook('onClose', async () => {
    await producer?.close()
  })
  const dispatch = (operationId: string) => {
    if (!producer) return
    producer
      // ensure, not enqueue: a retried operation's finished job still holds its id.
      .ensure('run-operation', { operationId })
      .then(() =>
        deps.db.operation.updateMany({ where: { id: operationId }, data: { enqueuedAt: new Date() } }),
      )
      .catch((error) =>
        app.log.warn({ err: error, operationId }, 'could not queue operation; the dispatcher will'),
      )
  }
  const routeDeps: RouteDeps = {
    db: deps.db,
    redis: deps.redis,
    operationPollMs: deps.operationPollMs ?? 200,
    dispatch,
    masterKey: deps.masterKey ?? null,
    metrics,
  }
  registerHealthRoutes(app, routeDeps)
  registerCatalogueRoutes(app, routeDeps)
  registerBackendRoutes(app, routeDeps)
  registerTemplateRoutes(app, routeDeps)
  registerProjectRoutes(app, routeDeps)
  registerQuotaRoutes(app, routeDeps)
  registerClusterRoutes(app, routeDeps)
  registerNodeGroupRoutes(app, routeDeps)
  registerCredentialRoutes(app, routeDeps)
  registerOperationRoutes(app, routeDeps)
  registerAccessRoutes(app, routeDeps)
  registerAuditRoutes(app, routeDeps)
  registerMasterKeyRoutes(app, routeDeps)
  registerProblemRoutes(app)
  registerOidcRoutes(app, { oidc: deps.oidc, redis: deps.redis, masterKey: deps.masterKey ?? null })
  await registerPortalRoutes(app, deps.portalDir)
  await app.ready()
  return app
}
