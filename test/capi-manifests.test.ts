import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseAllDocuments, stringify } from 'yaml'
import { type SimulatedCluster, startSimulatedCluster } from '../apps/simulator/test/support.ts'

// What a platform team installs on its Cluster API management cluster for Kiln (docs/capi.md):
// the ClusterClass with its templates, and the namespaced account Kiln uses. Both are held to the
// official CRDs (vendored unchanged) by the simulated API server with the real kubectl, and to the
// shared design: every reference resolves, every machine template describes a machine class, and
// the account gets what the driver needs and nothing more.

const file = (path: string) => fileURLToPath(new URL(`../${path}`, import.meta.url))
const clusterClassFile = file('deploy/capi/openstack/clusterclass.yaml')
const rbacFile = file('deploy/capi/rbac.yaml')
const crdDirs = [
  'vendor/cluster-api-crds/cluster-api-v1.14.0/core/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-v1.14.0/bootstrap/kubeadm/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-v1.14.0/controlplane/kubeadm/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-provider-openstack-v0.14.7/config/crd/bases',
].map(file)

interface Ref {
  apiVersion: string
  kind: string
  name: string
}
interface Manifest {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> }
  // biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML, checked field by field
  spec?: any
  rules?: { apiGroups: string[]; resources: string[]; verbs: string[] }[]
}

const documents = (path: string): Manifest[] =>
  parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as Manifest)

const named = (manifests: Manifest[], kind: string, name?: string) => {
  const found = manifests.find((m) => m.kind === kind && (name === undefined || m.metadata.name === name))
  if (!found) throw new Error(`no ${kind} ${name ?? ''}`)
  return found
}

describe('the manifests, against the shared design', () => {
  const manifests = documents(clusterClassFile)
  const clusterClass = named(manifests, 'ClusterClass', 'kiln-openstack')

  it('put everything in Kiln’s namespace and resolve every template the class names', () => {
    for (const m of [...manifests, ...documents(rbacFile).filter((m) => m.kind !== 'Namespace')])
      expect(m.metadata.namespace, `${m.kind}/${m.metadata.name}`).toBe('kiln-clusters')
    const refs: Ref[] = [
      clusterClass.spec.infrastructure.templateRef,
      clusterClass.spec.controlPlane.templateRef,
      clusterClass.spec.controlPlane.machineInfrastructure.templateRef,
      ...clusterClass.spec.workers.machineDeployments.flatMap(
        (md: { bootstrap: { templateRef: Ref }; infrastructure: { templateRef: Ref } }) => [
          md.bootstrap.templateRef,
          md.infrastructure.templateRef,
        ],
      ),
    ]
    for (const ref of refs) {
      const target = named(manifests, ref.kind, ref.name)
      expect(target.apiVersion, `${ref.kind}/${ref.name}`).toBe(ref.apiVersion)
    }
    // Every template in the file is used: nothing stale for a platform team to wonder about.
    const used = new Set(refs.map((r) => `${r.kind}/${r.name}`))
    for (const m of manifests.filter((m) => m.kind !== 'ClusterClass'))
      expect(used.has(`${m.kind}/${m.metadata.name}`), `${m.kind}/${m.metadata.name}`).toBe(true)
  })

  it('describe Kiln’s zones and a machine class on every infrastructure machine template', () => {
    expect(clusterClass.metadata.annotations?.['kiln.dev/failure-domains']).toBe('az-1,az-2')
    const classes = Object.fromEntries(
      manifests
        .filter((m) => m.kind === 'OpenStackMachineTemplate')
        .map((m) => {
          const a = m.metadata.annotations ?? {}
          for (const key of ['kiln.dev/cpu', 'kiln.dev/memory-mib', 'kiln.dev/max-per-failure-domain'])
            expect(a[key], `${m.metadata.name} ${key}`).toMatch(/^[1-9][0-9]*$/)
          return [
            m.metadata.name,
            {
              machineClass: a['kiln.dev/machine-class'],
              flavor: m.spec.template.spec.flavor,
              gpus: a['kiln.dev/gpu-count'] ? `${a['kiln.dev/gpu-count']}× ${a['kiln.dev/gpu-model']}` : null,
            },
          ]
        }),
    )
    expect(classes).toEqual({
      'kiln-openstack-control-plane-m1-medium': {
        machineClass: 'm1.medium',
        flavor: 'm1.medium',
        gpus: null,
      },
      'kiln-openstack-worker-m1-medium': { machineClass: 'm1.medium', flavor: 'm1.medium', gpus: null },
      'kiln-openstack-worker-m1-large': { machineClass: 'm1.large', flavor: 'm1.large', gpus: null },
      'kiln-openstack-worker-g1-xlarge': {
        machineClass: 'g1.xlarge',
        flavor: 'g1.xlarge',
        gpus: '1× nvidia-a100',
      },
    })
    // Kiln writes its own MachineHealthChecks; one in the class too would remediate twice.
    expect(JSON.stringify(clusterClass.spec)).not.toContain('healthCheck')
  })

  it('offer the variables a CAPO cluster needs, each applied by a patch to existing worker classes', () => {
    const variables = Object.fromEntries(
      clusterClass.spec.variables.map((v: { name: string; required: boolean }) => [v.name, v.required]),
    )
    expect(variables).toMatchObject({
      identityRef: false,
      imageName: true,
      externalNetworkId: false,
      dnsNameservers: false,
    })
    const workerClasses = clusterClass.spec.workers.machineDeployments.map(
      (md: { class: string }) => md.class,
    )
    const patched = new Set<string>()
    for (const patch of clusterClass.spec.patches)
      for (const definition of patch.definitions) {
        for (const name of definition.selector.matchResources.machineDeploymentClass?.names ?? [])
          expect(workerClasses).toContain(name)
        for (const { valueFrom } of definition.jsonPatches) {
          if (valueFrom.variable) patched.add(valueFrom.variable)
          for (const [, variable] of String(valueFrom.template).matchAll(/\{\{[^}]*?\.(\w+)/g))
            patched.add(variable as string)
        }
      }
    for (const name of Object.keys(variables)) expect(patched, name).toContain(name)
  })

  it('are what docs/capi.md tells a platform team: its variable table and the files it links', () => {
    const guide = readFileSync(file('docs/capi.md'), 'utf8')
    const documented = Object.fromEntries(
      [...guide.matchAll(/^\| `(\w+)` \| (yes|no) \|/gm)].map(([, name, required]) => [
        name,
        required === 'yes',
      ]),
    )
    expect(documented).toEqual(
      Object.fromEntries(
        clusterClass.spec.variables.map((v: { name: string; required: boolean }) => [v.name, v.required]),
      ),
    )
    for (const [, link] of guide.matchAll(/\]\((\.\.\/[^)]+)\)/g))
      expect(() => readFileSync(file(`docs/${link}`)), link).not.toThrow()
  })

  it('grant Kiln’s account the design’s rules and nothing else', () => {
    const role = named(documents(rbacFile), 'Role', 'kiln')
    const grants = (role.rules ?? []).flatMap((r) =>
      r.apiGroups.flatMap((g) => r.resources.map((res) => [`${g || 'core'}/${res}`, [...r.verbs].sort()])),
    )
    // Exactly the requests packages/drivers/src/capi/capi.ts makes, and no more.
    expect(Object.fromEntries(grants)).toEqual({
      'cluster.x-k8s.io/clusters': ['create', 'delete', 'get', 'list', 'patch'],
      'cluster.x-k8s.io/machines': ['list', 'patch'],
      'cluster.x-k8s.io/machinehealthchecks': ['create', 'delete', 'list', 'patch'],
      'cluster.x-k8s.io/clusterclasses': ['get'],
      'infrastructure.cluster.x-k8s.io/openstackmachinetemplates': ['get'],
      'core/secrets': ['create', 'delete', 'list', 'patch'],
    })
    expect(grants).toHaveLength(6)
    const binding = named(documents(rbacFile), 'RoleBinding', 'kiln')
    expect(binding).toMatchObject({
      roleRef: { kind: 'Role', name: 'kiln' },
      subjects: [{ kind: 'ServiceAccount', name: 'kiln', namespace: 'kiln-clusters' }],
    })
  })
})

describe('the manifests, on a management cluster with the official CRDs', () => {
  let c: SimulatedCluster

  beforeAll(async () => {
    c = await startSimulatedCluster()
    const installed = await c.kubectl(['apply', '--server-side', ...crdDirs.flatMap((d) => ['-f', d])])
    expect(installed.stderr).toBe('')
    for (const crd of [
      'clusterclasses.cluster.x-k8s.io',
      'kubeadmcontrolplanetemplates.controlplane.cluster.x-k8s.io',
      'kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io',
      'openstackclustertemplates.infrastructure.cluster.x-k8s.io',
      'openstackmachinetemplates.infrastructure.cluster.x-k8s.io',
    ])
      expect((await c.waitEstablished(crd)).stdout).toMatch(/condition met/)
  }, 120_000)

  afterAll(async () => {
    await c?.close()
  })

  const apply = (args: string[], input?: string) => c.kubectl(['apply', '--server-side', ...args], input)

  it('are accepted as they are, by a server-side dry run and then for real', async () => {
    // Dry runs admit namespaced objects only into a namespace that exists, as kube-apiserver does.
    expect((await c.kubectl(['create', 'namespace', 'kiln-clusters'])).stderr).toBe('')

    const dry = await apply(['--dry-run=server', '-f', rbacFile, '-f', clusterClassFile])
    expect(dry.stderr).toBe('')
    expect(dry.stdout.trim().split('\n')).toEqual([
      'namespace/kiln-clusters serverside-applied (server dry run)',
      'serviceaccount/kiln serverside-applied (server dry run)',
      'role.rbac.authorization.k8s.io/kiln serverside-applied (server dry run)',
      'rolebinding.rbac.authorization.k8s.io/kiln serverside-applied (server dry run)',
      'clusterclass.cluster.x-k8s.io/kiln-openstack serverside-applied (server dry run)',
      'openstackclustertemplate.infrastructure.cluster.x-k8s.io/kiln-openstack-cluster serverside-applied (server dry run)',
      'kubeadmcontrolplanetemplate.controlplane.cluster.x-k8s.io/kiln-openstack-control-plane serverside-applied (server dry run)',
      'kubeadmconfigtemplate.bootstrap.cluster.x-k8s.io/kiln-openstack-worker serverside-applied (server dry run)',
      'openstackmachinetemplate.infrastructure.cluster.x-k8s.io/kiln-openstack-control-plane-m1-medium serverside-applied (server dry run)',
      'openstackmachinetemplate.infrastructure.cluster.x-k8s.io/kiln-openstack-worker-m1-medium serverside-applied (server dry run)',
      'openstackmachinetemplate.infrastructure.cluster.x-k8s.io/kiln-openstack-worker-m1-large serverside-applied (server dry run)',
      'openstackmachinetemplate.infrastructure.cluster.x-k8s.io/kiln-openstack-worker-g1-xlarge serverside-applied (server dry run)',
    ])
    expect((await c.kubectl(['get', 'clusterclasses', '-n', 'kiln-clusters', '-o', 'name'])).stdout).toBe('')

    const real = await apply(['-f', rbacFile, '-f', clusterClassFile])
    expect(real.stderr).toBe('')
    expect(real.stdout.match(/serverside-applied/g)).toHaveLength(12)

    // Stored as written: nothing pruned as unknown to the schema (only defaults added).
    for (const wrote of documents(clusterClassFile)) {
      const stored = JSON.parse(
        (
          await c.kubectl([
            'get',
            `${wrote.kind.toLowerCase()}.${wrote.apiVersion.replace(/\/.*/, '')}`,
            wrote.metadata.name,
            '-n',
            'kiln-clusters',
            '-o',
            'json',
          ])
        ).stdout,
      )
      expect(stored.spec, `${wrote.kind}/${wrote.metadata.name}`).toMatchObject(wrote.spec)
      expect(stored.metadata.annotations ?? {}).toMatchObject(wrote.metadata.annotations ?? {})
    }
    const identity = JSON.parse(
      (
        await c.kubectl([
          'get',
          'openstackclustertemplate',
          'kiln-openstack-cluster',
          '-n',
          'kiln-clusters',
          '-o',
          'jsonpath={.spec.template.spec.identityRef}',
        ])
      ).stdout,
    )
    expect(identity).toEqual({ type: 'Secret', name: 'kiln-cloud-config', cloudName: 'openstack' })
  })

  it('refuse a broken copy with the CRD’s own error', async () => {
    const broken = (edit: (manifests: Manifest[]) => void) => {
      const manifests = documents(clusterClassFile)
      edit(manifests)
      return manifests.map((m) => stringify(m)).join('---\n')
    }
    const refused = async (yaml: string) => {
      const result = await apply(['--dry-run=server', '-f', '-'], yaml)
      expect(result.code).not.toBe(0)
      return result.stderr
    }

    // A worker class without its name.
    const noClass = await refused(
      broken((m) => {
        delete named(m, 'ClusterClass').spec.workers.machineDeployments[1].class
      }),
    )
    expect(noClass).toContain('The ClusterClass "kiln-openstack" is invalid')
    expect(noClass).toContain('spec.workers.machineDeployments[1].class: Required value')

    // A JSON patch operation ClusterClass patches do not support.
    const move = await refused(
      broken((m) => {
        named(m, 'ClusterClass').spec.patches[0].definitions[0].jsonPatches[0].op = 'move'
      }),
    )
    expect(move).toContain(
      'spec.patches[0].definitions[0].jsonPatches[0].op: Unsupported value: "move": supported values: "add", "replace", "remove"',
    )

    // A machine template without the image CAPO requires, and an identity of an unknown type.
    const noImage = await refused(
      broken((m) => {
        delete named(m, 'OpenStackMachineTemplate', 'kiln-openstack-worker-m1-large').spec.template.spec.image
        named(m, 'OpenStackClusterTemplate').spec.template.spec.identityRef.type = 'Password'
      }),
    )
    expect(noImage).toContain('spec.template.spec.image: Required value')
    expect(noImage).toContain(
      'spec.template.spec.identityRef.type: Unsupported value: "Password": supported values: "Secret", "ClusterIdentity"',
    )

    // Nothing the broken copies said was kept.
    const stored = JSON.parse(
      (await c.kubectl(['get', 'clusterclass', 'kiln-openstack', '-n', 'kiln-clusters', '-o', 'json']))
        .stdout,
    )
    expect(stored.spec.workers.machineDeployments[1].class).toBe('m1-large')
    expect(stored.spec.patches[0].definitions[0].jsonPatches[0].op).toBe('replace')
  })
})
