import type { ErrorCode } from '@kiln/domain'

/**
 * Problem `type` URIs are identifiers that clients compare as strings and that operations store in
 * their `error`, so they stay absolute and the same on every installation (RFC 9457 recommends
 * absolute URIs); every Kiln server also serves each type's page at `/problems/{slug}`.
 */
export const problemBase = 'https://kiln.dev/problems/'

export interface ProblemType {
  title: string
  /** The status it is sent with (an operation's `error` carries it too). */
  status: number
  /** One paragraph for people: when it happens and what to do. */
  description: string
}

/** Every problem type Kiln sends, in one place: the error handler, the document and the /problems pages. */
export const problemTypes = {
  'invalid-request': {
    title: 'The request does not match the schema',
    status: 400,
    description:
      'A path parameter, query parameter, header or body member is missing, unknown or of the wrong type or format. `errors` lists each one as a JSON pointer into the part of the request named by `in`. Fix the request; retrying it unchanged gets the same answer.',
  },
  'malformed-json': {
    title: 'The body is not valid JSON',
    status: 400,
    description: 'The body could not be parsed as JSON, or was empty where a JSON body is required.',
  },
  'bad-request': {
    title: 'Bad request',
    status: 400,
    description:
      'The HTTP layer refused the request before Kiln read it (for example malformed percent-encoding in the URL). The status says which HTTP rule was broken.',
  },
  'malformed-url': {
    title: 'The URL is malformed',
    status: 400,
    description:
      'The path has a malformed percent-encoding (such as `%zz`) or encodes bytes that are not UTF-8. Encode the path again.',
  },
  'malformed-request': {
    title: 'The request is not valid HTTP',
    status: 400,
    description:
      "Node's HTTP parser refused the request before Kiln saw it, for example for a control character in a header. `instance` is empty: no request was read.",
  },
  'headers-too-large': {
    title: 'The request headers are too large',
    status: 431,
    description:
      'The request line and headers together exceed 64 KiB. Send fewer or shorter headers (a bearer token well under that limit is always judged, and refused with 401 when it is bad).',
  },
  'request-timeout': {
    title: 'The request took too long',
    status: 408,
    description: 'The request did not arrive completely in time. Send it again.',
  },
  unauthenticated: {
    title: 'Authentication required',
    status: 401,
    description:
      'No credentials were sent where they are needed, or the bearer token (an API token or an OIDC token) or the portal session was refused. `WWW-Authenticate` carries the challenge; `reason` says why a presented credential was refused.',
  },
  'login-failed': {
    title: 'Login failed',
    status: 401,
    description: 'The identity provider did not complete the portal login. Start the login again.',
  },
  'login-expired': {
    title: 'No login in progress',
    status: 400,
    description: 'The portal login took too long or was already used. Start the login again.',
  },
  forbidden: {
    title: 'Forbidden',
    status: 403,
    description:
      'You are authenticated and may see the project, but your role there (or platform role) does not allow this. The detail names the role needed.',
  },
  'cluster-deleting': {
    title: 'The cluster is being deleted',
    status: 409,
    description:
      'The cluster has a delete operation running: it takes no change and issues no new credential. Reads still work; `operationId` names the delete.',
  },
  'cluster-gone': {
    title: 'The cluster no longer exists',
    status: 409,
    description:
      'The operation acted on a cluster that has since been deleted, so it cannot be retried. Create the cluster again instead.',
  },
  'csrf-rejected': {
    title: 'Cross-site request refused',
    status: 403,
    description:
      'A change sent with the portal session cookie came from another site. Send changes from the portal itself, or use a bearer token.',
  },
  'not-found': {
    title: 'Not found',
    status: 404,
    description:
      'Nothing by that name or id exists, or it is in a project you cannot see: Kiln does not tell the two apart, so that other projects’ resources never leak.',
  },
  conflict: {
    title: 'Conflict',
    status: 409,
    description:
      'The name is taken, or the resource is in a state that does not allow the change (for example a cluster that is being deleted).',
  },
  'operation-in-progress': {
    title: 'Another operation is in progress',
    status: 409,
    description:
      'The cluster is busy with another mutating operation, named by `operationId`. Wait for it (`GET /v1/operations/{id}?wait=60s`), or cancel it, then send the change again.',
  },
  superseded: {
    title: 'Superseded by a delete',
    status: 409,
    description:
      'The error of a pending operation that never ran because its cluster was deleted first. Nothing needs doing.',
  },
  'precondition-failed': {
    title: 'Precondition failed',
    status: 412,
    description:
      'The `If-Match` header does not match the resource’s current `ETag`: someone changed it since you read it. GET it again (`currentETag` names the current one), reapply your change, and retry.',
  },
  'payload-too-large': {
    title: 'The body is too large',
    status: 413,
    description: 'The body exceeds the server’s limit (256 KiB by default).',
  },
  'unsupported-media-type': {
    title: 'Send application/json',
    status: 415,
    description: 'The body is not `application/json` (or its `Content-Type` says otherwise).',
  },
  'invalid-spec': {
    title: 'The request breaks a rule',
    status: 422,
    description:
      'The request is well-formed but asks for something Kiln’s rules forbid: a feature the template or backend cannot host, a node group too large, a cursor from another list. `errors` points at each member at fault.',
  },
  'quota-exceeded': {
    title: 'Quota exceeded',
    status: 422,
    description:
      'The change would take the project beyond its quota. `exceeded` lists each resource with its limit, what is in use and what the request needs. Free resources or ask a platform admin to raise the quota.',
  },
  'idempotency-key-reused': {
    title: 'Idempotency-Key reused with another request',
    status: 422,
    description:
      'The `Idempotency-Key` was already used in the last 24 hours with a different request. Use a new key for a new request.',
  },
  internal: {
    title: 'Internal error',
    status: 500,
    description:
      'An unexpected error: a bug in Kiln. Report the `requestId`; nothing in the request is at fault.',
  },
  'rate-limited': {
    title: 'Too many requests',
    status: 429,
    description:
      'Your credentials (per API token or user) or your address made more requests than this server allows in its window. Wait `Retry-After` seconds; `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` say where you stand.',
  },
  'service-unavailable': {
    title: 'A backing service is unavailable',
    status: 503,
    description:
      'PostgreSQL, Redis or the identity provider cannot be reached right now; nothing was changed. Retry after `Retry-After` seconds.',
  },
  'credentials-unavailable': {
    title: 'Credential issuance is not configured',
    status: 503,
    description: 'The server has no master key to open cluster CA keys, so it cannot sign credentials.',
  },
  'master-key-missing': {
    title: 'A sealed key needs a master key that is not configured',
    status: 409,
    description:
      'A master-key rotation found cluster private keys sealed with a master key that is not in `KILN_MASTER_KEYS`, so it cannot re-seal them; `unopenable` names some of them and the key id they need. Nothing was re-sealed (unless `resealed` says otherwise). Add the missing key after the newest one in `KILN_MASTER_KEYS` on the API, restart it and rotate again.',
  },
  'oidc-not-configured': {
    title: 'Login is not configured',
    status: 404,
    description: 'The server has no OIDC issuer configured, so there is no portal login.',
  },
  // An operation that fails stores a problem in its `error`, typed by the step's failure code
  // (`ERR_CAPACITY` → `err-capacity`); `reason` there says whose move it is.
  'err-capacity': {
    title: 'The backend has no room',
    status: 503,
    description:
      'The backend has too few free machines of a class in a zone for what the change needs, counting what other clusters have reserved there; nothing is held. The platform team adds capacity, or you ask for less (fewer machines, another class or zone); then retry the operation.',
  },
  'err-unavailable': {
    title: 'The backend did not answer',
    status: 503,
    description:
      'The backend (Ironic, the simulated data centre) could not be reached for longer than the retry horizon (`KILN_RETRY_HORIZON_SECONDS`); the step retried all along, and what runs was left alone. Retry the operation once the backend answers.',
  },
  'err-transient': {
    title: 'A transient failure did not clear',
    status: 503,
    description:
      'A step kept failing for a passing reason (a conflict, a lost answer, a machine still coming up) for longer than the retry horizon. The step message names the last failure; retry the operation, or ask the platform team if it persists.',
  },
  'err-provision-failed': {
    title: 'Machines would not come up',
    status: 503,
    description:
      'The backend failed to provision machines (for example a deploy failed) and replacements failed too, for longer than the retry horizon. Failed hardware is kept out of the pool; the platform team checks it. Retry the operation.',
  },
  'err-invalid-request': {
    title: 'The backend refused the request',
    status: 422,
    description:
      'The backend refused what Kiln asked for as it is (credentials it does not accept, a spec it cannot build, a cluster or node group that no longer exists). Retrying unchanged gets the same answer: change the spec or the backend configuration.',
  },
  'err-not-supported': {
    title: 'The backend cannot do this',
    status: 422,
    description:
      'The backend does not support what the change asks for. Choose a template on a backend that does.',
  },
  'err-internal': {
    title: 'An unexpected failure did not clear',
    status: 503,
    description:
      'A step failed for an unexpected reason for longer than the retry horizon. Report the operation id to the platform team; retry the operation once they have looked.',
  },
  'err-addon-unreachable': {
    title: 'The cluster’s API server did not answer',
    status: 503,
    description:
      'Installing add-ons needs the cluster’s Kubernetes API server, which could not be reached (refused, reset, timed out) for longer than the retry horizon. Retry the operation once the control plane answers.',
  },
  'err-addon-tls': {
    title: 'TLS to the cluster failed',
    status: 503,
    description:
      'The cluster’s API server certificate did not verify against the cluster CA (or Kiln’s own client key is unusable). The platform team checks the endpoint and the cluster’s certificate authorities.',
  },
  'err-addon-unauthorized': {
    title: 'The cluster refused Kiln’s credentials',
    status: 503,
    description:
      'The cluster’s API server answered 401 or 403 to Kiln’s administrative credentials. The platform team checks the cluster’s certificate authorities (for example after a CA rotation).',
  },
  'err-addon-conflict': {
    title: 'Another writer held an add-on object',
    status: 503,
    description:
      'An add-on object was being changed by another writer (or its namespace was terminating) for longer than the retry horizon. Retry the operation.',
  },
  'err-addon-throttled': {
    title: 'The cluster throttled Kiln',
    status: 503,
    description:
      'The cluster’s API server kept answering 429 for longer than the retry horizon. Retry the operation later.',
  },
  'err-addon-server-error': {
    title: 'The cluster’s API server failed',
    status: 503,
    description:
      'The cluster’s API server kept answering 5xx for longer than the retry horizon. Retry the operation once it is healthy.',
  },
  'err-addon-rejected': {
    title: 'The cluster refused an add-on object',
    status: 503,
    description:
      'The cluster’s API server refused one of Kiln’s add-on manifests (validation, an unknown kind). The step message names the object; the platform team fixes the add-on or the cluster.',
  },
  'err-addon-invalid-request': {
    title: 'The add-on objects are unusable',
    status: 503,
    description:
      'The desired add-on objects or the cluster’s kubeconfig could not be used before anything was sent. The platform team checks the template’s features and the cluster’s credentials.',
  },
} as const satisfies Record<string, ProblemType>

export type ProblemSlug = keyof typeof problemTypes

/** Every domain error code is a problem type (this fails to compile when one is not). */
export const domainProblemTypes: Record<ErrorCode, ProblemType> = problemTypes

export const problemTypeUri = (slug: ProblemSlug) => `${problemBase}${slug}`
