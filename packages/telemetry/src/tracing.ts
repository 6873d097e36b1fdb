import {
  type Context,
  context,
  defaultTextMapGetter,
  defaultTextMapSetter,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api'
import type { W3CTraceContextPropagator } from '@opentelemetry/core'
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base'

export type { Attributes, Context, Span, SpanOptions } from '@opentelemetry/api'
export { SpanKind, SpanStatusCode } from '@opentelemetry/api'

export interface TracingSettings {
  /** Off unless the environment asks for OTLP; `OTEL_SDK_DISABLED=true` wins. */
  enabled: boolean
  /** `OTEL_SERVICE_NAME`, else the process's own name (kiln-api, kiln-worker). */
  serviceName: string
  /** The OTLP/HTTP traces URL; absent: the exporter's default (http://localhost:4318/v1/traces). */
  endpoint: string | undefined
  /** `OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`, values percent-encoded). */
  resourceAttributes: Record<string, string>
}

type Env = Record<string, string | undefined>

const serviceNameKey = 'service.name'

const nonEmpty = (value: string | undefined) => (value?.trim() ? value.trim() : undefined)

function parseResourceAttributes(text: string | undefined): Record<string, string> {
  const attributes: Record<string, string> = {}
  for (const pair of (text ?? '').split(',')) {
    const at = pair.indexOf('=')
    if (at <= 0) continue
    try {
      attributes[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim())
    } catch {
      // The specification drops a malformed pair, not the whole variable.
    }
  }
  return attributes
}

/**
 * Reads the standard OpenTelemetry variables (called from each app's config.ts with its
 * environment). Tracing is on when `OTEL_TRACES_EXPORTER` names `otlp` or an OTLP endpoint is set.
 */
export function tracingSettings(env: Env, defaultServiceName: string): TracingSettings {
  const exporters = (env.OTEL_TRACES_EXPORTER ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e.length > 0)
  const tracesEndpoint = nonEmpty(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
  const baseEndpoint = nonEmpty(env.OTEL_EXPORTER_OTLP_ENDPOINT)
  // The per-signal variable is the URL itself; the general one is a base the signal's path is added to.
  const endpoint =
    tracesEndpoint ?? (baseEndpoint ? `${baseEndpoint.replace(/\/+$/, '')}/v1/traces` : undefined)
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true'
  const resourceAttributes = parseResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES)
  return {
    enabled:
      !disabled && !exporters.includes('none') && (exporters.includes('otlp') || endpoint !== undefined),
    serviceName: nonEmpty(env.OTEL_SERVICE_NAME) ?? resourceAttributes[serviceNameKey] ?? defaultServiceName,
    endpoint,
    resourceAttributes,
  }
}

export interface Tracing {
  readonly enabled: boolean
  /** Exports what is buffered now. */
  forceFlush(): Promise<void>
  /** Exports what is buffered and unregisters the provider (at shutdown, after the last span). */
  shutdown(): Promise<void>
}

const off: Tracing = { enabled: false, forceFlush: async () => {}, shutdown: async () => {} }

// Set while a provider is registered. Used directly, not through the global propagator: what is
// stored with an operation is W3C trace context whatever else a deployment propagates.
let w3c: W3CTraceContextPropagator | undefined

/**
 * Registers the process's tracer provider when the settings turn tracing on; otherwise registers
 * nothing, and every span Kiln starts is a free no-op. The SDK is imported only then: it costs a
 * process that does not trace about a second of start-up. `spanProcessor` replaces the OTLP
 * exporter (tests collect spans in memory).
 */
export async function startTracing(
  settings: TracingSettings,
  options: { spanProcessor?: SpanProcessor } = {},
): Promise<Tracing> {
  if (!settings.enabled) return off
  const [core, { OTLPTraceExporter }, resources, { BatchSpanProcessor }, { NodeTracerProvider }] =
    await Promise.all([
      import('@opentelemetry/core'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/sdk-trace-node'),
    ])
  const provider = new NodeTracerProvider({
    resource: resources.defaultResource().merge(
      resources.resourceFromAttributes({
        ...settings.resourceAttributes,
        [serviceNameKey]: settings.serviceName,
      }),
    ),
    spanProcessors: [
      options.spanProcessor ??
        new BatchSpanProcessor(new OTLPTraceExporter(settings.endpoint ? { url: settings.endpoint } : {})),
    ],
  })
  provider.register()
  w3c = new core.W3CTraceContextPropagator()
  return {
    enabled: true,
    forceFlush: () => provider.forceFlush(),
    async shutdown() {
      await provider.shutdown()
      w3c = undefined
      trace.disable()
      context.disable()
      propagation.disable()
    },
  }
}

/** The W3C `traceparent` of a span that records (tracing on and sampled), else undefined. */
export function traceparentOf(span: Span): string | undefined {
  if (!w3c || !span.isRecording()) return undefined
  const carrier: Record<string, string> = {}
  w3c.inject(trace.setSpan(ROOT_CONTEXT, span), carrier, defaultTextMapSetter)
  return carrier.traceparent
}

/**
 * A context whose parent is the span a `traceparent` (and `tracestate`) names; the root without
 * one, or while tracing is off.
 */
export function contextFromTraceparent(traceparent: string | null | undefined, tracestate?: string): Context {
  if (!w3c || !traceparent) return ROOT_CONTEXT
  return w3c.extract(
    ROOT_CONTEXT,
    { traceparent, ...(tracestate ? { tracestate } : {}) },
    defaultTextMapGetter,
  )
}

/** `trace_id`/`span_id` of a recording span, for a logger's bindings; nothing otherwise. */
export function traceFieldsOf(span: Span): Record<string, string> {
  if (!span.isRecording()) return {}
  const { traceId, spanId } = span.spanContext()
  return { trace_id: traceId, span_id: spanId }
}

/** Starts a span (a child of `parent`, else of the active span) that the caller ends. */
export const startSpan = (scope: string, name: string, options: SpanOptions, parent?: Context): Span =>
  trace.getTracer(scope).startSpan(name, options, parent)

/** Marks a span failed with the error that ended it. */
export function recordError(span: Span, error: unknown) {
  const message = error instanceof Error ? error.message : String(error)
  span.recordException(error instanceof Error ? error : message)
  span.setStatus({ code: SpanStatusCode.ERROR, message })
}

/**
 * Runs `work` in a new span, active for everything `work` awaits (so spans started inside are its
 * children); a throw is recorded on the span and rethrown.
 */
export function inSpan<T>(
  scope: string,
  name: string,
  options: SpanOptions & { parent?: Context },
  work: (span: Span) => Promise<T>,
): Promise<T> {
  const { parent, ...spanOptions } = options
  return trace
    .getTracer(scope)
    .startActiveSpan(name, spanOptions, parent ?? context.active(), async (span) => {
      try {
        return await work(span)
      } catch (error) {
        recordError(span, error)
        throw error
      } finally {
        span.end()
      }
    })
}

/**
 * Wraps an object's methods so each call is a span (a child of the active one) named
 * `${prefix}.${method}`, and methods returning promises keep the span open until they settle.
 * `skip` names methods left alone (close, which is no call worth a span).
 */
export function tracedCalls<T extends object>(
  target: T,
  scope: string,
  prefix: string,
  options: { attributes?: SpanOptions['attributes']; kind?: SpanOptions['kind']; skip?: string[] } = {},
): T {
  const skip = new Set(options.skip ?? [])
  return new Proxy(target, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object)
      if (typeof value !== 'function' || typeof property !== 'string' || skip.has(property)) return value
      return (...args: unknown[]) => {
        // The tracer is looked up per call: the provider may be registered after the wrap.
        const span = trace.getTracer(scope).startSpan(`${prefix}.${property}`, {
          kind: options.kind,
          attributes: { ...options.attributes, 'kiln.call': property },
        })
        const end = (error?: unknown) => {
          if (error !== undefined) recordError(span, error)
          span.end()
        }
        let result: unknown
        try {
          // Called on the target itself: drivers keep #private fields a proxy as `this` cannot read.
          result = context.with(trace.setSpan(context.active(), span), () => value.apply(object, args))
        } catch (error) {
          end(error)
          throw error
        }
        if (result instanceof Promise)
          return result.then(
            (settled) => {
              end()
              return settled
            },
            (error: unknown) => {
              end(error)
              throw error
            },
          )
        end()
        return result
      }
    },
  })
}
