#!/usr/bin/env node
// The published package runs its bundle (dist/, built by `npm run build -w @kiln/cli` and on pack);
// inside the repository, without a build, the TypeScript sources run through tsx.
import { existsSync } from 'node:fs'

const bundle = new URL('../dist/kiln.mjs', import.meta.url)
if (existsSync(bundle)) {
  await import(bundle.href)
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import(new URL('../src/main.ts', import.meta.url).href)
}
