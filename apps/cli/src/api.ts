import { createKilnClient, type KilnClient, type Problem } from '@kiln/client'
import type { Context } from './config.ts'
import { CliError, ExitCode, exitCodeOfStatus, usageError } from './errors.ts'

export interface Api {
  client: KilnClient
  context: Context
  /** The project commands act in; a usage error naming the ways to set it when there is none. */
  project(): string
}

export const userAgent = 'kiln-cli/0.1.0'

export function connect(context: Context): Api {
  const client = createKilnClient({
    baseUrl: context.url.replace(/\/$/, ''),
    headers: {
      'User-Agent': userAgent,
      ...(context.token ? { Authorization: `Bearer ${context.token}` } : {}),
    },
  })
  return {
    client,
    context,
    project() {
      if (!context.project)
        throw usageError('No project: pass --project P, set KILN_PROJECT, or kiln login --project P.')
      return context.project
    },
  }
}

/** A problem+json answer as one message: title, detail and every field error, by JSON pointer. */
export function describeProblem(problem: Partial<Problem> | undefined, status: number): string {
  if (!problem || typeof problem !== 'object') return `HTTP ${status}`
  const lines = [`${problem.title ?? `HTTP ${status}`}${problem.detail ? `: ${problem.detail}` : ''}`]
  for (const e of problem.errors ?? []) lines.push(`  ${e.pointer || '(body)'}: ${e.message}`)
  return lines.join('\n')
}

/**
 * Awaits an openapi-fetch call: its data, or a CliError whose exit code follows the status. A refused
 * connection is ExitCode.failed naming the URL.
 */
export async function call<T>(
  api: Api,
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  let result: { data?: T; error?: unknown; response: Response }
  try {
    result = await request
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code
    throw new CliError(
      ExitCode.failed,
      `Cannot reach the Kiln API at ${api.context.url}${cause ? ` (${cause})` : ''}: ${(error as Error).message}`,
    )
  }
  const { response } = result
  if (response.ok) return result.data as T
  const problem = result.error as Partial<Problem> | undefined
  const hint =
    response.status === 401 ? '\nLog in again: kiln login --url URL --token TOKEN (or set KILN_TOKEN).' : ''
  throw new CliError(exitCodeOfStatus(response.status), `${describeProblem(problem, response.status)}${hint}`)
}
