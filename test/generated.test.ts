import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { describe, expect, inject, it } from 'vitest'
import {
  clientTypesPath,
  openApiPath,
  renderClientTypes,
  renderOpenApi,
} from '../scripts/generated-artifacts.ts'
import { databaseUrl } from './support/database.ts'

// Generated files are committed and never hand-edited: these fail when they drift from their source.
// Rendering the document builds the whole API; on a busy two-core machine that alone has taken over 30 s.
describe('generated files', { timeout: 120_000 }, () => {
  it('openapi/kiln.v1.yaml is what the route schemas generate (run `npm run gen`)', async () => {
    expect(await renderOpenApi()).toBe(await readFile(openApiPath, 'utf8'))
  })

  it('packages/client types are what openapi-typescript generates from the document', async () => {
    const yaml = await readFile(openApiPath, 'utf8')
    expect(await renderClientTypes(yaml)).toBe(await readFile(clientTypesPath, 'utf8'))
  })

  it('the committed migrations produce exactly prisma/schema.prisma (run `npm run db:migrate:create`)', async () => {
    const { stdout } = await promisify(execFile)(
      'npx',
      [
        'prisma',
        'migrate',
        'diff',
        '--from-migrations',
        'prisma/migrations',
        '--to-schema',
        'prisma/schema.prisma',
        '--exit-code',
      ],
      {
        env: {
          ...process.env,
          DATABASE_URL: databaseUrl(inject('templateDatabase')),
          PRISMA_SCHEMA_ENGINE_BINARY: 'prisma/engine/schema-engine.mjs',
        },
      },
    )
    expect(stdout).toContain('No difference detected')
  })
})
