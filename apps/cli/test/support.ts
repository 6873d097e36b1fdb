import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'

// Runs the built CLI (one bundled file, as `npm pack` ships it) as a child process. Not a test file.

export const run = promisify(execFile)

export interface Result {
  code: number
  stdout: string
  stderr: string
}

/** Bundles the CLI into `dir`/kiln.mjs with the package's own build script; returns the path. */
export async function buildCli(dir: string): Promise<string> {
  const bundle = join(dir, 'kiln.mjs')
  await run('npx', ['tsx', 'apps/cli/scripts/build.ts', bundle])
  return bundle
}

/** Runs the CLI with pipes (not a TTY): CI's view. Never throws for a non-zero exit. */
export async function runCli(bundle: string, args: string[], env: Record<string, string>): Promise<Result> {
  try {
    const { stdout, stderr } = await run('node', [bundle, ...args], {
      env,
      timeout: 120_000,
      maxBuffer: 16 << 20,
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}
