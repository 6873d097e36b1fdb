/** Stable exit codes, documented in `kiln --help` and the README; CI scripts branch on them. */
export const ExitCode = {
  ok: 0,
  /** An operation failed (or was cancelled), or the server could not be reached or erred. */
  failed: 1,
  /** The command line or the request was wrong (unknown flag, invalid value, 400/422). */
  usage: 2,
  notFound: 3,
  /** Not logged in, or not allowed (401/403). */
  auth: 4,
  /** Conflicts with the current state (409/412): another operation runs, the name is taken. */
  conflict: 5,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/** A failure the CLI reports on stderr and exits with; never a stack trace. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message)
    this.name = 'CliError'
  }
}

export const usageError = (message: string) => new CliError(ExitCode.usage, message)

export function exitCodeOfStatus(status: number): ExitCode {
  if (status === 404) return ExitCode.notFound
  if (status === 401 || status === 403) return ExitCode.auth
  if (status === 409 || status === 412) return ExitCode.conflict
  if (status === 400 || status === 413 || status === 415 || status === 422) return ExitCode.usage
  return ExitCode.failed
}
