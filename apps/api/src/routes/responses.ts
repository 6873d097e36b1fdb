import { ProblemSchema, ref } from '../schemas.ts'

const descriptions: Record<number, string> = {
  400: 'Malformed or schema-invalid request.',
  404: 'Not found, or not visible to you.',
  409: 'Conflicts with the current state (names the running operation when the cluster is busy).',
  412: 'If-Match does not match the current ETag.',
  413: 'Body too large.',
  415: 'Body is not JSON.',
  422: 'Well-formed, but breaks a rule (each error points at the field).',
  429: 'Too many requests from your credentials or your address; retry after Retry-After seconds.',
  503: 'PostgreSQL or Redis is unavailable; retry after Retry-After seconds.',
}

const seconds = (description: string) => ({ type: 'integer', minimum: 0, description })

/** The headers of a 429 (see rate-limits.ts). */
const rateLimitedHeaders = {
  'retry-after': seconds('Seconds until the window resets.'),
  'ratelimit-limit': seconds('Requests allowed per window.'),
  'ratelimit-remaining': seconds('Requests left in this window: 0.'),
  'ratelimit-reset': seconds('Seconds until the window resets.'),
}

/** Problem responses for the OpenAPI document; the error handler produces them. */
export function problemResponses(...statuses: number[]) {
  const out: Record<number, unknown> = {}
  for (const status of [400, ...statuses, 429, 503]) {
    out[status] = {
      description: descriptions[status] ?? 'Problem.',
      ...(status === 429 ? { headers: rateLimitedHeaders } : {}),
      content: { 'application/problem+json': { schema: ref(ProblemSchema) } },
    }
  }
  return out
}
