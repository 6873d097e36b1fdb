import type { Operation, StoredResponse, Tx } from '@kiln/db'
import { isTerminal } from '@kiln/domain'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { respondOnce } from './idempotency.ts'
import type { RouteDeps } from './route-deps.ts'
import { operationView } from './views.ts'

export const operationLocation = (id: string) => `/v1/operations/${id}`

/** The answer to anything asynchronous: 202, the Operation, and where to watch it. */
function accepted(operation: Operation, project: string): StoredResponse {
  return {
    statusCode: 202,
    body: operationView(operation, project),
    headers: { location: operationLocation(operation.id) },
  }
}

/**
 * A POST that starts an operation: its writes run once per Idempotency-Key (a replay answers the
 * same 202), then the committed operation is handed to the workers.
 */
export async function acceptOnce(
  { db, dispatch }: RouteDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  work: (tx: Tx) => Promise<{ operation: Operation; project: string }>,
) {
  let started: string | undefined
  const sent = await respondOnce(db, request, reply, async (tx) => {
    const { operation, project } = await work(tx)
    started = operation.id
    return accepted(operation, project)
  })
  if (started) dispatch(started)
  return sent
}

/** Answers 202 for an operation already committed (DELETE, PATCH) and hands it to the workers if unfinished. */
export function sendAccepted(
  { dispatch }: RouteDeps,
  reply: FastifyReply,
  operation: Operation,
  project: string,
) {
  // An operation applied in the request (already succeeded) has nothing left for a worker.
  if (!isTerminal(operation.status)) dispatch(operation.id)
  const { statusCode, body, headers } = accepted(operation, project)
  return reply.code(statusCode).headers(headers).send(body)
}
