import { ProblemSchema, ref } from '../schemas.ts'

const descriptions: Record<number, string> = {
  400: 'Malformed or schema-invalid request.',
  404: 'Not found, or not visible to you.',
  409: 'Conflicts with the current state (names the running operation when the cluster is busy).',
  412: 'If-Match does not match the current ETag.',
  413: 'Body too large.',
  415: 'Body is not JSON.',
  422: 'Well-formed, but breaks a rule (each error points at the field).',
  503: 'PostgreSQL or Redis is unavailable; retry after Retry-After seconds.',
}

/** Problem responses for the OpenAPI document; the error handler produces them. */
export function problemResponses(...statuses: number[]) {
  const out: Record<number, unknown> = {}
  for (const status of [400, ...statuses, 503]) {
    out[status] = {
      description: descriptions[status] ?? 'Problem.',
      content: { 'application/problem+json': { schema: ref(ProblemSchema) } },
    }
  }
  return out
}
