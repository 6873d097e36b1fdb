import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { openApiPath } from '../scripts/generated-artifacts.ts'

// Redocly (redocly.yaml) and Spectral (`spectral:oas`, .spectral.yaml) on the committed document: no
// error and no warning, except those a ruleset turns down with its reason. Both run without a network:
// where this runs as root with unshare(1) they run in a network namespace of their own, so a lint that
// tried to fetch anything would fail here rather than pass by luck.

const run = promisify(execFile)
const offline = process.getuid?.() === 0 && ['/usr/bin/unshare', '/bin/unshare'].some((p) => existsSync(p))

async function lint(command: string[]): Promise<string> {
  const [file, ...args] = offline ? ['unshare', '-n', 'npx', ...command] : ['npx', ...command]
  const { stdout } = await run(file!, args, {
    env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    maxBuffer: 64 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string }) => {
    // Both exit non-zero when they find errors; the JSON on stdout says which.
    if (error.stdout) return { stdout: error.stdout }
    throw new Error(`${command.join(' ')} failed: ${error.stderr ?? String(error)}`)
  })
  return stdout
}

describe(`lint of ${openApiPath}`, () => {
  it('Spectral (spectral:oas) reports nothing', { timeout: 300_000 }, async () => {
    const out = await lint([
      'spectral',
      'lint',
      openApiPath,
      '--ruleset',
      '.spectral.yaml',
      '-f',
      'json',
      '-q',
    ])
    const results = (out.trim() === '' ? [] : JSON.parse(out)) as {
      code: string
      message: string
      path: string[]
    }[]
    expect(results.map((r) => `${r.code} at ${r.path.join('.')}: ${r.message}`)).toEqual([])
  })

  it('Redocly (recommended) reports nothing', { timeout: 300_000 }, async () => {
    const out = await lint(['redocly', 'lint', openApiPath, '--format=json'])
    const { problems } = JSON.parse(out) as {
      problems: { ruleId: string; severity: string; message: string; location: { pointer: string }[] }[]
    }
    expect(
      problems.map((p) => `${p.severity} ${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`),
    ).toEqual([])
  })
})
