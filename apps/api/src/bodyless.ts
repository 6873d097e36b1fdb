import type { FastifyRequest } from 'fastify'
import { HttpProblem } from './problems.ts'

/**
 * A preValidation hook for requests that take no body (DELETE). A body there is a mistake the
 * caller should hear about (`{"force": true}` forces nothing), so any body is 400, never ignored.
 */
export async function refuseBody(request: FastifyRequest) {
  if (request.body === undefined || request.body === null) return
  throw new HttpProblem(
    400,
    'invalid-request',
    'This request takes no body',
    `${request.method} takes no body; send none (nothing in a body changes what it does).`,
    [{ pointer: '/', in: 'body', message: 'must be absent' }],
  )
}
