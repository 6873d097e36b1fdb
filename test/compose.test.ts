import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadApiConfig } from '../apps/api/src/config.ts'
import { loadSimulatorConfig } from '../apps/simulator/src/config.ts'
import { loadWorkerConfig } from '../apps/worker/src/config.ts'

// No Docker engine runs here, so docker-compose.yml is checked for what would break it: its app
// services must satisfy the real config loaders and start files that exist.
interface Service {
  command?: string[]
  environment?: Record<string, string>
  build?: string
  image?: string
}
// Compose interpolates ${VAR:?message} from the caller's environment; give it what a user must set.
const userEnv: Record<string, string> = { KILN_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') }
const interpolated = readFileSync('docker-compose.yml', 'utf8').replace(
  /\$\{([A-Z_]+):\?[^}]*\}/g,
  (_, name: string) => userEnv[name] ?? '',
)
const compose = parse(interpolated, { merge: true }) as {
  services: Record<string, Service>
}

describe('docker-compose.yml', () => {
  it('has postgres, redis, api and worker', () => {
    expect(Object.keys(compose.services)).toEqual(
      expect.arrayContaining(['postgres', 'redis', 'api', 'worker']),
    )
  })

  it('gives the api and the worker every setting their config requires', () => {
    const api = compose.services['api']!
    const worker = compose.services['worker']!
    expect(() => loadApiConfig(api.environment)).not.toThrow()
    expect(loadApiConfig(api.environment).host).toBe('0.0.0.0')
    expect(() => loadWorkerConfig(worker.environment)).not.toThrow()
    expect(loadWorkerConfig(worker.environment).masterKey).toBeTruthy()
    expect(loadSimulatorConfig(compose.services['simulator']!.environment).host).toBe('0.0.0.0')
  })

  it('starts entry points that exist', () => {
    for (const name of ['api', 'worker', 'simulator']) {
      const file = compose.services[name]!.command!.find((part) => part.endsWith('.ts'))!
      expect(existsSync(file), file).toBe(true)
    }
    expect(existsSync('Dockerfile')).toBe(true)
  })

  it('builds an image whose npm ci sees every workspace', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8')
    const workspaces = ['apps', 'packages'].flatMap((root) =>
      readdirSync(root)
        .filter((name) => existsSync(`${root}/${name}/package.json`))
        .map((name) => `${root}/${name}`),
    )
    for (const workspace of workspaces)
      expect(dockerfile, workspace).toContain(`COPY ${workspace}/package.json ${workspace}/`)
    expect(dockerfile.indexOf('RUN npm ci')).toBeGreaterThan(dockerfile.lastIndexOf('/package.json'))
  })
})
