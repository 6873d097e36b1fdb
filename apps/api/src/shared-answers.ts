import type { FastifyInstance, RouteOptions } from 'fastify'
import { requirements } from './auth.ts'
import { problemContentType } from './problems.ts'

/*
 * The answers the framework gives a route besides its own (authentication, validation, body parsing,
 * rate limits, a backing service down) and the headers every answer carries are added to each route's
 * schema here, in one place, when the route is registered. The document then names each of them once,
 * under `components/responses`, `components/headers` and `components/parameters`, and refers to it.
 */

type Json = Record<string, unknown>

const problemSchema = { $ref: 'Problem#' }

const header = (description: string, schema: Json = { type: 'string' }) => ({ description, schema })

/** Response headers, by the name the document gives them. */
export const sharedHeaders = {
  'X-Request-Id': header(
    'This request’s id (yours, when you sent `X-Request-Id`); problems repeat it as `requestId`.',
  ),
  ETag: header('The resource’s current revision; send it back as `If-Match` to change it safely.', {
    type: 'string',
    examples: ['"3"'],
  }),
  Location: header('Where the created resource is, or `/v1/operations/{id}` for an accepted operation.', {
    type: 'string',
    examples: ['/v1/operations/0f8e6c1a-5b7d-4e0f-9a51-0c3b8f2d6a10'],
  }),
  'Retry-After': header('Seconds to wait before retrying.', { type: 'integer', minimum: 0 }),
  'Idempotent-Replayed': header(
    '`true` when this is the stored first answer to an earlier request with the same `Idempotency-Key`.',
    { type: 'string', enum: ['true'] },
  ),
  'RateLimit-Limit': header('How many requests the caller may send in the current window.', {
    type: 'integer',
    minimum: 0,
  }),
  'RateLimit-Remaining': header('How many of them are left.', { type: 'integer', minimum: 0 }),
  'RateLimit-Reset': header('Seconds until the window resets.', { type: 'integer', minimum: 0 }),
} satisfies Record<string, { description: string; schema: Json }>

export type SharedHeader = keyof typeof sharedHeaders

const rateLimitHeaders: SharedHeader[] = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset']

/** Request headers taken by many operations, described once. */
export const sharedParameters = {
  IdempotencyKey: {
    // Lower case, as the routes have always named it: generated clients key their header types by it.
    name: 'idempotency-key',
    in: 'header',
    required: false,
    description:
      'Makes a retry safe: the same key with the same request returns the first answer (status and body) for 24 hours, with `Idempotent-Replayed: true`; with another request it is 422 `idempotency-key-reused`. 1–255 visible ASCII characters.',
    schema: { type: 'string', minLength: 1, maxLength: 255, examples: ['ci-4711-create'] },
  },
  IfMatch: {
    name: 'if-match',
    in: 'header',
    required: false,
    description:
      'An `ETag` from an earlier answer: the change applies only if the resource is still at that revision (else 412 `precondition-failed`). Without it, the change applies to whatever is current.',
    schema: { type: 'string', examples: ['"3"'] },
  },
} as const

interface SharedResponse {
  status: string
  description: string
  headers: SharedHeader[]
}

/** Problem answers any route may give, by the component name the document gives them. */
export const sharedResponses = {
  BadRequest: {
    status: '400',
    description:
      'Malformed or schema-invalid request (`invalid-request`, `malformed-json`); `errors` points at each fault.',
    headers: [],
  },
  Unauthorized: {
    status: '401',
    description:
      'No credentials, or a refused token or session (`unauthenticated`); `WWW-Authenticate` carries the challenge.',
    headers: [],
  },
  Forbidden: {
    status: '403',
    description:
      'Authenticated, but the caller’s role does not allow this (`forbidden`), or a cross-site portal change (`csrf-rejected`).',
    headers: [],
  },
  NotFound: {
    status: '404',
    description: 'Not found, or not visible to you (`not-found`).',
    headers: [],
  },
  Conflict: {
    status: '409',
    description:
      'Conflicts with the current state (`conflict`), or the cluster is busy (`operation-in-progress`, naming the running operation).',
    headers: [],
  },
  PreconditionFailed: {
    status: '412',
    description: '`If-Match` does not match the current `ETag` (`precondition-failed`).',
    headers: [],
  },
  PayloadTooLarge: {
    status: '413',
    description: 'The body is too large (`payload-too-large`).',
    headers: [],
  },
  UnsupportedMediaType: {
    status: '415',
    description: 'The body is not JSON (`unsupported-media-type`).',
    headers: [],
  },
  UnprocessableContent: {
    status: '422',
    description:
      'Well-formed, but breaks a rule (`invalid-spec`, `quota-exceeded`, `idempotency-key-reused`, a cursor from another list); `errors` points at each fault.',
    headers: [],
  },
  TooManyRequests: {
    status: '429',
    description: 'Rate limited (`rate-limited`); retry after `Retry-After` seconds.',
    headers: ['Retry-After', ...rateLimitHeaders],
  },
  ServiceUnavailable: {
    status: '503',
    description:
      'PostgreSQL, Redis or the identity provider is unavailable (`service-unavailable`); nothing was changed. Retry after `Retry-After` seconds.',
    headers: ['Retry-After'],
  },
  UnexpectedError: {
    status: 'default',
    description: 'An unexpected error (`internal`): a bug; report the `requestId`.',
    headers: [],
  },
} satisfies Record<string, SharedResponse>

export type SharedResponseName = keyof typeof sharedResponses

/** A problem answer in a route's schema, headers included, as the document's component describes it. */
export function sharedResponse(name: SharedResponseName) {
  const { description, headers } = sharedResponses[name] as SharedResponse
  return {
    description,
    headers: headerSchemas(['X-Request-Id', ...headers]),
    content: { [problemContentType]: { schema: problemSchema } },
  }
}

/** Route-specific problem answers (404, 409, 412, 422 where the route raises them), from the shared ones. */
export function problemResponses(...statuses: number[]) {
  const out: Record<string, ReturnType<typeof sharedResponse>> = {}
  for (const status of statuses) {
    const name = (Object.keys(sharedResponses) as SharedResponseName[]).find(
      (n) => sharedResponses[n].status === String(status),
    )
    if (!name) throw new Error(`no shared problem response for ${status}`)
    out[status] = sharedResponse(name)
  }
  return out
}

/** Fastify's `headers` of a response schema; the document turns each into a `components/headers` ref. */
function headerSchemas(names: SharedHeader[]): Json {
  return Object.fromEntries(
    names.map((n) => [n, { ...sharedHeaders[n].schema, description: sharedHeaders[n].description }]),
  )
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's 2xx answers carry an `ETag` (the routes that honour `If-Match`, and their GETs). */
    etag?: boolean
    /** `false`: the route's 201 has no `Location` (what it creates has no URL, e.g. a credential). */
    location?: boolean
  }
}

const propertiesOf = (schema: unknown): Json =>
  ((schema as { properties?: Json } | undefined)?.properties ?? {}) as Json

/**
 * Every route is rate limited except probes (tag `health`) and those exempted the way
 * @fastify/rate-limit reads it, `config.rateLimit: false`.
 */
function isRateLimited(route: RouteOptions): boolean {
  const tags = ((route.schema as { tags?: string[] } | undefined)?.tags ?? []) as string[]
  return (
    (route.config as { rateLimit?: unknown } | undefined)?.rateLimit !== false && !tags.includes('health')
  )
}

/** The headers the framework adds to a route's successful answers. */
function successHeaders(route: RouteOptions, status: string): SharedHeader[] {
  const config = (route.config ?? {}) as { etag?: boolean; location?: boolean }
  const names: SharedHeader[] = ['X-Request-Id']
  if (status === '202' || (status === '201' && config.location !== false)) names.push('Location')
  // An accepted change has no new revision yet.
  if (config.etag && status !== '202') names.push('ETag')
  if ('idempotency-key' in propertiesOf(route.schema?.headers)) names.push('Idempotent-Replayed')
  if (isRateLimited(route)) names.push(...rateLimitHeaders)
  return names
}

/** The problem answers the framework can give a route, from what it takes and what it needs. */
function frameworkAnswers(route: RouteOptions): SharedResponseName[] {
  const schema = route.schema ?? {}
  const config = (route.config ?? {}) as { permission?: keyof typeof requirements }
  // A route without a permission is for platform admins (see auth.ts).
  const requirement = config.permission ? requirements[config.permission] : { scope: 'platform' as const }
  // Fastify parses a body on every method but GET and HEAD, whether the route reads one or not.
  const safe = [route.method].flat().every((m) => m === 'GET' || m === 'HEAD')
  const path = route.url ?? ''
  const inProject = path.includes(':project') || path.includes(':operation')
  const names: SharedResponseName[] = []
  // Any request can be malformed at the HTTP layer (a bad percent-encoding, a bad header).
  names.push('BadRequest')
  if (requirement.scope !== 'public') names.push('Unauthorized')
  const mayBeForbidden =
    requirement.scope === 'platform' ||
    (requirement.scope === 'project' && (inProject || !requirement.listable)) ||
    // A portal session's change from another site (csrf-rejected).
    (requirement.scope !== 'public' && !safe)
  if (mayBeForbidden) names.push('Forbidden')
  if (path.includes(':')) names.push('NotFound')
  if (!safe) names.push('PayloadTooLarge', 'UnsupportedMediaType')
  // A foreign cursor, or an Idempotency-Key reused with another request.
  if ('cursor' in propertiesOf(schema.querystring) || 'idempotency-key' in propertiesOf(schema.headers)) {
    names.push('UnprocessableContent')
  }
  if (isRateLimited(route)) names.push('TooManyRequests')
  names.push('ServiceUnavailable', 'UnexpectedError')
  return names
}

/** Adds the shared answers and headers to every route's schema as it is registered. */
export function registerSharedAnswers(app: FastifyInstance) {
  // A success answer without a description of its own is described by the named schema it returns.
  const describe = (answer: Json): string | undefined => {
    if (typeof answer.description === 'string') return answer.description
    const id = typeof answer.$ref === 'string' ? answer.$ref.replace(/#$/, '') : undefined
    const named = id ? (app.getSchema(id) as Json | undefined) : undefined
    return typeof named?.description === 'string' ? named.description : undefined
  }
  app.addHook('onRoute', (route) => {
    if (!route.schema || (route.schema as { hide?: boolean }).hide) return
    const response: Record<string, unknown> = { ...(route.schema.response as Json | undefined) }
    for (const [status, answer] of Object.entries(response)) {
      const headers: SharedHeader[] = /^2\d\d$/.test(status)
        ? successHeaders(route, status)
        : ['X-Request-Id']
      response[status] = withHeaders(answer as Json, headers, describe(answer as Json))
    }
    for (const name of frameworkAnswers(route)) {
      const { status } = sharedResponses[name]
      response[status] ??= sharedResponse(name)
    }
    route.schema = { ...route.schema, response }
  })
}

/** A success answer with headers: Fastify's `{ description, headers, content }` form. */
function withHeaders(answer: Json, names: SharedHeader[], description: string | undefined): Json {
  const headers = headerSchemas(names)
  const described = description === undefined ? {} : { description }
  if ('content' in answer || answer.type === 'null') {
    return { ...described, ...answer, headers: { ...headers, ...(answer.headers as Json | undefined) } }
  }
  return { ...described, headers, content: { 'application/json': { schema: answer } } }
}
