import { useEffect, useRef, useState } from 'react'
import { type ApiProblem, api, call, type Operation, useAction } from '../api.ts'
import { formatDuration, isFinished } from '../format.ts'
import { ProblemAlert } from './problem.tsx'

interface Props {
  operationId: string
  canMutate: boolean
  /** Called once, when the operation reaches a final status. */
  onFinished: (operation: Operation) => void
  /** Called with the operation a retry started. */
  onFollow: (operation: Operation) => void
}

/** Ticks once a second while `active`, so running durations count up. */
function useNow(active: boolean) {
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    if (!active) return
    const timer = setInterval(() => setNow(Date.now()), 1000)
    return () => clearInterval(timer)
  }, [active])
  return now
}

function stepDuration(step: Operation['steps'][number], now: number): string {
  if (!step.startedAt) return ''
  const end = step.finishedAt ? Date.parse(step.finishedAt) : now
  return formatDuration(end - Date.parse(step.startedAt))
}

/** Follows an operation live over server-sent events, falling back to a GET when the stream drops. */
export function OperationPanel({ operationId, canMutate, onFinished, onFollow }: Props) {
  const [operation, setOperation] = useState<Operation>()
  const [problem, setProblem] = useState<ApiProblem>()
  const retrying = useAction()
  // The latest callback without restarting the stream when the parent re-renders.
  const onFinishedRef = useRef(onFinished)
  onFinishedRef.current = onFinished

  useEffect(() => {
    let closed = false
    let notified = false
    let source: EventSource | undefined
    let timer: ReturnType<typeof setTimeout> | undefined

    function accept(next: Operation) {
      setOperation(next)
      setProblem(undefined)
      if (isFinished(next.status) && !notified) {
        notified = true
        source?.close()
        onFinishedRef.current(next)
      }
    }
    function connect() {
      if (closed) return
      const stream = new EventSource(`/v1/operations/${encodeURIComponent(operationId)}/events`)
      source = stream
      stream.addEventListener('operation', (event) => {
        if (!closed) accept(JSON.parse((event as MessageEvent<string>).data) as Operation)
      })
      // The stream ends after the operation finishes, and may drop before: either way ask the API.
      stream.addEventListener('error', () => {
        stream.close()
        if (!closed && !notified) void recheck()
      })
    }
    async function recheck() {
      const result = await call(
        api.GET('/v1/operations/{operation}', { params: { path: { operation: operationId } } }),
      )
      if (closed) return
      if (result.ok) {
        accept(result.data)
        if (isFinished(result.data.status)) return
      } else {
        setProblem(result.problem)
        if (result.problem.status === 404) return
      }
      timer = setTimeout(connect, 1000)
    }
    connect()
    return () => {
      closed = true
      source?.close()
      clearTimeout(timer)
    }
  }, [operationId])

  const running = operation !== undefined && !isFinished(operation.status)
  const now = useNow(running)

  const retry = async () => {
    const next = await retrying.run(() =>
      call(api.POST('/v1/operations/{operation}/retry', { params: { path: { operation: operationId } } })),
    )
    if (next) onFollow(next)
  }

  const error = operation?.error
  return (
    <section aria-label="Operation progress" className="panel operation">
      <h2>Operation</h2>
      {problem && <ProblemAlert problem={problem} />}
      {retrying.problem && <ProblemAlert problem={retrying.problem} />}
      {!operation ? (
        !problem && <p>Loading…</p>
      ) : (
        <>
          <p>
            <code>{operation.kind}</code>{' '}
            <span className={`status status-${operation.status}`}>{operation.status}</span>{' '}
            {operation.progress}%
          </p>
          <progress max={100} value={operation.progress} aria-label="Percent complete">
            {operation.progress}%
          </progress>
          <ol className="steps">
            {operation.steps.map((step) => (
              <li key={step.name} className={`step-${step.status}`}>
                <span className="step-name">{step.name}</span>{' '}
                <span className={`status status-${step.status}`}>{step.status}</span>{' '}
                <span className="muted">{stepDuration(step, now)}</span>
                {step.message && <div className="step-message">{step.message}</div>}
              </li>
            ))}
          </ol>
          {operation.status === 'failed' && error && (
            <div role="alert" className="alert">
              <p className="alert-title">{error.title}</p>
              {error.detail && <p>{error.detail}</p>}
              <p>
                Reason: <code>{String(error['reason'] ?? 'unknown')}</code> · Code:{' '}
                <code>{String(error['code'] ?? 'none')}</code>
              </p>
            </div>
          )}
          {operation.status === 'failed' && !error && (
            <p role="alert" className="alert">
              The operation failed.
            </p>
          )}
          {operation.status === 'cancelled' && <p>The operation was cancelled.</p>}
          {operation.status === 'failed' && canMutate && (
            <button type="button" onClick={retry} disabled={retrying.busy}>
              Retry
            </button>
          )}
        </>
      )}
    </section>
  )
}
