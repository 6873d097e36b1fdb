import { existsSync, readFileSync, rmSync } from 'node:fs'
import { isBuiltin } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build, type Plugin } from 'esbuild'

// Compiles every server process to JavaScript (ES modules, Node 20, source maps): the `@kiln/*`
// workspaces (whose exports are TypeScript source) and the Prisma client generated into
// packages/db are bundled in; every third-party package stays external, so the runtime image's
// `npm ci --omit=dev` supplies it. A build fails when a bundle imports a package its workspace
// does not declare in `dependencies`, or one that would resolve to another copy from dist/.
//
//   tsx scripts/build.ts            all apps
//   tsx scripts/build.ts api worker some of them

const root = fileURLToPath(new URL('..', import.meta.url))

/** Each app's entry points: apps/<app>/src/<name>.ts → apps/<app>/dist/<name>.js. */
export const entryPoints: Record<string, string[]> = {
  api: ['main', 'migrate', 'seed.main'],
  worker: ['main'],
  simulator: ['main', 'capi/main'],
  issuer: ['main', 'token.main'],
}

interface Manifest {
  name?: string
  dependencies?: Record<string, string>
}
const manifest = (dir: string): Manifest => JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'))

/** `@scope/name/sub` → `@scope/name`; `name/sub` → `name`. */
const packageOf = (specifier: string) =>
  specifier
    .split('/')
    .slice(0, specifier.startsWith('@') ? 2 : 1)
    .join('/')

/** The directory of the workspace (or the repository root) a source file belongs to. */
function ownerOf(file: string): string {
  let dir = path.dirname(file)
  while (dir.startsWith(root) && dir !== root) {
    if (existsSync(path.join(dir, 'package.json'))) return dir
    dir = path.dirname(dir)
  }
  return root
}

/** Where Node finds `name` from `dir`: the first node_modules/<name> walking up (symlinks resolved). */
function installedAt(name: string, dir: string): string | undefined {
  for (let at = dir; ; at = path.dirname(at)) {
    const candidate = path.join(at, 'node_modules', name)
    if (existsSync(path.join(candidate, 'package.json'))) return candidate
    if (at === path.dirname(at)) return undefined
  }
}

/** Who imports each external package (package → importing source files). */
type Importers = Map<string, Set<string>>

/** Keeps third-party packages (not the `@kiln/*` workspaces, not Node's own modules) external. */
function externalPackages(importers: Importers): Plugin {
  return {
    name: 'kiln-external-packages',
    setup(esbuild) {
      esbuild.onResolve({ filter: /^[^./]/ }, (args) => {
        if (isBuiltin(args.path) || args.path.startsWith('@kiln/')) return undefined
        const name = packageOf(args.path)
        importers.set(name, (importers.get(name) ?? new Set()).add(args.importer))
        return { path: args.path, external: true }
      })
    },
  }
}

/**
 * What `npm ci --omit=dev` would not give the bundle: a package the output still imports (after
 * tree shaking) that the importing workspace does not declare in `dependencies`, or that Node would
 * find as another copy from dist/ than from the source.
 */
function unsatisfied(app: string, imported: Set<string>, importers: Importers): string[] {
  const appDir = path.join(root, 'apps', app)
  const outdir = path.join(appDir, 'dist')
  const problems: string[] = []
  for (const name of imported) {
    for (const importer of importers.get(name) ?? []) {
      // Files outside any workspace (prisma/engine) are the app's to declare.
      const owner = ownerOf(importer) === root ? appDir : ownerOf(importer)
      const where = path.relative(root, importer)
      if (!manifest(owner).dependencies?.[name]) {
        problems.push(
          `${where} imports ${name}, not in the dependencies of ${path.relative(root, owner)}/package.json`,
        )
      }
      const fromSource = installedAt(name, path.dirname(importer))
      const fromDist = installedAt(name, outdir)
      if (fromSource !== fromDist) {
        problems.push(`${where} imports ${name}: ${fromSource} from the source, ${fromDist} from dist/`)
      }
    }
  }
  return [...new Set(problems)]
}

export async function buildApp(app: string): Promise<string[]> {
  const appDir = path.join(root, 'apps', app)
  const names = entryPoints[app]
  if (!names) throw new Error(`unknown app ${app}; one of ${Object.keys(entryPoints).join(', ')}`)
  const outdir = path.join(appDir, 'dist')
  rmSync(outdir, { recursive: true, force: true })
  const importers: Importers = new Map()
  const { metafile } = await build({
    absWorkingDir: root,
    entryPoints: Object.fromEntries(names.map((name) => [name, path.join(appDir, 'src', `${name}.ts`)])),
    outdir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // One module graph per process, shared by that app's entry points (a chunk, not two copies).
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    sourcemap: true,
    // Stack traces and logs name the real functions and classes.
    keepNames: true,
    logLevel: 'warning',
    metafile: true,
    plugins: [externalPackages(importers)],
  })
  const imported = new Set(
    Object.values(metafile.outputs).flatMap((output) =>
      output.imports.filter((i) => i.external && !isBuiltin(i.path)).map((i) => packageOf(i.path)),
    ),
  )
  const problems = unsatisfied(app, imported, importers)
  if (problems.length > 0) {
    throw new Error(`apps/${app}: runtime imports the image would not satisfy:\n  ${problems.join('\n  ')}`)
  }
  return names.map((name) => path.relative(root, path.join(outdir, `${name}.js`)))
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const apps = process.argv.slice(2)
  for (const app of apps.length > 0 ? apps : Object.keys(entryPoints)) {
    const started = Date.now()
    const files = await buildApp(app)
    console.log(`apps/${app}: ${files.join(', ')} (${Date.now() - started} ms)`)
  }
}
