import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadApiConfig } from '../apps/api/src/config.ts'
import { loadSimulatorConfig } from '../apps/simulator/src/config.ts'
import { loadWorkerConfig } from '../apps/worker/src/config.ts'
import { entryPoints } from '../scripts/build.ts'

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

  it('runs the built JavaScript that `npm run build` produces, never TypeScript through tsx', () => {
    const built = Object.entries(entryPoints).flatMap(([app, names]) =>
      names.map((name) => `apps/${app}/dist/${name}.js`),
    )
    for (const [name, service] of Object.entries(compose.services)) {
      const command = (service.command ?? []).join(' ')
      expect(command, name).not.toMatch(/\btsx\b|\.ts\b/)
      if (service.build === undefined) continue
      const files = command.match(/apps\/\S+?\.js\b/g) ?? []
      expect(files.length, `${name} runs no apps/*/dist/*.js`).toBeGreaterThan(0)
      for (const file of files) expect(built, `${name}: ${file}`).toContain(file)
    }
    expect(compose.services['api']!.command).toEqual([
      'node',
      '--enable-source-maps',
      'apps/api/dist/main.js',
    ])
    expect(compose.services['migrate']!.command!.join(' ')).toContain('node apps/api/dist/migrate.js')
  })

  it('builds an image whose every npm ci (build and runtime stages) sees every workspace', () => {
    const stages = readFileSync('Dockerfile', 'utf8')
      .split(/^FROM /m)
      .slice(1)
    expect(stages.length).toBe(2)
    const workspaces = ['apps', 'packages'].flatMap((root) =>
      readdirSync(root)
        .filter((name) => existsSync(`${root}/${name}/package.json`))
        .map((name) => `${root}/${name}`),
    )
    for (const stage of stages) {
      const npmCi = stage.indexOf('RUN npm ci')
      expect(npmCi).toBeGreaterThan(0)
      for (const workspace of workspaces) {
        const copy = new RegExp(`COPY (--from=build /app/)?${workspace}/package\\.json ${workspace}/\n`)
        const at = stage.search(copy)
        expect(at, `${workspace} in stage FROM ${stage.split('\n')[0]}`).toBeGreaterThan(0)
        expect(at).toBeLessThan(npmCi)
      }
    }
    expect(stages[1]).toContain('RUN npm ci --omit=dev')
  })
})
