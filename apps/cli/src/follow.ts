import type { Operation } from '@kiln/client'
import { type Api, call } from './api.ts'
import { CliError, ExitCode } from './errors.ts'

// --wait: follows an operation's server-sent events until it ends. At a terminal: finished steps
// as lines, and a progress bar naming the current step. Otherwise (CI logs): one plain line per
// step change. Progress goes to stderr, so stdout keeps only the result (-o json stays parseable).

export const isTerminal = (op: Pick<Operation, 'status'>) =>
  op.status === 'succeeded' || op.status === 'failed' || op.status === 'cancelled'

export interface Progress {
  tty: boolean
  write(text: string): void
  /** Bar width in characters; the terminal's width decides when known. */
  columns?: number
}

const seconds = (from: string | null, to: string | null) =>
  from ? `${((Date.parse(to ?? new Date().toISOString()) - Date.parse(from)) / 1000).toFixed(1)}s` : ''

/** Reads `event:`/`data:` blocks from a text/event-stream body. */
async function* serverSentEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ event: string; data: string }> {
  const decoder = new TextDecoder()
  let buffer = ''
  const reader = body.getReader()
  try {
    for (;;) {
      const { value, done } = await reader.read()
      if (done) return
      buffer += decoder.decode(value, { stream: true })
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        let event = 'message'
        const data: string[] = []
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue
          if (line.startsWith('event:')) event = line.slice(6).trim()
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
        }
        if (data.length > 0) yield { event, data: data.join('\n') }
      }
    }
  } finally {
    reader.releaseLock()
  }
}

class Renderer {
  private readonly reported = new Map<string, string>()
  private barShown = false

  constructor(
    private readonly progress: Progress,
    private readonly id: string,
  ) {}

  update(op: Operation) {
    const { progress } = this
    if (progress.tty) this.clearBar()
    for (const step of op.steps) {
      const before = this.reported.get(step.name)
      if (before === step.status) continue
      if (progress.tty) {
        // At a terminal only finished steps get a line; the bar shows the running one.
        if (step.status === 'succeeded' || step.status === 'failed' || step.status === 'skipped') {
          const mark = step.status === 'succeeded' ? '✓' : step.status === 'failed' ? '✗' : '-'
          progress.write(
            `${mark} ${step.name.padEnd(24)} ${seconds(step.startedAt, step.finishedAt).padStart(6)}  ${step.message}\n`,
          )
          this.reported.set(step.name, step.status)
        }
      } else if (step.status !== 'pending') {
        const took = step.status === 'running' ? '' : ` in ${seconds(step.startedAt, step.finishedAt)}`
        progress.write(
          `${new Date().toISOString()} operation ${this.id}: step ${step.name} ${step.status}${took}${step.message ? `: ${step.message}` : ''}\n`,
        )
        this.reported.set(step.name, step.status)
      }
    }
    if (progress.tty && !isTerminal(op)) this.drawBar(op)
  }

  private drawBar(op: Operation) {
    const width = Math.max(10, Math.min(40, (this.progress.columns ?? 80) - 50))
    const filled = Math.round((op.progress / 100) * width)
    const current =
      op.steps.find((s) => s.status === 'running') ?? op.steps.find((s) => s.status === 'pending')
    const bar = `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(op.progress).padStart(3)}%`
    this.progress.write(
      `\r\x1b[2K${bar}  ${current?.name ?? op.status}  ${seconds(op.startedAt ?? op.createdAt, null)}`,
    )
    this.barShown = true
  }

  clearBar() {
    if (this.barShown) this.progress.write('\r\x1b[2K')
    this.barShown = false
  }
}

export async function getOperation(api: Api, id: string): Promise<Operation> {
  return call(api, api.client.GET('/v1/operations/{operation}', { params: { path: { operation: id } } }))
}

/**
 * Follows the operation until it ends and returns it; the events stream is reopened if it drops.
 * A failed or cancelled operation is a CliError (exit 1) with the problem's title and detail.
 */
export async function followOperation(api: Api, id: string, progress: Progress): Promise<Operation> {
  const renderer = new Renderer(progress, id)
  let op = await getOperation(api, id)
  renderer.update(op)
  while (!isTerminal(op)) {
    try {
      const { response } = await api.client.GET('/v1/operations/{operation}/events', {
        params: { path: { operation: id } },
        headers: { Accept: 'text/event-stream' },
        parseAs: 'stream',
      })
      if (!response.ok || !response.body) throw new Error(`events answered ${response.status}`)
      for await (const { event, data } of serverSentEvents(response.body)) {
        if (event !== 'operation') continue
        op = JSON.parse(data) as Operation
        renderer.update(op)
        if (isTerminal(op)) break
      }
    } catch {
      // The stream dropped (a restarted API, a proxy's timeout): read the state, then listen again.
      await new Promise((resolve) => setTimeout(resolve, 1000))
    }
    if (!isTerminal(op)) {
      op = await getOperation(api, id)
      renderer.update(op)
    }
  }
  renderer.clearBar()
  if (op.status === 'succeeded') {
    progress.write(
      `operation ${id} succeeded (${op.kind}, ${seconds(op.startedAt ?? op.createdAt, op.finishedAt)})\n`,
    )
    return op
  }
  if (op.status === 'cancelled')
    throw new CliError(ExitCode.failed, `Operation ${id} (${op.kind}) was cancelled.`)
  const error = op.error
  throw new CliError(
    ExitCode.failed,
    `Operation ${id} (${op.kind}) failed${error?.step ? ` at ${error.step}` : ''}: ${error?.title ?? 'failed'}${error?.detail ? `: ${error.detail}` : ''}${error?.reason ? ` [${error.reason}${error.code ? `, ${error.code}` : ''}]` : ''}`,
  )
}
