import type { Backend, Database, Operation } from '@kiln/db'
import type { Driver } from '@kiln/drivers'
import { LeaseLost, RetryLater, type RunnerOptions, type RunResult } from '@kiln/jobs'
import {
  contextFromTraceparent,
  inSpan,
  type Logger,
  SpanKind,
  SpanStatusCode,
  tracedCalls,
} from '@kiln/telemetry'

/** The tracer scope of the worker's spans. */
export const workerTracer = 'kiln-worker'

/** A backend's driver whose every call is a span, a child of the step making it. */
export const tracedDriver = (driver: Driver, backend: Pick<Backend, 'kind' | 'name'>): Driver =>
  tracedCalls(driver, workerTracer, backend.kind, {
    kind: SpanKind.CLIENT,
    attributes: { 'kiln.backend.kind': backend.kind, 'kiln.backend.name': backend.name },
    skip: ['close'],
  })

type AroundStep = NonNullable<RunnerOptions['aroundStep']>

const elapsedMs = (since: number) => Math.round(performance.now() - since)

/**
 * One run attempt of an operation as a span (a child of the request that started it, through the
 * traceparent stored with the operation) and a child logger carrying the operation's identity;
 * each step a span and a logger of its own below it.
 */
export function operationTelemetry(db: Database, logger: Logger, workerId: string) {
  const aroundStepOf =
    (log: Logger): AroundStep =>
    (operation, step, run) => {
      const stepLog = log.child({ step })
      return inSpan(
        workerTracer,
        `step ${step}`,
        { attributes: { 'kiln.step': step, 'kiln.operation.id': operation.id } },
        async () => {
          const started = performance.now()
          stepLog.debug('step started')
          try {
            const result = await run()
            stepLog.info({ durationMs: elapsedMs(started) }, 'step finished')
            return result
          } catch (error) {
            stepLog.warn({ err: error, durationMs: elapsedMs(started) }, 'step failed')
            throw error
          }
        },
      )
    }

  return {
    /** Runs one attempt of `operation` (null: the row is gone; the runner says so) in its span. */
    async attempt(
      operation: Operation | null,
      run: (aroundStep: AroundStep | undefined) => Promise<RunResult>,
    ): Promise<RunResult> {
      if (!operation) return run(undefined)
      const project = await db.project.findUnique({
        where: { id: operation.projectId },
        select: { name: true },
      })
      const log = logger.child({
        operationId: operation.id,
        operationKind: operation.kind,
        clusterId: operation.clusterId,
        project: project?.name ?? operation.projectId,
        requestId: operation.requestId,
      })
      return inSpan(
        workerTracer,
        `operation ${operation.kind}`,
        {
          kind: SpanKind.CONSUMER,
          parent: contextFromTraceparent(operation.traceparent),
          attributes: {
            'kiln.operation.id': operation.id,
            'kiln.operation.kind': operation.kind,
            'kiln.project': project?.name ?? operation.projectId,
            'kiln.worker.id': workerId,
            ...(operation.clusterId ? { 'kiln.cluster.id': operation.clusterId } : {}),
            ...(operation.requestId ? { 'kiln.request.id': operation.requestId } : {}),
          },
        },
        async (span) => {
          try {
            const result = await run(aroundStepOf(log))
            span.setAttribute(
              'kiln.operation.result',
              result.state === 'finished' ? result.outcome : result.state,
            )
            if (result.state === 'finished') {
              if (result.outcome === 'failed')
                span.setStatus({ code: SpanStatusCode.ERROR, message: 'operation failed' })
              log.info({ outcome: result.outcome }, 'operation finished')
            }
            return result
          } catch (error) {
            // A retry later or a lease another worker took is how a durable operation works, not a fault.
            if (error instanceof RetryLater || error instanceof LeaseLost)
              log.info({ reason: error.message }, 'operation attempt ended; it carries on later')
            else log.error({ err: error }, 'operation attempt failed')
            throw error
          }
        },
      )
    },
  }
}
