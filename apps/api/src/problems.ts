import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { isDatabaseUnavailable, isForeignKeyViolation, isUniqueViolation } from '@kiln/db'
import { DomainError, ErrorCode, pointerSegment } from '@kiln/domain'
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
    /** Members the problem document carries besides the standard ones (a refused token's `reason`). */
    readonly extensions: Record<string, unknown> = {},
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
  // A nullable member (anyOf [T, null]) whose value failed inside T: the errors inside say what is
  // wrong; "must be null" and "must match a schema in anyOf" at the member itself only add noise.
  const explained = new Set(
    errors
      .filter((e) => e.keyword === 'anyOf')
      .map((e) => e.instancePath)
      .filter((at) =>
        errors.some(
          (o) =>
            o.instancePath.startsWith(`${at}/`) || (o.instancePath === at && o.propertyName !== undefined),
        ),
      ),
  )
  for (const e of errors) {
    if (explained.has(e.instancePath) && e.propertyName === undefined && e.schemaPath.includes('anyOf'))
      continue
    // The summary of the key errors reported below it, each with its own key.
    if (e.keyword === 'propertyNames') continue
    let pointer = e.instancePath
    let message = e.message ?? 'is invalid'
    if (e.propertyName !== undefined) {
      // A key breaks the map's key rule: point at the key and say the rule in words.
      const rule = (e.parentSchema as { description?: string } | undefined)?.description
      pointer += `/${pointerSegment(e.propertyName)}`
      message = `key '${e.propertyName}' is not valid: ${rule ?? message}`
    } else if (e.keyword === 'required') {
      pointer += `/${pointerSegment((e.params as { missingProperty: string }).missingProperty)}`
      message = 'is required'
    } else if (e.keyword === 'additionalProperties') {
      pointer += `/${pointerSegment((e.params as { additionalProperty: string }).additionalProperty)}`
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

/** A request that does not match its route's schema: 400, one error per offending member. */
export function schemaProblem(validation: ErrorObject[], context: string | undefined): HttpProblem {
  const errors = ajvErrorsToProblemErrors(validation, context)
  return new HttpProblem(
    400,
    'invalid-request',
    'The request does not match the schema',
    errors.map((e) => `${e.in} ${e.pointer}: ${e.message}`).join('; '),
    errors,
  )
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
        ...error.extensions,
        ...(error.errors.length > 0 ? { errors: error.errors } : {}),
      }),
      headers: error.headers,
    }
  }
  const fe = error as FastifyError & { validation?: ErrorObject[]; validationContext?: string }
  if (fe.validation) return toProblem(schemaProblem(fe.validation, fe.validationContext), request)
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
  if (isUniqueViolation(error) || isForeignKeyViolation(error)) {
    // A write that still collides (writers check names before they insert and runTransaction
    // retries a lost race), or one whose referent a concurrent request removed after it was read:
    // the answer a moment later would be the same conflict, not a server fault.
    return {
      body: problem(
        request,
        409,
        ErrorCode.conflict,
        domainProblemTypes[ErrorCode.conflict].title,
        isUniqueViolation(error)
          ? 'The request collides with something that already exists; read it again and retry.'
          : 'Something this request refers to was removed by another request meanwhile; read it again and retry.',
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
  // verbose: a refused key's error then carries its rule's description (ajvErrorsToProblemErrors).
  const base: AjvOptions = {
    allErrors: true,
    strict: false,
    removeAdditional: false,
    useDefaults: true,
    verbose: true,
  }
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

/**
 * How deep a JSON body may nest. Kiln's deepest document (a cluster's feature overrides) is under
 * ten levels; the bound is generous and keeps every recursive walk of a body far from the stack limit.
 */
export const maxJsonDepth = 64

/** Whether JSON text nests deeper than `limit` arrays and objects, found without parsing or recursion. */
export function nestsDeeperThan(text: string, limit: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c)
        i++ // a backslash escapes the next character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return true
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return false
}

/**
 * The largest request head (request line and headers) Node's parser accepts: four times Node's
 * 16 KiB default, so a long bearer token is judged (401) rather than cut off. Beyond it: 431.
 */
export const maxHeaderBytes = 64 * 1024

const nulProblem = (where: ProblemError['in'], pointer: string) =>
  new HttpProblem(
    400,
    'invalid-request',
    'The request does not match the schema',
    'Strings may not contain NUL characters.',
    [{ pointer, in: where, message: 'must not contain a NUL (\\u0000) character' }],
  )

/** Registers the body parser, the one error handler and the 404 handler. */
export function registerProblemHandlers(app: FastifyInstance) {
  // Only JSON bodies: anything else is 415, not a schema error about a string.
  app.removeContentTypeParser('text/plain')
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (nestsDeeperThan(body as string, maxJsonDepth)) {
      done(
        new HttpProblem(
          400,
          'invalid-request',
          'The request does not match the schema',
          `The body nests deeper than ${maxJsonDepth} levels of arrays and objects.`,
          [{ pointer: '/', in: 'body', message: `must not nest deeper than ${maxJsonDepth} levels` }],
        ),
        undefined,
      )
      return
    }
    parseJson(request, body as string, done)
  })
  // PostgreSQL text cannot hold a NUL: refused here, once for every route, before anything
  // (authorization included) looks a value up.
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.url === undefined) return
    for (const [part, values] of [
      ['path', request.params],
      ['query', request.query],
      ['header', request.headers],
    ] as const) {
      const pointer = values === undefined ? undefined : findNul(values)
      if (pointer) throw nulProblem(part, pointer)
    }
  })
  app.addHook('preValidation', async (request) => {
    const pointer = request.body === undefined ? undefined : findNul(request.body)
    if (pointer) throw nulProblem('body', pointer)
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

/**
 * Fastify's answers for URLs its router cannot take (malformed percent-encoding, an over-long
 * parameter), as problems like every other answer.
 */
export const frameworkErrors = (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
  const { body, headers } =
    error.code === 'FST_ERR_BAD_URL'
      ? toProblem(
          new HttpProblem(
            400,
            'malformed-url',
            'The URL is malformed',
            'The path has a malformed percent-encoding (such as %zz or an invalid UTF-8 sequence).',
          ),
          request,
        )
      : toProblem(error, request)
  return sendProblem(reply, body, headers)
}

/**
 * Answers what Node's HTTP parser refuses before Fastify sees a request (a head over
 * maxHeaderBytes, a control character in a header, a malformed request line) with a problem.
 */
export function clientErrorHandler(error: Error & { code?: string }, socket: Duplex) {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const [status, slug, title, detail]: [number, ProblemSlug, string, string] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [
          431,
          'headers-too-large',
          'The request headers are too large',
          `The request line and headers exceed ${maxHeaderBytes} bytes.`,
        ]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request-timeout', 'The request took too long', 'The request did not arrive in time.']
        : [
            400,
            'malformed-request',
            'The request is not valid HTTP',
            `The HTTP parser refused it (${error.code ?? 'unknown error'}).`,
          ]
  const requestId = crypto.randomUUID()
  const body = JSON.stringify({
    type: problemTypeUri(slug),
    title,
    status,
    detail,
    // The parser never handed over a request, so there is no URL to name.
    instance: '',
    requestId,
  } satisfies Problem)
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${problemContentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(error)
}

/** Finds the first NUL character in a JSON value (PostgreSQL text cannot hold one); iterative, so any depth is safe. */
export function findNul(value: unknown): string | undefined {
  const pending: [unknown, string][] = [[value, '']]
  while (pending.length > 0) {
    const [v, pointer] = pending.pop()!
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return pointer || '/'
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) pending.push([v[i], `${pointer}/${i}`])
    } else if (v && typeof v === 'object') {
      const entries = Object.entries(v)
      for (const [k] of entries) if (k.includes('\u0000')) return `${pointer}/${pointerSegment(k)}`
      for (let i = entries.length - 1; i >= 0; i--) {
        const [k, child] = entries[i]!
        pending.push([child, `${pointer}/${pointerSegment(k)}`])
      }
    }
  }
  return undefined
}
