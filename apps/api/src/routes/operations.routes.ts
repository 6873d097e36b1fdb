import {
  cancelOperation,
  findCluster,
  findProject,
  getOperation,
  listOperations,
  retryOperation,
} from '@kiln/db'
import { isTerminal, OperationStatus } from '@kiln/domain'
import Type from 'typebox'
import { acceptOnce } from '../accepted.ts'
import { actorOf } from '../auth.ts'
import { respondOnce } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { ListQuery, OperationListSchema, OperationSchema, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { operationView } from '../views.ts'
import { ProjectParams } from './projects.routes.ts'

const OperationParams = Type.Object({
  operation: Type.String({ format: 'uuid', description: 'Operation id (from `Location` or an answer).' }),
})

/** `30s`, `500ms`, `1m` or plain seconds; at most 60 s so proxies do not cut the request. */
const WaitPattern = '^[0-9]{1,5}(ms|s|m)?$'
const maxWaitMs = 60_000

export function parseWait(value: string | undefined): number {
  if (!value) return 0
  const m = /^(\d+)(ms|s|m)?$/.exec(value)!
  const n = Number(m[1])
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000
  return Math.min(ms, maxWaitMs)
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function registerOperationRoutes(app: KilnApp, deps: RouteDeps) {
  const { db, operationPollMs } = deps
  const projectNames = new Map<string, string>()
  async function projectName(id: string) {
    let name = projectNames.get(id)
    if (!name) {
      name = (await db.project.findUniqueOrThrow({ where: { id } })).name
      projectNames.set(id, name)
    }
    return name
  }

  app.get(
    '/v1/operations/:operation',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'getOperation',
        summary: 'Get an operation; optionally wait for it to finish',
        description:
          'With `?wait=30s` the request is held until the operation finishes or the time is up (at most 60 s), then answers with its current state: a CI job can loop on it without polling logic.',
        tags: ['operations'],
        params: OperationParams,
        querystring: Type.Object(
          {
            wait: Type.Optional(
              Type.String({
                pattern: WaitPattern,
                description: 'How long to wait, e.g. 30s.',
                examples: ['30s'],
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(OperationSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const deadline = Date.now() + parseWait(request.query.wait)
      let op = await getOperation(db, request.params.operation)
      while (!isTerminal(op.status) && Date.now() < deadline && !request.raw.destroyed) {
        await sleep(Math.min(operationPollMs, deadline - Date.now()))
        op = await getOperation(db, request.params.operation)
      }
      return operationView(op, await projectName(op.projectId))
    },
  )

  app.post(
    '/v1/operations/:operation/cancel',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'cancelOperation',
        summary: 'Cancel an operation',
        description:
          'A pending operation is cancelled at once. A running one stops at its next step boundary and leaves a consistent state.',
        tags: ['operations'],
        params: OperationParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        response: { 200: ref(OperationSchema), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      let running: string | undefined
      const sent = await respondOnce(db, request, reply, async (tx) => {
        const op = await cancelOperation(tx, actorOf(request), request.params.operation)
        if (op.status === 'running') running = op.id
        return { statusCode: 200, body: operationView(op, await projectName(op.projectId)), headers: {} }
      })
      // Committed: a job delayed until the next attempt is run now, and finds the cancel.
      if (running) deps.dispatch(running)
      return sent
    },
  )

  app.get(
    '/v1/projects/:project/operations',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listOperations',
        summary: 'List a project’s operations',
        description:
          'A project’s operations, oldest first, paged by cursor; filter by status or cluster to find what is running.',
        tags: ['operations'],
        params: ProjectParams,
        querystring: Type.Object(
          {
            ...ListQuery,
            cluster: Type.Optional(Type.String({ maxLength: 63, description: 'Cluster name or id.' })),
            status: Type.Optional({
              ...OperationStatus,
              description: 'Only operations with this status.',
            }),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(OperationListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const q = request.query
      const clusterId = q.cluster ? (await findCluster(db, project.id, q.cluster)).id : undefined
      const limit = q.limit ?? 50
      const page = await listOperations(db, {
        projectId: project.id,
        clusterId,
        status: q.status,
        limit,
        cursor: q.cursor,
      })
      return { items: page.items.map((op) => operationView(op, project.name)), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/v1/operations/:operation/retry',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'retryOperation',
        summary: 'Retry a failed or cancelled operation',
        description: 'Resumes from the step that did not finish; steps that succeeded are not run again.',
        tags: ['operations'],
        params: OperationParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      return acceptOnce(deps, request, reply, async (tx) => {
        const operation = await retryOperation(tx, actorOf(request), request.params.operation)
        return { operation, project: await projectName(operation.projectId) }
      })
    },
  )

  app.get(
    '/v1/operations/:operation/events',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'streamOperationEvents',
        summary: 'Follow an operation as server-sent events',
        description:
          'A `text/event-stream`: an `operation` event with the whole Operation whenever it changes (steps, progress, status), ending after it finishes. Comments keep the connection alive.',
        tags: ['operations'],
        params: OperationParams,
        response: {
          200: {
            description: 'An event stream; each `data:` line is an Operation as JSON.',
            content: { 'text/event-stream': { schema: Type.String() } },
          },
          ...problemResponses(404),
        },
      },
    },
    async (request, reply) => {
      let op = await getOperation(db, request.params.operation)
      const name = await projectName(op.projectId)
      reply.hijack()
      const out = reply.raw
      out.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-request-id': request.id,
      })
      let closed = false
      request.raw.on('close', () => {
        closed = true
      })
      let last = ''
      let lastWrite = Date.now()
      while (!closed) {
        const body = JSON.stringify(operationView(op, name))
        if (body !== last) {
          out.write(`event: operation\nid: ${op.updatedAt.getTime()}\ndata: ${body}\n\n`)
          last = body
          lastWrite = Date.now()
        } else if (Date.now() - lastWrite > 15_000) {
          out.write(': keep-alive\n\n')
          lastWrite = Date.now()
        }
        if (isTerminal(op.status)) break
        await sleep(operationPollMs)
        try {
          op = await getOperation(db, request.params.operation)
        } catch {
          break
        }
      }
      out.end()
    },
  )
}
