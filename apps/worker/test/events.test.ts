import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  createCluster,
  isTerminal,
  type OperationBody,
  waitForOperation,
} from './support.ts'

// GET /v1/operations/{id}/events over a real socket: server-sent events while the engine works.

// Every driver call takes 150–250 ms, so a create lasts about a second and moves through visible states.
const config = testDataCentre({ latency: { default: { minMs: 150, maxMs: 250 } } })
let stack: TestStack
let base: string

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  await aSimulatedBackend(stack.db, 'sim', config, { name: 'k8s-1.31' })
  await stack.app.listen({ port: 0, host: '127.0.0.1' })
  const address = stack.app.server.address()
  if (!address || typeof address === 'string') throw new Error('no port')
  base = `http://127.0.0.1:${address.port}`
})

afterAll(async () => {
  await stack?.close()
})

interface SseEvent {
  event: string
  id: string | undefined
  data: string
}

/** Reads a whole event stream (until the server ends it, or the deadline), parsed into events. */
async function readEvents(url: string, timeoutMs = 20_000) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  const events: SseEvent[] = []
  const comments: string[] = []
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    buffer += value
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const event: SseEvent = { event: 'message', id: undefined, data: '' }
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comments.push(line)
        else if (line.startsWith('event: ')) event.event = line.slice(7)
        else if (line.startsWith('id: ')) event.id = line.slice(4)
        else if (line.startsWith('data: ')) event.data += line.slice(6)
      }
      if (event.data) events.push(event)
    }
  }
  return { res, events, comments, rest: buffer }
}

describe('GET /v1/operations/{id}/events', () => {
  it('streams the create operation as it progresses and ends after it succeeds', async () => {
    const accepted = await createCluster(stack.app, { name: 'web', template: 'k8s-1.31' })
    const { res, events, rest } = await readEvents(`${base}/v1/operations/${accepted.id}/events`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('text/event-stream')
    expect(res.headers.get('cache-control')).toBe('no-cache')
    expect(rest).toBe('')

    expect(events.length).toBeGreaterThanOrEqual(3)
    for (const e of events) expect(e.event).toBe('operation')
    const ops = events.map((e) => JSON.parse(e.data) as OperationBody)
    for (const op of ops) expect(op.id).toBe(accepted.id)

    // Progress only goes up, in several visible steps, and ends at 100.
    const progress = ops.map((op) => op.progress)
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThanOrEqual(progress[i - 1]!)
    expect(new Set(progress).size).toBeGreaterThanOrEqual(3)
    expect(progress.at(-1)).toBe(100)

    // Every event differs from the one before, and ids (updatedAt) do not go back.
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.data).not.toBe(events[i - 1]!.data)
      expect(Number(events[i]!.id)).toBeGreaterThanOrEqual(Number(events[i - 1]!.id))
    }

    // Only the last event is terminal, and the stream ends right after it.
    expect(ops.at(-1)!.status).toBe('succeeded')
    for (const op of ops.slice(0, -1)) expect(isTerminal(op.status), op.status).toBe(false)
    expect(ops.some((op) => op.status === 'running')).toBe(true)

    const final = await waitForOperation(stack.app, accepted.id, 1000)
    expect(ops.at(-1)).toEqual(final)
  })

  it('sends one event and ends at once for an operation that already finished', async () => {
    const [op] = await stack.db.operation.findMany({ where: { status: 'succeeded' }, take: 1 })
    const started = Date.now()
    // A stream that did not end would run into readEvents' timeout; how fast a busy machine ends it is
    // not the point, so the bound is far from both.
    const { res, events } = await readEvents(`${base}/v1/operations/${op!.id}/events`, 20_000)
    expect(res.status).toBe(200)
    expect(events).toHaveLength(1)
    expect(JSON.parse(events[0]!.data)).toMatchObject({ id: op!.id, status: 'succeeded', progress: 100 })
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('answers 404 (a problem, not a stream) for an unknown operation', async () => {
    const res = await fetch(`${base}/v1/operations/00000000-0000-4000-8000-000000000000/events`)
    expect(res.status).toBe(404)
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/)
  })
})
