import { isDatabaseUnavailable, isUniqueViolation } from '@kiln/db'
import { DomainError, ErrorCode } from '@kiln/domain'
import Ajv, { type Options as AjvOptions, type ErrorObject } from 'ajv'
import addFormats from 'ajv-formats'
import type {
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
  FastifySchemaCompiler,
} from 'fastify'

import { domainProblemTypes, type ProblemSlug, problemTypeUri } from './problem-types.ts'

export const problemContentType = 'application/problem+json'

export interface ProblemError {
  pointer: string
  /** Which part of the request the pointer is into. */
  in: 'body' | 'query' | 'path' | 'header'
  message: string
}

export interface Problem {
  type: string
  title: string
  status: number
  detail: string
  instance: string
  requestId: string
  errors?: ProblemError[]
  [extension: string]: unknown
}

/** Thrown by API code for conditions only HTTP knows (a missing header, a bad query value). */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly slug: ProblemSlug,
    readonly title: string,
    detail: string,
    readonly errors: ProblemError[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail)
  }
}

const partOf = (context: string | undefined): ProblemError['in'] =>
  context === 'querystring'
    ? 'query'
    : context === 'params'
      ? 'path'
      : context === 'headers'
        ? 'header'
        : 'body'

/** Ajv's errors as JSON pointers at the offending member (a missing or unknown property is named). */
export function ajvErrorsToProblemErrors(errors: ErrorObject[], context: string | undefined): ProblemError[] {
  const seen = new Set<string>()
  const out: ProblemError[] = []
  for (const e of errors) {
    let pointer = e.instancePath
    let message = e.message ?? 'is invalid'
    if (e.keyword === 'required') {
      pointer += `/${(e.params as { missingProperty: string }).missingProperty}`
      message = 'is required'
    } else if (e.keyword === 'additionalProperties') {
      pointer += `/${(e.params as { additionalProperty: string }).additionalProperty}`
      message = 'is not a known field'
    } else if (e.keyword === 'enum') {
      message = `must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`
    }
    const key = `${pointer}|${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ pointer: pointer || '/', in: partOf(context), message })
  }
  return out
}

function problem(
  request: FastifyRequest,
  status: number,
  slug: ProblemSlug,
  title: string,
  detail: string,
  extra: Partial<Problem> = {},
): Problem {
  return {
    type: problemTypeUri(slug),
    title,
    status,
    detail,
    instance: request.url,
    requestId: request.id,
    ...extra,
  }
}

export function sendProblem(reply: FastifyReply, body: Problem, headers: Record<string, string> = {}) {
  for (const [k, v] of Object.entries(headers)) reply.header(k, v)
  // A string payload bypasses the route's response serializer: problems keep their extensions.
  return reply.code(body.status).type(problemContentType).send(JSON.stringify(body))
}

/** Maps any error to exactly one problem document. */
export function toProblem(
  error: unknown,
  request: FastifyRequest,
): { body: Problem; headers: Record<string, string> } {
  if (error instanceof DomainError) {
    const { status, title } = domainProblemTypes[error.code]
    const where = (error.extensions['in'] as ProblemError['in'] | undefined) ?? 'body'
    const { in: _in, ...extensions } = error.extensions
    return {
      body: problem(request, status, error.code, title, error.message, {
        ...extensions,
        ...(error.violations.length > 0
          ? { errors: error.violations.map((v) => ({ pointer: v.pointer, in: where, message: v.message })) }
          : {}),
      }),
      headers: {},
    }
  }
  if (error instanceof HttpProblem) {
    return {
      body: problem(request, error.status, error.slug, error.title, error.message, {
        ...(error.errors.length > 0 ? { errors: error.errors } : {}),
      }),
      headers: error.headers,
    }
  }
  const fe = error as FastifyError & { validation?: ErrorObject[]; validationContext?: string }
  if (fe.validation) {
    const errors = ajvErrorsToProblemErrors(fe.validation, fe.validationContext)
    return {
      body: problem(
        request,
        400,
        'invalid-request',
        'The request does not match the schema',
        errors.map((e) => `${e.in} ${e.pointer}: ${e.message}`).join('; '),
        { errors },
      ),
      headers: {},
    }
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        body: problem(request, 400, 'malformed-json', 'The body is not valid JSON', fe.message, {
          errors: [{ pointer: '/', in: 'body', message: fe.message }],
        }),
        headers: {},
      }
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        body: problem(request, 413, 'payload-too-large', 'The body is too large', fe.message, {
          errors: [{ pointer: '/', in: 'body', message: fe.message }],
        }),
        headers: {},
      }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        body: problem(request, 415, 'unsupported-media-type', 'Send application/json', fe.message, {
          errors: [{ pointer: '/Content-Type', in: 'header', message: 'must be application/json' }],
        }),
        headers: {},
      }
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return {
      body: problem(request, fe.statusCode, 'bad-request', 'Bad request', fe.message),
      headers: {},
    }
  }
  if (isUniqueViolation(error)) {
    // Writers check names before they insert and runTransaction retries a lost race, so this is a
    // write that still collides: a conflict, not a server fault.
    return {
      body: problem(
        request,
        409,
        ErrorCode.conflict,
        domainProblemTypes[ErrorCode.conflict].title,
        'The request collides with something that already exists; read it again and retry.',
      ),
      headers: {},
    }
  }
  if (isDatabaseUnavailable(error) || isRedisUnavailable(error)) {
    return {
      body: problem(
        request,
        503,
        'service-unavailable',
        'A backing service is unavailable',
        'PostgreSQL or Redis cannot be reached right now; nothing was changed. Retry shortly.',
      ),
      headers: { 'retry-after': '5' },
    }
  }
  return {
    body: problem(
      request,
      500,
      'internal',
      'Internal error',
      `An unexpected error occurred. Report request id ${request.id}.`,
    ),
    headers: {},
  }
}

function isRedisUnavailable(error: unknown): boolean {
  const message = error instanceof Error ? error.message : ''
  return /Connection is closed|Stream isn't writeable|ECONNREFUSED.*6379|MaxRetriesPerRequestError/i.test(
    message,
  )
}

/**
 * Body schemas are checked strictly (no type coercion, unknown fields rejected, not stripped);
 * query, path and header values arrive as strings, so those are coerced.
 */
export function buildValidatorCompiler(
  externalSchemas: Record<string, unknown>,
): FastifySchemaCompiler<unknown> {
  const base: AjvOptions = { allErrors: true, strict: false, removeAdditional: false, useDefaults: true }
  const strictAjv = addFormats(new Ajv({ ...base, coerceTypes: false }))
  const coercingAjv = addFormats(new Ajv({ ...base, coerceTypes: 'array' }))
  for (const schema of Object.values(externalSchemas)) {
    strictAjv.addSchema(schema as object)
    coercingAjv.addSchema(schema as object)
  }
  return ({ schema, httpPart }) =>
    (httpPart === 'body' ? strictAjv : coercingAjv).compile(schema as object) as ReturnType<
      FastifySchemaCompiler<unknown>
    >
}

/** Registers the one error handler and the 404 handler. */
export function registerProblemHandlers(app: FastifyInstance) {
  // Only JSON bodies: anything else is 415, not a schema error about a string.
  app.removeContentTypeParser('text/plain')
  app.addHook('preValidation', async (request) => {
    const pointer = request.body === undefined ? undefined : findNul(request.body)
    if (pointer) {
      throw new HttpProblem(
        400,
        'invalid-request',
        'The request does not match the schema',
        'Strings may not contain NUL characters.',
        [{ pointer, in: 'body', message: 'must not contain a NUL (\\u0000) character' }],
      )
    }
  })
  app.setErrorHandler((error, request, reply) => {
    const { body, headers } = toProblem(error, request)
    if (body.status >= 500) request.log.error({ err: error }, 'request failed')
    return sendProblem(reply, body, headers)
  })
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      problem(
        request,
        404,
        'not-found',
        'Not found',
        `No route ${request.method} ${request.url.split('?')[0]}.`,
      ),
    ),
  )
}

/** Finds the first NUL character in a JSON value (PostgreSQL text cannot hold one). */
export function findNul(value: unknown, pointer = ''): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? pointer || '/' : undefined
  if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) {
      const found = findNul(v, `${pointer}/${i}`)
      if (found) return found
    }
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const here = `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`
      if (k.includes('\u0000')) return here
      const found = findNul(v, here)
      if (found) return found
    }
  }
  return undefined
}
