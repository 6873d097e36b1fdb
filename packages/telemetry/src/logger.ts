import { hostname } from 'node:os'
import { trace } from '@opentelemetry/api'
import { type DestinationStream, type Level, type Logger, pino } from 'pino'

export type { Logger } from 'pino'

/** A function that receives each log record as an object (tests read what a process would print). */
export type LogSink = (event: Record<string, unknown>) => void

export interface LoggerOptions {
  /** `kiln-api`, `kiln-worker`, …: every line says which process wrote it. */
  service: string
  /** fatal|error|warn|info|debug|trace|silent (LOG_LEVEL); default info. */
  level?: string
  /** Where the JSON lines go; default stdout. A function receives each line parsed. */
  destination?: DestinationStream | LogSink
}

/**
 * The trace and span of the active span, so a log line can be found from its trace and back;
 * nothing while tracing is off (no span is active then).
 */
function activeTraceFields(): Record<string, string> {
  const span = trace.getActiveSpan()
  if (!span?.isRecording()) return {}
  const { traceId, spanId } = span.spanContext()
  return { trace_id: traceId, span_id: spanId }
}

/**
 * The one log shape of every Kiln process: a JSON line with `time` (ISO), `level` (a label),
 * `msg`, `service`, `pid` and `hostname`, plus the fields of the child logger that wrote it.
 */
export function createLogger(options: LoggerOptions): Logger {
  const { destination } = options
  const stream: DestinationStream | undefined =
    typeof destination === 'function'
      ? { write: (line: string) => destination(JSON.parse(line) as Record<string, unknown>) }
      : destination
  return pino(
    {
      level: options.level ?? 'info',
      // pid and hostname tell apart the processes of one API (node:cluster) and the pods of a Deployment.
      base: { service: options.service, pid: process.pid, hostname: hostname() },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      mixin: activeTraceFields,
    },
    stream ?? pino.destination({ dest: 1, sync: true }),
  )
}

const levels = new Set<string>(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])

/**
 * Logs an event written the older way (`{ level?, msg, ...fields }`) through a pino logger, so code
 * that takes a `log(event)` function keeps its calls.
 */
export function logEvent(logger: Logger, event: Record<string, unknown>) {
  const { level, msg, ...fields } = event
  const method = (typeof level === 'string' && levels.has(level) ? level : 'info') as Level
  logger[method](fields, typeof msg === 'string' ? msg : undefined)
}
