import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { CliError, ExitCode, usageError } from './errors.ts'

// ~/.config/kiln/config.json: named contexts (API URL, token, default project), like kubectl's.
// KILN_URL, KILN_TOKEN and KILN_PROJECT override the current context, so a CI job needs no file.

export interface Context {
  url: string
  token?: string
  /** When an OIDC access token stops working; API tokens carry their expiry themselves. */
  tokenExpiresAt?: string
  project?: string
}

export interface CliConfig {
  currentContext?: string
  contexts: Record<string, Context>
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.KILN_CONFIG) return env.KILN_CONFIG
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config')
  return join(base, 'kiln', 'config.json')
}

export async function readConfig(path = configPath()): Promise<CliConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return { contexts: {} }
    throw error
  }
  try {
    const parsed = JSON.parse(text) as Partial<CliConfig>
    return {
      contexts: parsed.contexts ?? {},
      ...(parsed.currentContext ? { currentContext: parsed.currentContext } : {}),
    }
  } catch {
    throw usageError(`${path} is not valid JSON; fix or remove it, then run kiln login again.`)
  }
}

/** Written atomically and readable by its owner only: it holds tokens. */
export async function writeConfig(config: CliConfig, path = configPath()): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 })
  await chmod(temporary, 0o600)
  await rename(temporary, path)
}

/** The connection to use: flags, then environment, then the chosen (or current) context. */
export async function resolveContext(
  flags: { context?: string; url?: string; token?: string; project?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<Context & { name?: string }> {
  const config = await readConfig(configPath(env))
  // An empty variable counts as unset: CI systems often export them empty.
  const name = flags.context ?? (env.KILN_CONTEXT || config.currentContext)
  const stored = name ? config.contexts[name] : undefined
  if (flags.context && !stored)
    throw usageError(`No context '${flags.context}' in ${configPath(env)}; see kiln login --help.`)
  const url = flags.url ?? (env.KILN_URL || stored?.url)
  if (!url)
    throw usageError(
      'No Kiln API URL: run kiln login --url URL --token TOKEN, or set KILN_URL (and KILN_TOKEN).',
    )
  const token = flags.token ?? (env.KILN_TOKEN || stored?.token)
  if (
    !flags.token &&
    !env.KILN_TOKEN &&
    stored?.tokenExpiresAt &&
    Date.parse(stored.tokenExpiresAt) < Date.now()
  )
    throw new CliError(
      ExitCode.auth,
      `The login of context '${name}' expired at ${stored.tokenExpiresAt}; run kiln login --oidc --url ${stored.url} again.`,
    )
  const project = flags.project ?? (env.KILN_PROJECT || stored?.project)
  return {
    url,
    ...(token ? { token } : {}),
    ...(project ? { project } : {}),
    ...(name ? { name } : {}),
  }
}
