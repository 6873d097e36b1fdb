/** The closed set of reasons reconciling add-ons fails; callers branch on `code` or `retryable`. */
export const AddonErrorCode = {
  /** No answer: connection refused or reset, DNS, timeout. Retryable. */
  unreachable: 'unreachable',
  /** TLS cannot be set up: the server's certificate does not verify (CA, name, validity), or our own key or certificate is unusable. Not retryable. */
  tls: 'tls',
  /** 401 or 403: the credentials are not accepted. Not retryable. */
  unauthorized: 'unauthorized',
  /** 409, or 403 while a namespace is terminating: another writer, or a deletion in progress. Retryable. */
  conflict: 'conflict',
  /** 429. Retryable. */
  throttled: 'throttled',
  /** 5xx. Retryable. */
  serverError: 'server-error',
  /** Any other 4xx: the server refused the object (validation, unknown kind). Not retryable. */
  rejected: 'rejected',
  /** The desired objects or the kubeconfig are unusable before anything is sent. Not retryable. */
  invalidRequest: 'invalid-request',
} as const
export type AddonErrorCode = (typeof AddonErrorCode)[keyof typeof AddonErrorCode]

const retryableCodes: ReadonlySet<AddonErrorCode> = new Set([
  AddonErrorCode.unreachable,
  AddonErrorCode.conflict,
  AddonErrorCode.throttled,
  AddonErrorCode.serverError,
])

export type AddonVerb = 'apply' | 'list' | 'delete' | 'plan'

export class AddonError extends Error {
  readonly code: AddonErrorCode
  readonly retryable: boolean
  readonly verb: AddonVerb
  /** What was being worked on: `Deployment/kube-system/coredns`, `ClusterRole/traefik`, or a kind when listing. */
  readonly object: string
  /** The HTTP status, when the API server answered. */
  readonly status: number | undefined

  constructor(
    code: AddonErrorCode,
    verb: AddonVerb,
    object: string,
    detail: string,
    options: { status?: number; cause?: unknown } = {},
  ) {
    super(`${verb} ${object}: ${detail}`, { cause: options.cause })
    this.name = 'AddonError'
    this.code = code
    this.retryable = retryableCodes.has(code)
    this.verb = verb
    this.object = object
    this.status = options.status
  }
}
