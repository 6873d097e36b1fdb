import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { describe, expect, inject, it } from 'vitest'
import { redisUrl } from '../../../test/support/api.ts'
import { databaseUrl } from '../../../test/support/database.ts'
import { testMasterKeyBase64 } from '../../../test/support/engine.ts'

function startWorker(env: Record<string, string | undefined>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'apps/worker/src/main.ts'], {
    env: { ...process.env, DATABASE_URL: undefined, REDIS_URL: undefined, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  return { child, output: () => output }
}

describe('worker process', () => {
  it('connects, reports ready and stops cleanly on SIGTERM', async () => {
    const { child, output } = startWorker({
      DATABASE_URL: databaseUrl(inject('templateDatabase')),
      REDIS_URL: redisUrl,
      KILN_MASTER_KEY: testMasterKeyBase64,
    })
    const deadline = Date.now() + 20_000
    while (!output().includes('worker ready') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100))
    expect(output()).toContain('worker ready')
    child.kill('SIGTERM')
    const [code] = await once(child, 'exit')
    expect(code).toBe(0)
    expect(output()).toContain('worker stopped')
  })

  it('refuses to start without a master key outside dev mode, and says so', async () => {
    const { child, output } = startWorker({
      DATABASE_URL: databaseUrl(inject('templateDatabase')),
      REDIS_URL: redisUrl,
    })
    const [code] = await once(child, 'exit')
    expect(code).not.toBe(0)
    expect(output()).toMatch(/KILN_MASTER_KEYS: required outside dev mode/)
  })

  it('refuses to start without its configuration and names what is missing', async () => {
    const { child, output } = startWorker({ REDIS_URL: redisUrl })
    const [code] = await once(child, 'exit')
    expect(code).not.toBe(0)
    expect(output()).toMatch(/DATABASE_URL/)
  })
})
