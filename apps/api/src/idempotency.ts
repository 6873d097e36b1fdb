import { type Database, runIdempotent, runTransaction, type StoredResponse, type Tx } from '@kiln/db'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { HttpProblem } from './problems.ts'

const dayMs = 24 * 60 * 60 * 1000
const keyPattern = /^[\x21-\x7e]{1,255}$/

/**
 * Runs a POST's writes in one transaction. With an `Idempotency-Key`, the first response is stored in
 * that same transaction and replayed for 24 h to the same caller sending the same request.
 */
export async function respondOnce(
  db: Database,
  request: FastifyRequest,
  reply: FastifyReply,
  handler: (tx: Tx) => Promise<StoredResponse>,
) {
  const key = request.headers['idempotency-key']
  let response: StoredResponse
  if (key === undefined) {
    response = await runTransaction(db, handler, { timeout: 20_000, maxWait: 10_000 })
  } else {
    if (typeof key !== 'string' || !keyPattern.test(key)) {
      throw new HttpProblem(
        400,
        'invalid-request',
        'Invalid Idempotency-Key',
        'Idempotency-Key must be 1–255 visible ASCII characters.',
        [{ pointer: '/Idempotency-Key', in: 'header', message: 'must be 1–255 visible ASCII characters' }],
      )
    }
    const result = await runIdempotent(
      db,
      {
        principal: request.principal.subject,
        key,
        fingerprint: { method: request.method, url: request.url, body: request.body ?? null },
        ttlMs: dayMs,
      },
      handler,
    )
    if (result.replayed) reply.header('idempotent-replayed', 'true')
    response = result
  }
  for (const [k, v] of Object.entries(response.headers)) reply.header(k, v)
  return reply.code(response.statusCode).send(response.body)
}

// RFC 9110 section 8.8.3: an entity tag, weak or strong; If-Match takes `*` or a list of them.
const entityTag = /^(?:W\/)?"([\x21\x23-\x7e\x80-\xff]*)"$/

/**
 * Parses `If-Match: "<revision>"`; `*` (or no header) means any revision. A header that is not an
 * entity-tag list is 400 naming it; a well-formed tag we never issued matches nothing (412).
 */
export function expectedRevision(request: FastifyRequest): number | undefined {
  const value = request.headers['if-match']
  if (value === undefined || value.trim() === '*') return undefined
  const tags = value.split(',').map((tag) => entityTag.exec(tag.trim())?.[1])
  if (tags.some((tag) => tag === undefined)) {
    throw new HttpProblem(
      400,
      'invalid-request',
      'Invalid If-Match',
      `If-Match must be * or an ETag from a GET (such as "3"), not ${JSON.stringify(value)}.`,
      [{ pointer: '/If-Match', in: 'header', message: 'must be * or a quoted entity tag such as "3"' }],
    )
  }
  // Only the first tag of a list is compared: Kiln answers one ETag per resource.
  const revision = tags[0]!
  return /^\d{1,15}$/.test(revision) ? Number(revision) : -1
}

/**
 * Refuses an Idempotency-Key where the answer carries a secret (a credential, a token): replaying it
 * would mean storing the secret, so each call must issue a new one instead.
 */
export function refuseReplay(request: FastifyRequest, what: 'credential' | 'token') {
  if (request.headers['idempotency-key'] === undefined) return
  throw new HttpProblem(
    400,
    'invalid-request',
    what === 'credential' ? 'Credentials are not replayed' : 'Tokens are not replayed',
    what === 'credential'
      ? 'A credential is never stored, so it cannot be returned twice; send the request without an Idempotency-Key (each call issues a new short-lived credential).'
      : 'A token’s secret is never stored, so the answer cannot be returned twice; send the request without an Idempotency-Key.',
    [
      {
        pointer: '/Idempotency-Key',
        in: 'header',
        message:
          what === 'credential' ? 'not accepted on credential issuance' : 'not accepted on token creation',
      },
    ],
  )
}
