import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api'
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createLogger,
  startTracing,
  type Tracing,
  tracingSettings,
} from '../../../packages/telemetry/src/index.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import { aSimulatedBackend, type OperationBody, PROJECT, waitForOperation } from './support.ts'

// Traces and logs of one create, end to end: the real API (inject) and the real engine in this
// process, the tracer provider of the telemetry package with its exporter swapped for memory (or
// for a stand-in OTLP collector over real HTTP).

const apiLines: string[] = []
const workerLines: string[] = []
let stack: TestStack

beforeAll(async () => {
  stack = await startTestStack({
    api: { logger: createLogger({ service: 'kiln-api', destination: { write: (l) => apiLines.push(l) } }) },
    engine: {
      logger: createLogger({ service: 'kiln-worker', destination: { write: (l) => workerLines.push(l) } }),
    },
  })
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
})

afterAll(async () => {
  await stack?.close()
})

const hex = (bytes: number) => randomBytes(bytes).toString('hex')

/** POST a create with a caller's traceparent; returns the operation, the answer's headers. */
async function create(name: string, body: Record<string, unknown> = {}, traceparent?: string) {
  const res = await stack.app.inject({
    method: 'POST',
    url: `/v1/projects/${PROJECT}/clusters`,
    payload: { name, template: 'k8s-1.31', ...body },
    headers: traceparent ? { traceparent } : {},
  })
  expect(res.statusCode, res.body).toBe(202)
  const accepted = res.json() as OperationBody
  return { accepted, headers: res.headers, done: await waitForOperation(stack.app, accepted.id, 60_000) }
}

const byId = (spans: ReadableSpan[]) => new Map(spans.map((s) => [s.spanContext().spanId, s]))
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId

describe('traces', () => {
  let tracing: Tracing
  const exporter = new InMemorySpanExporter()

  beforeAll(async () => {
    tracing = await startTracing(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp' }, 'kiln-test'), {
      spanProcessor: new SimpleSpanProcessor(exporter),
    })
    expect(tracing.enabled).toBe(true)
  })
  afterAll(async () => {
    await tracing?.shutdown()
  })

  it('one create is one trace: the request span, the operation span, every step, every driver call', async () => {
    const callerTrace = hex(16)
    const callerSpan = hex(8)
    const { accepted, headers, done } = await create('traced', {}, `00-${callerTrace}-${callerSpan}-01`)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    await tracing.forceFlush()

    const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === callerTrace)
    const ids = byId(spans)
    // The API's span continues the caller's trace, under the caller's span.
    const requests = spans.filter((s) => s.kind === SpanKind.SERVER)
    expect(requests.map((s) => s.name)).toEqual(['POST /v1/projects/:project/clusters'])
    const request = requests[0]!
    expect(parentOf(request)).toBe(callerSpan)
    expect(request.instrumentationScope.name).toBe('kiln-api')
    expect(request.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/projects/:project/clusters',
      'http.response.status_code': 202,
      'kiln.project': PROJECT,
      'kiln.request.id': headers['x-request-id'],
    })
    expect(headers.traceparent).toBe(`00-${callerTrace}-${request.spanContext().spanId}-01`)
    // Stored with the operation: a job the dispatcher re-creates joins the same trace.
    const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
    expect(row.traceparent).toBe(headers.traceparent)
    expect(row.requestId).toBe(headers['x-request-id'])

    const operations = spans.filter((s) => s.name === 'operation cluster.create')
    expect(operations.length).toBeGreaterThanOrEqual(1)
    for (const op of operations) {
      expect(parentOf(op)).toBe(request.spanContext().spanId)
      expect(op.kind).toBe(SpanKind.CONSUMER)
      expect(op.instrumentationScope.name).toBe('kiln-worker')
      expect(op.attributes).toMatchObject({
        'kiln.operation.id': accepted.id,
        'kiln.operation.kind': 'cluster.create',
        'kiln.project': PROJECT,
        'kiln.cluster.id': row.clusterId,
      })
    }
    expect(operations.at(-1)!.attributes['kiln.operation.result']).toBe('succeeded')

    const steps = spans.filter((s) => s.name.startsWith('step '))
    expect(new Set(steps.map((s) => s.name))).toEqual(new Set(done.steps.map((s) => `step ${s.name}`)))
    for (const step of steps) {
      expect(operations.map((o) => o.spanContext().spanId)).toContain(parentOf(step))
      expect(step.attributes['kiln.operation.id']).toBe(accepted.id)
      expect(step.status.code).not.toBe(SpanStatusCode.ERROR)
    }

    const calls = spans.filter((s) => s.kind === SpanKind.CLIENT)
    expect(calls.map((c) => c.name)).toEqual(
      expect.arrayContaining(['simulator.ensureMachines', 'simulator.bootstrap', 'simulator.joinMachines']),
    )
    for (const call of calls) {
      const parent = ids.get(parentOf(call)!)
      expect(parent?.name, `${call.name}'s parent`).toMatch(/^step /)
      expect(call.attributes).toMatchObject({ 'kiln.backend.kind': 'simulator', 'kiln.backend.name': 'sim' })
    }
    const allocate = steps.find((s) => s.name === 'step allocate-machines')!
    expect(calls.filter((c) => parentOf(c) === allocate.spanContext().spanId).map((c) => c.name)).toContain(
      'simulator.ensureMachines',
    )
    // Nothing of the create is orphaned: every span hangs off another of the same trace.
    for (const span of spans) if (span !== request) expect(ids.has(parentOf(span)!), span.name).toBe(true)
  }, 90_000)

  it('a failing step marks its span, and the operation span, ERROR with the exception recorded', async () => {
    exporter.reset()
    // 40 m1.large in the whole data centre; this asks for 1 + 50.
    const { accepted, done } = await create('too-big', {
      nodeGroups: [{ name: 'workers', count: 50, maxCount: 100 }],
    })
    expect(done.error).toMatchObject({ code: 'ERR_CAPACITY', step: 'reserve-capacity' })
    await tracing.forceFlush()
    const spans = exporter.getFinishedSpans()
    const operation = spans.find(
      (s) => s.name === 'operation cluster.create' && s.attributes['kiln.operation.id'] === accepted.id,
    )!
    expect(operation.status.code).toBe(SpanStatusCode.ERROR)
    expect(operation.attributes['kiln.operation.result']).toBe('failed')
    const step = spans.find(
      (s) => s.name === 'step reserve-capacity' && parentOf(s) === operation.spanContext().spanId,
    )!
    expect(step.status).toMatchObject({
      code: SpanStatusCode.ERROR,
      message: expect.stringMatching(/capacity/i),
    })
    expect(step.events.map((e) => e.name)).toContain('exception')
  }, 90_000)

  it("the worker's log lines for an operation carry its operation, cluster, project, step, request and trace", async () => {
    workerLines.length = 0
    apiLines.length = 0
    const { accepted, headers, done } = await create('logged')
    expect(done.status).toBe('succeeded')
    const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
    const [, traceId] = /^00-([0-9a-f]{32})-/.exec(row.traceparent!)!

    // Every line is one JSON object of the one shape.
    const worker = workerLines.map((l) => JSON.parse(l) as Record<string, unknown>)
    const ofOperation = worker.filter((l) => l.operationId === accepted.id)
    const stepLines = ofOperation.filter((l) => l.msg === 'step finished')
    expect(stepLines.map((l) => l.step)).toEqual(done.steps.map((s) => s.name))
    for (const line of stepLines) {
      expect(line).toMatchObject({
        level: 'info',
        service: 'kiln-worker',
        operationId: accepted.id,
        clusterId: row.clusterId,
        project: PROJECT,
        requestId: headers['x-request-id'],
        trace_id: traceId,
        span_id: expect.stringMatching(/^[0-9a-f]{16}$/),
      })
      expect(new Date(String(line.time)).toISOString()).toBe(line.time)
    }
    expect(ofOperation).toContainEqual(
      expect.objectContaining({ msg: 'operation finished', outcome: 'succeeded' }),
    )

    // The API's line for the same request carries its id, the project and the trace.
    const api = apiLines.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(api).toContainEqual(
      expect.objectContaining({
        msg: 'request completed',
        service: 'kiln-api',
        level: 'info',
        requestId: headers['x-request-id'],
        project: PROJECT,
        trace_id: traceId,
      }),
    )
  }, 90_000)
})

describe('without OTEL variables', () => {
  it('registers no provider, exports nothing, stores no traceparent; the request id is still stored', async () => {
    const collector = await otlpCollector()
    try {
      // The endpoint is configured but the SDK disabled: the switch that wins.
      const disabled = await startTracing(
        tracingSettings(
          { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url, OTEL_SDK_DISABLED: 'true' },
          'kiln-api',
        ),
      )
      const none = await startTracing(tracingSettings({}, 'kiln-api'))
      expect([disabled.enabled, none.enabled]).toEqual([false, false])
      const { accepted, headers, done } = await create('untraced')
      expect(done.status).toBe('succeeded')
      await Promise.all([disabled.shutdown(), none.shutdown()])

      const probe = trace.getTracer('probe').startSpan('probe')
      expect(probe.isRecording()).toBe(false)
      expect(headers.traceparent).toBeUndefined()
      const row = await stack.db.operation.findUniqueOrThrow({ where: { id: accepted.id } })
      expect(row).toMatchObject({ traceparent: null, requestId: headers['x-request-id'] })
      expect(collector.spans()).toEqual([])
    } finally {
      await collector.close()
    }
  }, 90_000)

  it('with OTEL_EXPORTER_OTLP_ENDPOINT the same create reaches an OTLP collector, named by OTEL_SERVICE_NAME', async () => {
    const collector = await otlpCollector()
    const tracing = await startTracing(
      tracingSettings(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
          OTEL_SERVICE_NAME: 'kiln-under-test',
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,team=plat%20form',
        },
        'kiln-api',
      ),
    )
    try {
      const { done } = await create('exported')
      expect(done.status).toBe('succeeded')
      await tracing.forceFlush()
      const names = collector.spans().map((s) => s.name)
      expect(names).toEqual(
        expect.arrayContaining(['POST /v1/projects/:project/clusters', 'operation cluster.create']),
      )
      expect(collector.resources()[0]).toMatchObject({
        'service.name': 'kiln-under-test',
        'deployment.environment.name': 'test',
        team: 'plat form',
      })
    } finally {
      await tracing.shutdown()
      await collector.close()
    }
  }, 90_000)
})

interface OtlpJson {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] }
    scopeSpans: { spans: { name: string }[] }[]
  }[]
}

/** A stand-in OTLP/HTTP collector: keeps what is POSTed to /v1/traces (JSON, the exporter's encoding). */
async function otlpCollector() {
  const received: OtlpJson[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.url === '/v1/traces') received.push(JSON.parse(Buffer.concat(chunks).toString()) as OtlpJson)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    spans: () =>
      received.flatMap((r) => r.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))),
    resources: () =>
      received.flatMap((r) =>
        r.resourceSpans.map((rs) =>
          Object.fromEntries(rs.resource.attributes.map((a) => [a.key, a.value.stringValue])),
        ),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}
