import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { aSimulatedBackend } from '../../../apps/worker/test/support.ts'
import { aKubernetesVersion, aTemplate } from '../../../test/support/builders.ts'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import { commands } from '../src/commands.ts'
import { buildCli, type Result, run, runCli } from './support.ts'

// The built CLI (one bundled file, as `npm pack` ships it) as a child process against the real API,
// engine and simulated API servers; its kubeconfig is used with the real kubectl. At a terminal it
// runs under a pseudo-terminal (util-linux `script`), elsewhere with pipes.

let stack: TestStack
let dir: string
let bundle: string
let url: string
let token: string

/** Runs the CLI with pipes (not a TTY): CI's view. */
const kiln = (args: string[], env: Record<string, string> = {}): Promise<Result> =>
  runCli(bundle, args, { ...baseEnv(), ...env })

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Runs the CLI on a pseudo-terminal; stdout and stderr arrive together, as a person sees them. */
async function kilnAtTerminal(args: string[]): Promise<{ code: number; output: string }> {
  const command = ['node', bundle, ...args].map(quote).join(' ')
  try {
    const { stdout } = await run('script', ['-qefc', `stty cols 120; ${command}`, '/dev/null'], {
      env: { ...baseEnv(), TERM: 'xterm' },
      timeout: 120_000,
      maxBuffer: 16 << 20,
    })
    return { code: 0, output: stdout }
  } catch (error) {
    const e = error as { code?: number; stdout?: string }
    return { code: typeof e.code === 'number' ? e.code : -1, output: e.stdout ?? '' }
  }
}

const baseEnv = () => ({
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: join(dir, 'home'),
  KILN_URL: url,
  KILN_TOKEN: token,
  KILN_PROJECT: 'team-a',
})

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-cli-'))
  bundle = await buildCli(dir)
  stack = await startTestStack({ engine: {} })
  const { backend } = await aSimulatedBackend(stack.db, 'sim', testDataCentre(), {
    name: 'k8s-1.31',
    nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 10 }],
  })
  await aTemplate(stack.db, backend.id, {
    name: 'gpu-heavy',
    nodeGroups: [{ name: 'gpu', machineClass: 'gpu.a100x4', count: 8, minCount: 0, maxCount: 8 }],
  })
  await aKubernetesVersion(stack.db, '1.32.1')
  await aTemplate(stack.db, backend.id, { name: 'k8s-1.32', kubernetesVersion: '1.32.1' })
  url = await stack.app.listen({ port: 0, host: '127.0.0.1' })
  const created = await stack.app.inject({
    method: 'POST',
    url: '/v1/projects/team-a/tokens',
    payload: { name: 'ci', role: 'member', expiresAt: new Date(Date.now() + 3600_000).toISOString() },
  })
  expect(created.statusCode, created.body).toBe(201)
  token = (created.json() as { token: string }).token
})

afterAll(async () => {
  await stack?.close()
  await rm(dir, { recursive: true, force: true })
})

async function kubectlNodes(kubeconfig: string) {
  const { stdout } = await run('kubectl', [
    '--kubeconfig',
    kubeconfig,
    '--cache-dir',
    join(dir, 'kube-cache'),
    'get',
    'nodes',
    '-o',
    'name',
  ])
  return stdout.trim().split('\n')
}

// Each test runs the real command (a node process per call) against the real stack: well over
// vitest's default 30 s on a busy two-core machine.
describe('kiln CLI in a pipeline (no terminal)', { timeout: 120_000 }, () => {
  it('create --wait → kubeconfig → kubectl get nodes → delete --wait', async () => {
    const before = Date.now()
    const created = await kiln([
      'cluster',
      'create',
      'ci-1',
      '--template',
      'k8s-1.31',
      '--ttl',
      '2h',
      '--wait',
    ])
    expect(created.code, created.stderr).toBe(0)
    // Not a terminal: JSON on stdout, one plain line per step change on stderr.
    const cluster = JSON.parse(created.stdout) as {
      name: string
      status: { phase: string }
      expiresAt: string
    }
    expect(cluster).toMatchObject({ name: 'ci-1', status: { phase: 'Ready' } })
    const ttl = Date.parse(cluster.expiresAt) - before
    expect(ttl).toBeGreaterThan(2 * 3600_000 - 60_000)
    expect(ttl).toBeLessThanOrEqual(2 * 3600_000 + 60_000)
    expect(created.stderr).toMatch(/operation \S+: step allocate-machines succeeded in \d+\.\ds/)
    expect(created.stderr).toMatch(/operation \S+ succeeded \(cluster\.create/)
    expect(created.stderr).not.toContain('\r')

    const file = join(dir, 'ci-1.kubeconfig')
    const kc = await kiln(['kubeconfig', 'ci-1', '--ttl', '1h', '-o', file])
    expect(kc.code, kc.stderr).toBe(0)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect(await kubectlNodes(file)).toHaveLength(3)
    const upgrades = await kiln(['cluster', 'upgrades', 'ci-1'])
    expect(upgrades.code, upgrades.stderr).toBe(0)
    expect((JSON.parse(upgrades.stdout) as { name: string }[]).map((t) => t.name)).toEqual(['k8s-1.32'])

    const deleted = await kiln(['cluster', 'delete', 'ci-1', '--wait'])
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(JSON.parse(deleted.stdout)).toMatchObject({ kind: 'cluster.delete', status: 'succeeded' })
    const gone = await kiln(['cluster', 'get', 'ci-1'])
    expect(gone.code).toBe(3)
    expect(gone.stderr).toContain('ci-1')
  })

  it('exits with the documented codes', async () => {
    expect((await kiln(['cluster', 'create', 'x', '--no-such-flag'])).code).toBe(2)
    expect((await kiln(['cluster', 'frobnicate'])).code).toBe(2)
    const badFeature = await kiln(['cluster', 'create', 'x', '-t', 'k8s-1.31', '--feature', 'ingress=apache'])
    expect(badFeature.code).toBe(2)
    expect(badFeature.stderr).toContain('ingress.controller')
    // A body naming a template that does not exist is invalid input (422), not a missing resource.
    const unknownTemplate = await kiln(['cluster', 'create', 'x', '-t', 'no-such-template'])
    expect(unknownTemplate.code, unknownTemplate.stderr).toBe(2)
    expect(unknownTemplate.stderr).toContain("template 'no-such-template' was not found")
    expect((await kiln(['operation', 'get', '00000000-0000-4000-8000-000000000000'])).code).toBe(3)
    const refused = await kiln(['cluster', 'list'], { KILN_TOKEN: 'kiln_00000000_nope' })
    expect(refused.code).toBe(4)
    expect(refused.stderr).toContain('kiln login')

    const first = await kiln(['cluster', 'create', 'twice', '-t', 'k8s-1.31'])
    expect(first.code, first.stderr).toBe(0)
    const again = await kiln(['cluster', 'create', 'twice', '-t', 'k8s-1.31'])
    expect(again.code, again.stderr).toBe(5)

    // A failed operation: exit 1 with the problem's title and detail.
    const failed = await kiln(['cluster', 'create', 'too-big', '-t', 'gpu-heavy', '--wait'])
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(/failed at reserve-capacity: .*Not enough capacity.*gpu\.a100x4/)
    expect(failed.stderr).toContain('[platform, ERR_CAPACITY]')

    for (const name of ['twice', 'too-big'])
      expect((await kiln(['cluster', 'delete', name, '--wait'])).code).toBe(0)
  })

  it('a create retried with the same idempotency key after a killed first attempt makes one cluster', async () => {
    const args = ['cluster', 'create', 'idem', '-t', 'k8s-1.31', '--idempotency-key', 'job-42', '--wait']
    const child: ChildProcess = spawn('node', [bundle, ...args], { env: baseEnv() })
    let stderr = ''
    const accepted = new Promise<string>((resolve, reject) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
        const m = /cluster\.create operation (\S+)/.exec(stderr)
        if (m) resolve(m[1]!)
      })
      child.on('exit', () => reject(new Error(`exited before the create was accepted: ${stderr}`)))
    })
    const firstOperation = await accepted
    child.kill('SIGKILL')

    const retried = await kiln(args)
    expect(retried.code, retried.stderr).toBe(0)
    expect(retried.stderr).toContain(`operation ${firstOperation}`)
    const listed = await kiln(['cluster', 'list', '-o', 'json'])
    expect((JSON.parse(listed.stdout) as { name: string }[]).filter((c) => c.name === 'idem')).toHaveLength(1)
    expect(await stack.db.cluster.count({ where: { name: 'idem' } })).toBe(1)
    expect((await kiln(['cluster', 'delete', 'idem', '--wait'])).code).toBe(0)
  })

  it('logs in to a named context that later commands use without environment', async () => {
    const env = { KILN_URL: '', KILN_TOKEN: '', KILN_PROJECT: '' }
    const login = await kiln(
      ['login', '--url', url, '--token', token, '--project', 'team-a', '--context', 'lab'],
      env,
    )
    expect(login.code, login.stderr).toBe(0)
    const path = join(dir, 'home', '.config', 'kiln', 'config.json')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({
      currentContext: 'lab',
      contexts: { lab: { url, token, project: 'team-a' } },
    })
    const listed = await kiln(['templates', 'list', '-o', 'json'], env)
    expect(listed.code, listed.stderr).toBe(0)
    expect((JSON.parse(listed.stdout) as { name: string }[]).map((t) => t.name)).toContain('k8s-1.31')
    const contexts = await kiln(['context', 'list', '-o', 'table'], env)
    expect(contexts.stdout).toMatch(/\*\s+lab\s+http/)
    const wrong = await kiln(['login', '--url', url, '--token', 'kiln_00000000_wrong'], env)
    expect(wrong.code).toBe(4)
  })

  it('deletes a template as a platform admin; a member is refused, an unknown one is not found', async () => {
    const sim = await stack.db.backend.findUniqueOrThrow({ where: { name: 'sim' } })
    await aTemplate(stack.db, sim.id, { name: 'retired', version: 1 })
    await aTemplate(stack.db, sim.id, { name: 'retired', version: 2 })
    const refused = await kiln(['templates', 'delete', 'retired'])
    expect(refused.code, refused.stderr).toBe(4)
    expect(refused.stderr).toContain('platform admin')
    // No credentials: the stack's embedded mode takes the caller for the local operator, a platform admin.
    const admin = { KILN_TOKEN: '', HOME: join(dir, 'admin-home') }
    const deleted = await kiln(['templates', 'delete', 'retired'], admin)
    expect(deleted.code, deleted.stderr).toBe(0)
    expect(deleted.stderr).toContain('Deleted template retired')
    expect(await stack.db.clusterTemplate.count({ where: { name: 'retired' } })).toBe(0)
    expect((await kiln(['templates', 'delete', 'retired'], admin)).code).toBe(3)
  })

  it('create --dry-run prints the plan (planCluster) and creates nothing', async () => {
    const planned = await kiln([
      'cluster',
      'create',
      'plan-only',
      '-t',
      'k8s-1.31',
      '--feature',
      'monitoring=on',
      '--dry-run',
    ])
    expect(planned.code, planned.stderr).toBe(0)
    const plan = JSON.parse(planned.stdout) as {
      template: { name: string }
      spec: { features: { monitoring: { enabled: boolean } } }
      operation: { kind: string }
      quota: { accepted: boolean }
    }
    expect(plan.template.name).toBe('k8s-1.31')
    expect(plan.spec.features.monitoring.enabled).toBe(true)
    expect(plan.operation.kind).toBe('cluster.create')
    expect(plan.quota.accepted).toBe(true)
    expect(await stack.db.cluster.count({ where: { name: 'plan-only' } })).toBe(0)
  })

  it('lists features and machine classes, as JSON, YAML and tables', async () => {
    const features = await kiln(['features', 'list', '-o', 'json'])
    expect((JSON.parse(features.stdout) as { name: string }[]).map((f) => f.name)).toContain('gpu')
    const yaml = await kiln(['machine-classes', 'list', '-o', 'yaml'])
    expect(yaml.stdout).toContain('name: gpu.a100x4')
    const tableOut = await kiln(['machine-classes', 'list', '--gpu', '-o', 'table'])
    expect(tableOut.stdout.split('\n')[0]).toMatch(/^NAME\s+BACKEND\s+CPU\s+MEMORY\s+GPU\s+ZONES$/)
    expect(tableOut.stdout).toContain('4×nvidia-a100')
    expect(tableOut.stdout).not.toContain('m1.large')
  })

  it('answers --help for every command, with examples', async () => {
    for (const command of commands) {
      const help = await kiln([...command.path, '--help'])
      expect(help.code, command.path.join(' ')).toBe(0)
      expect(help.stdout).toContain(`Usage: kiln ${command.path.join(' ')}`)
      expect(help.stdout).toContain('Examples:')
      expect(help.stdout).toContain('Exit codes:')
    }
    const top = await kiln(['--help'])
    expect(top.code).toBe(0)
    for (const command of commands) expect(top.stdout).toContain(command.path.join(' '))
  })
})

describe('kiln CLI as a package', () => {
  it('packs into a tarball that installs offline and runs on its own', async () => {
    const packDir = join(dir, 'pack')
    await mkdir(packDir)
    // Packing builds the bundle (prepack) and removes it from the checkout afterwards (postpack).
    await run('npm', ['pack', '-w', '@kiln/cli', '--pack-destination', packDir, '--loglevel=error'])
    const prefix = join(dir, 'global')
    await run('npm', ['install', '-g', '--offline', '--prefix', prefix, join(packDir, 'kiln-cli-0.1.0.tgz')])
    const { stdout } = await run(join(prefix, 'bin', 'kiln'), ['templates', 'list', '-o', 'json'], {
      env: baseEnv(),
    })
    expect((JSON.parse(stdout) as { name: string }[]).map((t) => t.name)).toContain('k8s-1.31')
  })
})

describe('kiln CLI at a terminal', () => {
  it('shows a progress bar with the current step, then the cluster as a table', async () => {
    const created = await kilnAtTerminal(['cluster', 'create', 'tty-1', '-t', 'k8s-1.31', '--wait'])
    expect(created.code, created.output).toBe(0)
    // The bar redraws in place: carriage returns, block characters, the running step's name.
    expect(created.output).toContain('\r\x1b[2K[')
    expect(created.output).toMatch(/\[█*░*\]\s+\d+%\s+[a-z-]+/)
    expect(created.output).toMatch(/✓ allocate-machines\s+\d+\.\ds/)
    expect(created.output).toMatch(/Phase\s+Ready/)
    expect(created.output).toMatch(/NODE GROUP\s+MACHINE CLASS\s+COUNT/)

    const file = join(dir, 'tty-1.kubeconfig')
    expect((await kilnAtTerminal(['kubeconfig', 'tty-1', '-o', file])).code).toBe(0)
    expect(await kubectlNodes(file)).toHaveLength(3)

    const deleted = await kilnAtTerminal(['cluster', 'delete', 'tty-1', '--wait'])
    expect(deleted.code, deleted.output).toBe(0)
    expect(deleted.output).toMatch(/✓ release-machines/)
    const failed = await kilnAtTerminal(['cluster', 'create', 'tty-big', '-t', 'gpu-heavy', '--wait'])
    expect(failed.code).toBe(1)
    expect(failed.output).toMatch(/✗ reserve-capacity/)
    expect(failed.output).toContain('Error: Operation')
    await kiln(['cluster', 'delete', 'tty-big', '--wait'])
  })
})
