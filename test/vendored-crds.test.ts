import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { parseAllDocuments } from 'yaml'

// The official Cluster API CRDs are vendored unchanged (vendor/cluster-api-crds/README.md names
// source, release, commit and licence): every file must match the checksum recorded when it was
// copied, and nothing may be added without being recorded.

const root = fileURLToPath(new URL('../vendor/cluster-api-crds', import.meta.url))

const yamlFiles = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(join(dir, e.name)) : e.name.endsWith('.yaml') ? [join(dir, e.name)] : [],
  )

const recorded = new Map(
  readFileSync(join(root, 'SHA256SUMS'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [sum, path] = line.split(/\s+/)
      return [path!.replace(/^\.\//, ''), sum!] as const
    }),
)

describe('vendored Cluster API CRDs', () => {
  const files = yamlFiles(root).map((f) => relative(root, f))

  it('are exactly the files recorded, each unchanged since it was copied', () => {
    expect(files.sort()).toEqual([...recorded.keys()].sort())
    for (const file of files) {
      const sum = createHash('sha256')
        .update(readFileSync(join(root, file)))
        .digest('hex')
      expect(sum, file).toBe(recorded.get(file))
    }
  })

  it('hold the kinds the capi backend needs, each a v1 CustomResourceDefinition with its licence beside it', () => {
    const kinds = new Set<string>()
    for (const file of files) {
      for (const doc of parseAllDocuments(readFileSync(join(root, file), 'utf8'))) {
        const crd = doc.toJS() as { apiVersion: string; kind: string; spec: { names: { kind: string } } }
        expect(crd.apiVersion, file).toBe('apiextensions.k8s.io/v1')
        expect(crd.kind, file).toBe('CustomResourceDefinition')
        kinds.add(crd.spec.names.kind)
      }
    }
    for (const kind of [
      'Cluster',
      'ClusterClass',
      'Machine',
      'MachineDeployment',
      'MachineSet',
      'MachineHealthCheck',
      'KubeadmConfig',
      'KubeadmConfigTemplate',
      'KubeadmControlPlane',
      'KubeadmControlPlaneTemplate',
      'OpenStackCluster',
      'OpenStackClusterTemplate',
      'OpenStackMachine',
      'OpenStackMachineTemplate',
    ])
      expect(kinds, kind).toContain(kind)
    for (const dir of ['cluster-api-v1.14.0', 'cluster-api-provider-openstack-v0.14.7'])
      expect(readFileSync(join(root, dir, 'LICENSE'), 'utf8')).toContain('Apache License')
  })
})

// The same guarantee for the other vendored schemas: Kubernetes' own OpenAPI documents (built-in
// kinds, see vendor/kubernetes-openapi/README.md) and the prometheus-operator CRDs.
describe.each([
  ['kubernetes-openapi', '.json'],
  ['prometheus-operator-crds', '.yaml'],
])('vendored %s', (dir, ext) => {
  const base = fileURLToPath(new URL(`../vendor/${dir}`, import.meta.url))
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith(ext) ? [join(d, e.name)] : [],
    )
  it('are exactly the files recorded, each unchanged since it was copied, with a licence', () => {
    const sums = new Map(
      readFileSync(join(base, 'SHA256SUMS'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => {
          const [sum, path] = line.split(/\s+/)
          return [path!.replace(/^\.\//, ''), sum!] as const
        }),
    )
    const files = walk(base).map((f) => relative(base, f))
    expect(files.sort()).toEqual([...sums.keys()].sort())
    for (const file of files)
      expect(
        createHash('sha256')
          .update(readFileSync(join(base, file)))
          .digest('hex'),
        file,
      ).toBe(sums.get(file))
    const licences = readdirSync(base, { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('LICENSE'),
    )
    expect(licences.length).toBeGreaterThan(0)
    for (const l of licences) expect(readFileSync(join(base, l), 'utf8')).toContain('Apache License')
  })
})
