/** The closed set of error codes domain code may throw; apps/api maps each to one HTTP status. */
export const ErrorCode = {
  /** The request is well-formed but asks for something the rules forbid (422). */
  invalidSpec: 'invalid-spec',
  notFound: 'not-found',
  /** Another mutating operation runs on the same cluster (409). */
  operationInProgress: 'operation-in-progress',
  /** A unique name is taken, or the resource is in a state that forbids the change (409). */
  conflict: 'conflict',
  /** The cluster is being deleted: it takes no change and issues no credential (409). */
  clusterDeleting: 'cluster-deleting',
  /** The cluster an operation acted on has been deleted (409). */
  clusterGone: 'cluster-gone',
  preconditionFailed: 'precondition-failed',
  idempotencyKeyReused: 'idempotency-key-reused',
  quotaExceeded: 'quota-exceeded',
  forbidden: 'forbidden',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

/** One rule violation: a JSON pointer into the request and what is wrong there. */
export interface Violation {
  pointer: string
  message: string
}

export class DomainError extends Error {
  readonly code: ErrorCode
  readonly violations: Violation[]
  /** Extra members for the problem document (e.g. the running operation's id). */
  readonly extensions: Record<string, unknown>

  constructor(
    code: ErrorCode,
    message: string,
    options: { violations?: Violation[]; extensions?: Record<string, unknown> } = {},
  ) {
    super(message)
    this.name = 'DomainError'
    this.code = code
    this.violations = options.violations ?? []
    this.extensions = options.extensions ?? {}
  }
}

export const notFound = (kind: string, ref: string) =>
  new DomainError(ErrorCode.notFound, `${kind} '${ref}' was not found.`)

export const invalidSpec = (violations: Violation[]) =>
  new DomainError(
    ErrorCode.invalidSpec,
    violations.length === 1 ? violations[0]!.message : `${violations.length} rules are violated.`,
    { violations },
  )

/** How many users of a resource a conflict names; `usedBy.count` says how many there are in all. */
export const namedUsersLimit = 5

/**
 * A 409 for a resource something still uses: how many users there are and the first few by name (the
 * problem's `usedBy` extension), so a script can report them and a person can act on them.
 */
export function stillInUse(
  subject: string,
  users: { kind: string; count: number; names: string[] },
  advice: string,
): DomainError {
  const shown = users.names.slice(0, namedUsersLimit)
  const more = users.count > shown.length ? ` and ${users.count - shown.length} more` : ''
  return new DomainError(
    ErrorCode.conflict,
    `${subject} is used by ${users.count} ${users.kind}(s): ${shown.join(', ')}${more}. ${advice}`,
    { extensions: { usedBy: { kind: users.kind, count: users.count, names: shown } } },
  )
}
