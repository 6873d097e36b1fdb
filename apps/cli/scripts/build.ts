import { build } from 'esbuild'

// One self-contained ES module for Node 20: the generated client and yaml bundled in, so the
// package installs on its own (npm pack, npm install -g) without the workspace.
const outfile = process.argv[2] ?? new URL('../dist/kiln.mjs', import.meta.url).pathname
await build({
  entryPoints: [new URL('../src/main.ts', import.meta.url).pathname],
  outfile,
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // Bundled CommonJS dependencies call require(); an ES module has none unless it makes one.
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as kilnCreateRequire } from 'node:module';\nconst require = kilnCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
})
console.log(outfile)
