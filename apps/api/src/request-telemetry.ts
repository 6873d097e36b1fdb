import {
  contextFromTraceparent,
  type Span,
  SpanKind,
  SpanStatusCode,
  startSpan,
  traceFieldsOf,
  traceparentOf,
} from '@kiln/telemetry'
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** The tracer scope of the API's spans. */
export const apiTracer = 'kiln-api'

const spans = new WeakMap<FastifyRequest, Span>()

/** The W3C traceparent of a request's server span (tracing on), for what the request starts. */
export const requestTraceparent = (request: FastifyRequest): string | undefined => {
  const span = spans.get(request)
  return span ? traceparentOf(span) : undefined
}

const headerText = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value)

/**
 * A server span per request, named by its route pattern, a child of the caller's `traceparent`;
 * the request's log lines carry its trace. While tracing is off every span is a no-op.
 */
export function registerRequestTelemetry(app: FastifyInstance) {
  app.addHook('onRequest', async (request, reply) => {
    const parent = contextFromTraceparent(
      headerText(request.headers.traceparent),
      headerText(request.headers.tracestate),
    )
    const span = startSpan(
      apiTracer,
      request.method,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'url.path': request.url.split('?')[0] ?? request.url,
          'client.address': request.ip,
          'kiln.request.id': request.id,
        },
      },
      parent,
    )
    spans.set(request, span)
    const traceparent = traceparentOf(span)
    if (traceparent) {
      // The caller can find its request's trace from the answer.
      reply.header('traceparent', traceparent)
      request.log = request.log.child(traceFieldsOf(span))
      reply.log = request.log
    }
  })
  // What the route names (its path parameters), on every later line of the request.
  app.addHook('preHandler', async (request, reply) => {
    const params = request.params as Record<string, unknown> | undefined
    const fields: Record<string, unknown> = {}
    if (typeof params?.project === 'string') fields.project = params.project
    if (typeof params?.cluster === 'string') fields.cluster = params.cluster
    if (Object.keys(fields).length === 0) return
    request.log = request.log.child(fields)
    reply.log = request.log
    spans
      .get(request)
      ?.setAttributes(Object.fromEntries(Object.entries(fields).map(([k, v]) => [`kiln.${k}`, String(v)])))
  })
  app.addHook('onError', async (request, _reply, error) => {
    // Recorded, not yet a failure: a 4xx (the caller's mistake) leaves the span's status unset.
    spans.get(request)?.recordException(error)
  })
  const end = (request: FastifyRequest, status: number | undefined) => {
    const span = spans.get(request)
    if (!span) return
    spans.delete(request)
    const route = request.routeOptions.url
    if (route) {
      span.updateName(`${request.method} ${route}`)
      span.setAttribute('http.route', route)
    }
    if (status !== undefined) {
      span.setAttribute('http.response.status_code', status)
      // A 4xx is the caller's mistake, not the server's: only 5xx marks the server span failed.
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR })
    }
    span.end()
  }
  app.addHook('onResponse', async (request, reply) => end(request, reply.statusCode))
  app.addHook('onRequestAbort', async (request) => end(request, undefined))
}
