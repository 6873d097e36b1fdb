import { describe, expect, it } from 'vitest'
import {
  type ClusterOverrides,
  DomainError,
  featureCatalogue,
  featureNames,
  type MachineClassInfo,
  type ProvenanceSource,
  type ResolutionContext,
  type ResolvedCluster,
  resolveCluster,
  type TemplateInfo,
  type VersionLifecycle,
  type Violation,
} from '../src/index.ts'

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

const machineClass = (mc: Partial<MachineClassInfo> & Pick<MachineClassInfo, 'name'>): MachineClassInfo => ({
  backend: 'sim',
  cpu: 4,
  memoryMiB: 16384,
  gpuModel: null,
  gpuCount: 0,
  zones: ['zone-a', 'zone-b'],
  ...mc,
})

const defaultMachineClasses: MachineClassInfo[] = [
  machineClass({ name: 'm1.large' }),
  machineClass({
    name: 'gpu.a100x4',
    cpu: 32,
    memoryMiB: 262144,
    gpuModel: 'nvidia-a100',
    gpuCount: 4,
    zones: ['zone-a'],
  }),
  machineClass({ name: 'bm.large', backend: 'metal', cpu: 64, memoryMiB: 524288, zones: ['rack-1'] }),
]

function buildTemplate(overrides: Partial<TemplateInfo> = {}): TemplateInfo {
  return {
    name: 'standard',
    version: 2,
    kubernetesVersion: '1.31.4',
    backend: { name: 'sim', kind: 'simulator' },
    controlPlane: { count: 3, machineClass: 'm1.large' },
    nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 10 }],
    features: {},
    lockedFeatures: [],
    ...overrides,
  }
}

interface ContextTweaks {
  template?: Partial<TemplateInfo>
  lifecycle?: VersionLifecycle
  machineClasses?: MachineClassInfo[]
  templatePointer?: (path: string) => string
}

/** A cluster request: template-sourced values all point at `/template`, as the context documents. */
function buildContext(tweaks: ContextTweaks = {}): ResolutionContext {
  return {
    template: buildTemplate(tweaks.template),
    kubernetesVersionLifecycle: tweaks.lifecycle ?? 'supported',
    machineClasses: new Map((tweaks.machineClasses ?? defaultMachineClasses).map((mc) => [mc.name, mc])),
    templatePointer: tweaks.templatePointer ?? (() => '/template'),
  }
}

/** Validating a template body itself: template-sourced values point into that body. */
const intoTemplateBody = (path: string) => `/body${path}`

function rejection(ctx: ResolutionContext, overrides: ClusterOverrides): DomainError {
  let caught: unknown
  try {
    resolveCluster(ctx, overrides)
  } catch (error) {
    caught = error
  }
  expect(caught).toBeInstanceOf(DomainError)
  const error = caught as DomainError
  expect(error.code).toBe('invalid-spec')
  return error
}

function expectViolations(violations: Violation[], expected: { pointer: string; message: RegExp }[]) {
  expect(violations.map((v) => v.pointer).sort()).toEqual(expected.map((e) => e.pointer).sort())
  for (const v of violations) expect(v.message.trim()).not.toBe('')
  for (const e of expected) {
    expect(violations).toContainEqual({ pointer: e.pointer, message: expect.stringMatching(e.message) })
  }
}

const gpuGroup = { name: 'gpu', machineClass: 'gpu.a100x4', count: 2, minCount: 0, maxCount: 4 }

// ---------------------------------------------------------------------------------------------
// Provenance
// ---------------------------------------------------------------------------------------------

describe('resolveCluster provenance', () => {
  it('credits every cluster feature field to the catalogue default when nothing is set', () => {
    const { spec } = resolveCluster(buildContext(), {})
    for (const name of featureNames) {
      for (const field of Object.keys(featureCatalogue[name].default)) {
        expect(spec.provenance[`/features/${name}/${field}`], `/features/${name}/${field}`).toBe('default')
      }
    }
    expect(spec.features).toEqual(
      Object.fromEntries(featureNames.map((n) => [n, featureCatalogue[n].default])),
    )
  })

  const clusterCases: {
    name: string
    ctx?: ContextTweaks
    overrides: ClusterOverrides
    pointer: string
    source: ProvenanceSource
    value: unknown
  }[] = [
    {
      name: 'catalogue default',
      overrides: {},
      pointer: '/features/ingress/controller',
      source: 'default',
      value: 'traefik',
    },
    {
      name: 'template feature',
      ctx: { template: { features: { ingress: { controller: 'nginx' } } } },
      overrides: {},
      pointer: '/features/ingress/controller',
      source: 'template',
      value: 'nginx',
    },
    {
      name: 'cluster override beats the template',
      ctx: { template: { features: { ingress: { controller: 'nginx' } } } },
      overrides: { features: { ingress: { controller: 'none' } } },
      pointer: '/features/ingress/controller',
      source: 'cluster',
      value: 'none',
    },
    {
      name: 'template sets one field; the other stays default',
      ctx: { template: { features: { monitoring: { enabled: true } } } },
      overrides: {},
      pointer: '/features/monitoring/retentionDays',
      source: 'default',
      value: 15,
    },
    {
      name: 'template sets one field; that field is template',
      ctx: { template: { features: { monitoring: { enabled: true } } } },
      overrides: {},
      pointer: '/features/monitoring/enabled',
      source: 'template',
      value: true,
    },
    {
      name: 'cluster sets a field the template left alone',
      ctx: { template: { features: { monitoring: { enabled: true } } } },
      overrides: { features: { monitoring: { retentionDays: 30 } } },
      pointer: '/features/monitoring/retentionDays',
      source: 'cluster',
      value: 30,
    },
    {
      name: 'control plane from the template',
      overrides: {},
      pointer: '/controlPlane/count',
      source: 'template',
      value: 3,
    },
    {
      name: 'control plane from the cluster',
      overrides: { controlPlane: { count: 5 } },
      pointer: '/controlPlane/count',
      source: 'cluster',
      value: 5,
    },
  ]

  it.each(clusterCases)('$name: $pointer is $source', ({ ctx, overrides, pointer, source, value }) => {
    const { spec } = resolveCluster(buildContext(ctx), overrides)
    expect(spec.provenance[pointer]).toBe(source)
    const [, section, name, field] = pointer.split('/')
    const container = (spec as unknown as Record<string, Record<string, unknown>>)[section!]!
    const actual =
      field === undefined ? container[name!] : (container[name!] as Record<string, unknown>)[field]
    expect(actual).toEqual(value)
  })

  const groupCases: {
    name: string
    ctx?: ContextTweaks
    overrides: ClusterOverrides
    group: string
    pointer: string
    source: ProvenanceSource
    value: unknown
  }[] = [
    {
      name: 'count from the template',
      overrides: {},
      group: 'workers',
      pointer: '/count',
      source: 'template',
      value: 3,
    },
    {
      name: 'count overridden by the node group',
      overrides: { nodeGroups: [{ name: 'workers', count: 7 }] },
      group: 'workers',
      pointer: '/count',
      source: 'nodeGroup',
      value: 7,
    },
    {
      name: 'role nobody set',
      overrides: {},
      group: 'workers',
      pointer: '/role',
      source: 'default',
      value: 'worker',
    },
    {
      name: 'maxSurge nobody set',
      overrides: { nodeGroups: [{ name: 'workers', count: 4 }] },
      group: 'workers',
      pointer: '/maxSurge',
      source: 'default',
      value: 1,
    },
    {
      name: 'labels from the template group',
      ctx: {
        template: {
          nodeGroups: [
            {
              name: 'workers',
              machineClass: 'm1.large',
              count: 3,
              minCount: 1,
              maxCount: 10,
              labels: { tier: 'a' },
            },
          ],
        },
      },
      overrides: {},
      group: 'workers',
      pointer: '/labels',
      source: 'template',
      value: { tier: 'a' },
    },
    {
      name: 'zones defaulted from the machine class',
      overrides: {},
      group: 'workers',
      pointer: '/zones',
      source: 'default',
      value: ['zone-a', 'zone-b'],
    },
    {
      name: 'a new group: every field it sets is nodeGroup',
      overrides: { features: { gpu: { enabled: true } }, nodeGroups: [gpuGroup] },
      group: 'gpu',
      pointer: '/machineClass',
      source: 'nodeGroup',
      value: 'gpu.a100x4',
    },
    {
      name: 'gpu feature default on a group',
      overrides: {},
      group: 'workers',
      pointer: '/features/gpu/enabled',
      source: 'default',
      value: false,
    },
    {
      name: 'gpu enabled on the cluster, inherited by a GPU group',
      overrides: { features: { gpu: { enabled: true } }, nodeGroups: [gpuGroup] },
      group: 'gpu',
      pointer: '/features/gpu/enabled',
      source: 'cluster',
      value: true,
    },
    {
      name: 'gpu enabled in the template, inherited by a GPU group',
      ctx: { template: { features: { gpu: { enabled: true } } } },
      overrides: { nodeGroups: [gpuGroup] },
      group: 'gpu',
      pointer: '/features/gpu/enabled',
      source: 'template',
      value: true,
    },
    {
      name: 'gpu mode set by the cluster, inherited by a GPU group',
      overrides: { features: { gpu: { enabled: true, mode: 'operator' } }, nodeGroups: [gpuGroup] },
      group: 'gpu',
      pointer: '/features/gpu/mode',
      source: 'cluster',
      value: 'operator',
    },
    {
      name: 'gpu mode overridden by the node group',
      overrides: {
        features: { gpu: { enabled: true, mode: 'operator' } },
        nodeGroups: [{ ...gpuGroup, features: { gpu: { mode: 'device-plugin' } } }],
      },
      group: 'gpu',
      pointer: '/features/gpu/mode',
      source: 'nodeGroup',
      value: 'device-plugin',
    },
    {
      name: 'gpu enabled by the node group on a GPU class',
      overrides: {
        features: { gpu: { enabled: true } },
        nodeGroups: [{ ...gpuGroup, features: { gpu: { enabled: true } } }],
      },
      group: 'gpu',
      pointer: '/features/gpu/enabled',
      source: 'nodeGroup',
      value: true,
    },
    {
      name: 'gpu enabled by the template group on a GPU class',
      ctx: {
        template: {
          nodeGroups: [{ ...gpuGroup, features: { gpu: { enabled: true } } }],
          features: { gpu: { enabled: true } },
        },
      },
      overrides: {},
      group: 'gpu',
      pointer: '/features/gpu/enabled',
      source: 'template',
      value: true,
    },
    {
      name: 'gpu disabled by the node group on a GPU class',
      overrides: {
        features: { gpu: { enabled: true } },
        nodeGroups: [gpuGroup, { ...gpuGroup, name: 'gpu-off', features: { gpu: { enabled: false } } }],
      },
      group: 'gpu-off',
      pointer: '/features/gpu/enabled',
      source: 'nodeGroup',
      value: false,
    },
    {
      name: 'autoscaler enabled in the template, inherited',
      ctx: { template: { features: { autoscaler: { enabled: true } } } },
      overrides: {},
      group: 'workers',
      pointer: '/features/autoscaler/enabled',
      source: 'template',
      value: true,
    },
    {
      name: 'autoscaler disabled by the node group',
      overrides: {
        features: { autoscaler: { enabled: true } },
        nodeGroups: [
          { name: 'workers', features: { autoscaler: { enabled: false } } },
          { ...gpuGroup, name: 'more' },
        ],
      },
      group: 'workers',
      pointer: '/features/autoscaler/enabled',
      source: 'nodeGroup',
      value: false,
    },
  ]

  it.each(groupCases)(
    '$name: $group $pointer is $source',
    ({ ctx, overrides, group, pointer, source, value }) => {
      const { nodeGroups } = resolveCluster(buildContext(ctx), overrides)
      const ng = nodeGroups.find((g) => g.name === group)
      expect(ng).toBeDefined()
      expect(ng!.provenance[pointer]).toBe(source)
      const path = pointer.split('/').slice(1)
      let actual: unknown = ng
      for (const segment of path) actual = (actual as Record<string, unknown>)[segment]
      expect(actual).toEqual(value)
    },
  )

  it('inherits cluster-level gpu enabled only on groups whose machine class has GPUs', () => {
    const { nodeGroups } = resolveCluster(buildContext(), {
      features: { gpu: { enabled: true, mode: 'operator' } },
      nodeGroups: [gpuGroup],
    })
    const byName = Object.fromEntries(nodeGroups.map((g) => [g.name, g]))
    expect(byName['workers']!.features.gpu).toEqual({ enabled: false, mode: 'operator' })
    expect(byName['gpu']!.features.gpu).toEqual({ enabled: true, mode: 'operator' })
  })
})

// ---------------------------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------------------------

interface RejectionCase {
  name: string
  ctx?: ContextTweaks
  overrides: ClusterOverrides
  expected: { pointer: string; message: RegExp }[]
}

const rejections: RejectionCase[] = [
  {
    name: 'overriding a locked feature with a different value',
    ctx: { template: { features: { ingress: { controller: 'nginx' } }, lockedFeatures: ['ingress'] } },
    overrides: { features: { ingress: { controller: 'traefik' } } },
    expected: [{ pointer: '/features/ingress/controller', message: /locked/ }],
  },
  {
    name: 'overriding a locked feature the template leaves at its default',
    ctx: { template: { lockedFeatures: ['ingress'] } },
    overrides: { features: { ingress: { controller: 'nginx' } } },
    expected: [{ pointer: '/features/ingress/controller', message: /locked/ }],
  },
  {
    name: 'a GPU node group switching off GPUs a template locks on',
    ctx: { template: { features: { gpu: { enabled: true } }, lockedFeatures: ['gpu'] } },
    overrides: {
      nodeGroups: [
        { ...gpuGroup, features: { gpu: { enabled: false } } },
        { ...gpuGroup, name: 'gpu2' },
      ],
    },
    expected: [{ pointer: '/nodeGroups/0/features/gpu/enabled', message: /locked/ }],
  },
  {
    name: 'a node group overriding a locked node-group-scoped feature',
    ctx: { template: { lockedFeatures: ['gpu'] } },
    overrides: { nodeGroups: [{ ...gpuGroup, features: { gpu: { mode: 'operator' } } }] },
    expected: [{ pointer: '/nodeGroups/0/features/gpu/mode', message: /locked/ }],
  },
  {
    name: 'GPU enabled by the cluster but no group on a GPU class',
    overrides: { features: { gpu: { enabled: true } } },
    expected: [{ pointer: '/features/gpu/enabled', message: /GPU/ }],
  },
  {
    name: 'GPU enabled by the template but no group on a GPU class',
    ctx: { template: { features: { gpu: { enabled: true } } } },
    overrides: {},
    expected: [{ pointer: '/template', message: /GPU/ }],
  },
  {
    name: 'GPU enabled, the only GPU group opts out',
    overrides: {
      features: { gpu: { enabled: true } },
      nodeGroups: [{ ...gpuGroup, features: { gpu: { enabled: false } } }],
    },
    expected: [{ pointer: '/features/gpu/enabled', message: /GPU/ }],
  },
  {
    name: 'unknown machine class on a node group',
    overrides: { nodeGroups: [{ name: 'workers', machineClass: 'm9.huge' }] },
    expected: [{ pointer: '/nodeGroups/0/machineClass', message: /m9\.huge.*does not exist/ }],
  },
  {
    name: 'machine class of another backend on a node group',
    overrides: { nodeGroups: [{ name: 'workers', machineClass: 'bm.large' }] },
    expected: [{ pointer: '/nodeGroups/0/machineClass', message: /backend 'metal'/ }],
  },
  {
    name: 'machine class of another backend on the control plane',
    overrides: { controlPlane: { machineClass: 'bm.large' } },
    expected: [{ pointer: '/controlPlane/machineClass', message: /backend 'metal'/ }],
  },
  {
    name: 'unknown machine class on the template control plane',
    ctx: { template: { controlPlane: { count: 3, machineClass: 'gone' } } },
    overrides: {},
    expected: [{ pointer: '/template', message: /does not exist/ }],
  },
  {
    name: 'unknown machine class on a template group, validating a template body',
    ctx: {
      template: { nodeGroups: [{ name: 'workers', machineClass: 'gone', count: 1 }] },
      templatePointer: intoTemplateBody,
    },
    overrides: {},
    expected: [{ pointer: '/body/nodeGroups/0/machineClass', message: /does not exist/ }],
  },
  {
    name: 'expired Kubernetes version',
    ctx: { lifecycle: 'expired' },
    overrides: {},
    expected: [{ pointer: '/template', message: /expired/ }],
  },
  {
    name: 'expired Kubernetes version, validating a template body',
    ctx: { lifecycle: 'expired', templatePointer: intoTemplateBody },
    overrides: {},
    expected: [{ pointer: '/body/kubernetesVersion', message: /1\.31\.4.*expired/ }],
  },
  {
    name: 'count above maxCount',
    overrides: { nodeGroups: [{ name: 'workers', count: 11 }] },
    expected: [{ pointer: '/nodeGroups/0/count', message: /count 11/ }],
  },
  {
    name: 'count below minCount',
    overrides: { nodeGroups: [{ name: 'workers', count: 0 }] },
    expected: [{ pointer: '/nodeGroups/0/count', message: /outside/ }],
  },
  {
    name: 'count above maxCount in a new group at index 1',
    overrides: {
      nodeGroups: [
        { name: 'workers', count: 2 },
        { ...gpuGroup, count: 5 },
      ],
    },
    expected: [{ pointer: '/nodeGroups/1/count', message: /outside/ }],
  },
  {
    name: 'minCount greater than maxCount',
    overrides: { nodeGroups: [{ name: 'workers', minCount: 5, maxCount: 4, count: 4 }] },
    expected: [{ pointer: '/nodeGroups/0/minCount', message: /greater than maxCount/ }],
  },
  {
    name: 'zone not offered by the machine class',
    overrides: { nodeGroups: [{ name: 'workers', zones: ['zone-a', 'zone-c'] }] },
    expected: [{ pointer: '/nodeGroups/0/zones/1', message: /zone-c/ }],
  },
  {
    name: 'zone not offered by the machine class, validating a template body',
    ctx: {
      template: {
        nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 1, zones: ['zone-a', 'zone-c'] }],
      },
      templatePointer: intoTemplateBody,
    },
    overrides: {},
    expected: [{ pointer: '/body/nodeGroups/0/zones/1', message: /zone-c/ }],
  },
  {
    // templatePointer returns '/template' for every template path; the pointer must be exactly that.
    name: 'zone from the template not offered by the class, in a cluster request',
    ctx: {
      template: {
        nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 1, zones: ['zone-a', 'zone-c'] }],
      },
    },
    overrides: {},
    expected: [{ pointer: '/template', message: /zone-c/ }],
  },
  {
    name: 'maxSurge 0 with maxUnavailable 0',
    overrides: { nodeGroups: [{ name: 'workers', maxSurge: 0, maxUnavailable: 0 }] },
    expected: [{ pointer: '/nodeGroups/0/maxSurge', message: /maxSurge/ }],
  },
  {
    name: 'maxSurge 0 with the default maxUnavailable (0)',
    overrides: { nodeGroups: [{ name: 'workers', maxSurge: 0 }] },
    expected: [{ pointer: '/nodeGroups/0/maxSurge', message: /maxUnavailable/ }],
  },
  {
    name: 'duplicate node group names',
    overrides: {
      nodeGroups: [
        { name: 'workers', count: 2 },
        { name: 'workers', count: 4 },
      ],
    },
    expected: [{ pointer: '/nodeGroups/1/name', message: /twice/ }],
  },
  {
    name: 'new node group without a machine class',
    overrides: { nodeGroups: [{ name: 'extra', count: 2 }] },
    expected: [{ pointer: '/nodeGroups/0', message: /machineClass/ }],
  },
  {
    name: 'new node group without a count',
    overrides: {
      nodeGroups: [
        { name: 'workers', count: 2 },
        { name: 'extra', machineClass: 'm1.large' },
      ],
    },
    expected: [{ pointer: '/nodeGroups/1', message: /count/ }],
  },
  {
    name: 'new node group without machine class and count',
    overrides: { nodeGroups: [{ name: 'extra' }] },
    expected: [
      { pointer: '/nodeGroups/0', message: /'machineClass' is required/ },
      { pointer: '/nodeGroups/0', message: /'count' is required/ },
    ],
  },
  {
    name: 'autoscaler on an ironic backend',
    ctx: { template: { backend: { name: 'sim', kind: 'ironic' } } },
    overrides: { features: { autoscaler: { enabled: true } } },
    expected: [{ pointer: '/features/autoscaler', message: /ironic/ }],
  },
  {
    name: 'autoscaler on an ironic backend, enabled by the template',
    ctx: {
      template: { backend: { name: 'sim', kind: 'ironic' }, features: { autoscaler: { enabled: true } } },
    },
    overrides: {},
    expected: [{ pointer: '/template', message: /ironic/ }],
  },
  {
    name: 'monitoring on Kubernetes 1.29',
    ctx: { template: { kubernetesVersion: '1.29.8' } },
    overrides: { features: { monitoring: { enabled: true } } },
    expected: [{ pointer: '/features/monitoring', message: /1\.30/ }],
  },
  {
    name: 'autoscaler on Kubernetes 1.30',
    ctx: { template: { kubernetesVersion: '1.30.12' } },
    overrides: { features: { autoscaler: { enabled: true } } },
    expected: [{ pointer: '/features/autoscaler', message: />= 1\.31/ }],
  },
  {
    name: 'kubeProxyMode none with the default cni (calico)',
    overrides: { features: { kubeProxyMode: { mode: 'none' } } },
    expected: [{ pointer: '/features/kubeProxyMode/mode', message: /Cilium/ }],
  },
  {
    name: 'kubeProxyMode none with cni calico',
    overrides: { features: { kubeProxyMode: { mode: 'none' }, cni: { plugin: 'calico' } } },
    expected: [{ pointer: '/features/kubeProxyMode/mode', message: /Cilium/ }],
  },
  {
    name: 'kubeProxyMode none with cni flannel',
    overrides: { features: { kubeProxyMode: { mode: 'none' }, cni: { plugin: 'flannel' } } },
    expected: [{ pointer: '/features/kubeProxyMode/mode', message: /Cilium/ }],
  },
  {
    name: 'kubeProxyMode none with cni calico, both from the template, validating a template body',
    ctx: { template: { features: { kubeProxyMode: { mode: 'none' } } }, templatePointer: intoTemplateBody },
    overrides: {},
    expected: [{ pointer: '/body/features/kubeProxyMode/mode', message: /Cilium/ }],
  },
  {
    // templatePointer returns '/template' for every template path; the pointer must be exactly that.
    name: 'kubeProxyMode none from the template with cni calico, in a cluster request',
    ctx: { template: { features: { kubeProxyMode: { mode: 'none' } } } },
    overrides: {},
    expected: [{ pointer: '/template', message: /Cilium/ }],
  },
  {
    name: 'node group gpu explicitly enabled on a non-GPU class',
    overrides: {
      features: { gpu: { enabled: true } },
      nodeGroups: [{ name: 'workers', features: { gpu: { enabled: true } } }, gpuGroup],
    },
    expected: [{ pointer: '/nodeGroups/0/features/gpu/enabled', message: /no GPUs/ }],
  },
  {
    name: 'template group gpu enabled on a non-GPU class',
    ctx: {
      template: {
        nodeGroups: [
          { name: 'workers', machineClass: 'm1.large', count: 3, features: { gpu: { enabled: true } } },
        ],
      },
    },
    overrides: {},
    expected: [{ pointer: '/template', message: /no GPUs/ }],
  },
  {
    name: 'node group gpu enabled on a GPU class while the cluster has GPU support off',
    overrides: { nodeGroups: [{ ...gpuGroup, features: { gpu: { enabled: true } } }] },
    expected: [{ pointer: '/nodeGroups/0/features/gpu/enabled', message: /off for the cluster/ }],
  },
  {
    name: 'autoscaler enabled but every group opts out',
    overrides: {
      features: { autoscaler: { enabled: true } },
      nodeGroups: [{ name: 'workers', features: { autoscaler: { enabled: false } } }],
    },
    expected: [{ pointer: '/features/autoscaler/enabled', message: /minCount < maxCount/ }],
  },
  {
    // A fixed-size group does not inherit the autoscaler, so only the cluster-wide rule fires.
    name: 'autoscaler enabled but the only group has minCount = maxCount',
    overrides: {
      features: { autoscaler: { enabled: true } },
      nodeGroups: [{ name: 'workers', minCount: 3, maxCount: 3 }],
    },
    expected: [{ pointer: '/features/autoscaler/enabled', message: /minCount < maxCount/ }],
  },
  {
    name: 'a fixed-size group that enables the autoscaler itself',
    overrides: {
      features: { autoscaler: { enabled: true } },
      nodeGroups: [
        { name: 'workers', minCount: 3, maxCount: 3, features: { autoscaler: { enabled: true } } },
      ],
    },
    expected: [
      { pointer: '/nodeGroups/0/maxCount', message: /minCount < maxCount/ },
      { pointer: '/features/autoscaler/enabled', message: /minCount < maxCount/ },
    ],
  },
  {
    name: 'autoscaler enabled in the template but no group with minCount < maxCount',
    ctx: {
      template: {
        features: { autoscaler: { enabled: true } },
        nodeGroups: [
          {
            name: 'workers',
            machineClass: 'm1.large',
            count: 3,
            features: { autoscaler: { enabled: false } },
          },
        ],
      },
    },
    overrides: {},
    expected: [{ pointer: '/template', message: /autoscaler/ }],
  },
  {
    name: 'node group autoscaler enabled while the cluster autoscaler is off',
    overrides: { nodeGroups: [{ name: 'workers', features: { autoscaler: { enabled: true } } }] },
    expected: [{ pointer: '/nodeGroups/0/features/autoscaler/enabled', message: /off for the cluster/ }],
  },
]

describe('resolveCluster rejections', () => {
  it.each(rejections)('$name', ({ ctx, overrides, expected }) => {
    const error = rejection(buildContext(ctx), overrides)
    expectViolations(error.violations, expected)
  })

  it('reports several violations together in one error', () => {
    const error = rejection(buildContext({ lifecycle: 'expired' }), {
      features: { kubeProxyMode: { mode: 'none' }, monitoring: { enabled: true, retentionDays: 7 } },
      controlPlane: { machineClass: 'nope' },
      nodeGroups: [
        { name: 'workers', count: 11, zones: ['zone-z'] },
        { name: 'workers', count: 2 },
        { name: 'extra', machineClass: 'bm.large', count: 1 },
      ],
    })
    expectViolations(error.violations, [
      { pointer: '/template', message: /expired/ },
      { pointer: '/features/kubeProxyMode/mode', message: /Cilium/ },
      { pointer: '/controlPlane/machineClass', message: /does not exist/ },
      { pointer: '/nodeGroups/1/name', message: /twice/ },
      // The later duplicate is the one resolved against the template group.
      { pointer: '/nodeGroups/2/machineClass', message: /backend 'metal'/ },
    ])
    expect(error.message).toBe('5 rules are violated.')
  })

  it('uses the single violation as the error message', () => {
    const error = rejection(buildContext(), { nodeGroups: [{ name: 'workers', count: 11 }] })
    expect(error.violations).toHaveLength(1)
    expect(error.message).toBe(error.violations[0]!.message)
  })

  it('reports a violation per bad zone', () => {
    const error = rejection(buildContext(), {
      nodeGroups: [{ name: 'workers', zones: ['zone-x', 'zone-a', 'zone-y'] }],
    })
    expectViolations(error.violations, [
      { pointer: '/nodeGroups/0/zones/0', message: /zone-x/ },
      { pointer: '/nodeGroups/0/zones/2', message: /zone-y/ },
    ])
  })
})

// ---------------------------------------------------------------------------------------------
// Accepted requests
// ---------------------------------------------------------------------------------------------

describe('resolveCluster accepted requests', () => {
  it('resolves the bare template to its effective values', () => {
    const resolved = resolveCluster(buildContext(), {})
    expect(resolved.spec).toMatchObject({
      template: { name: 'standard', version: 2 },
      kubernetesVersion: '1.31.4',
      backend: { name: 'sim', kind: 'simulator' },
      controlPlane: { count: 3, machineClass: 'm1.large' },
    })
    expect(resolved.nodeGroups).toHaveLength(1)
    const { provenance, ...workers } = resolved.nodeGroups[0]!
    expect(workers).toEqual({
      name: 'workers',
      role: 'worker',
      machineClass: 'm1.large',
      count: 3,
      minCount: 1,
      maxCount: 10,
      zones: ['zone-a', 'zone-b'],
      labels: {},
      taints: [],
      maxSurge: 1,
      maxUnavailable: 0,
      features: { gpu: { enabled: false, mode: 'device-plugin' }, autoscaler: { enabled: false } },
    })
    expect(provenance).toEqual({
      '/role': 'default',
      '/machineClass': 'template',
      '/count': 'template',
      '/minCount': 'template',
      '/maxCount': 'template',
      '/zones': 'default',
      '/labels': 'default',
      '/taints': 'default',
      '/maxSurge': 'default',
      '/maxUnavailable': 'default',
      '/features/gpu/enabled': 'default',
      '/features/gpu/mode': 'default',
      '/features/autoscaler/enabled': 'default',
    })
  })

  const accepted: {
    name: string
    ctx?: ContextTweaks
    overrides: ClusterOverrides
    check: (r: ResolvedCluster) => void
  }[] = [
    {
      name: 'a locked feature overridden with the same value',
      ctx: { template: { features: { ingress: { controller: 'nginx' } }, lockedFeatures: ['ingress'] } },
      overrides: { features: { ingress: { controller: 'nginx' } } },
      check: (r) => expect(r.spec.features.ingress).toEqual({ controller: 'nginx' }),
    },
    {
      // What a live cluster hands back when it is resolved again (PATCH features, upgrade): its CPU
      // group's effective gpu.enabled=false. The lock is about changes, and that is none.
      name: 'a CPU node group stating the GPU switch it has anyway under a template locking GPUs on',
      ctx: {
        template: {
          features: { gpu: { enabled: true } },
          lockedFeatures: ['gpu'],
          nodeGroups: [],
        },
      },
      overrides: {
        nodeGroups: [
          {
            name: 'workers',
            machineClass: 'm1.large',
            count: 1,
            minCount: 1,
            maxCount: 3,
            features: { gpu: { enabled: false } },
          },
          gpuGroup,
        ],
      },
      check: (r) => {
        expect(r.nodeGroups.find((g) => g.name === 'workers')?.features.gpu?.enabled).toBe(false)
        expect(r.nodeGroups.find((g) => g.name === gpuGroup.name)?.features.gpu?.enabled).toBe(true)
      },
    },
    {
      name: 'a locked feature overridden with its default value',
      ctx: { template: { lockedFeatures: ['ingress'] } },
      overrides: { features: { ingress: { controller: 'traefik' } } },
      check: (r) => expect(r.spec.features.ingress).toEqual({ controller: 'traefik' }),
    },
    {
      name: 'a GPU cluster with a GPU node group',
      overrides: { features: { gpu: { enabled: true, mode: 'operator' } }, nodeGroups: [gpuGroup] },
      check: (r) => {
        expect(r.spec.features.gpu).toEqual({ enabled: true, mode: 'operator' })
        expect(r.nodeGroups.map((g) => [g.name, g.features.gpu?.enabled])).toEqual([
          ['workers', false],
          ['gpu', true],
        ])
        expect(r.nodeGroups[1]).toMatchObject({ machineClass: 'gpu.a100x4', count: 2, zones: ['zone-a'] })
      },
    },
    {
      name: 'a GPU group on a GPU class explicitly enabled',
      overrides: {
        features: { gpu: { enabled: true } },
        nodeGroups: [{ ...gpuGroup, features: { gpu: { enabled: true } } }],
      },
      check: (r) => expect(r.nodeGroups[1]!.features.gpu).toEqual({ enabled: true, mode: 'device-plugin' }),
    },
    {
      name: 'kubeProxyMode none with cni cilium',
      overrides: { features: { kubeProxyMode: { mode: 'none' }, cni: { plugin: 'cilium' } } },
      check: (r) => {
        expect(r.spec.features.kubeProxyMode).toEqual({ mode: 'none' })
        expect(r.spec.features.cni).toEqual({ plugin: 'cilium' })
      },
    },
    {
      name: 'monitoring on exactly the minimum version 1.30.0',
      ctx: { template: { kubernetesVersion: '1.30.0' } },
      overrides: { features: { monitoring: { enabled: true, retentionDays: 30 } } },
      check: (r) => expect(r.spec.features.monitoring).toEqual({ enabled: true, retentionDays: 30 }),
    },
    {
      name: 'monitoring left off on 1.29',
      ctx: { template: { kubernetesVersion: '1.29.8' } },
      overrides: { features: { monitoring: { retentionDays: 30 } } },
      check: (r) => expect(r.spec.features.monitoring.enabled).toBe(false),
    },
    {
      name: 'autoscaler off on an ironic backend',
      ctx: { template: { backend: { name: 'sim', kind: 'ironic' } } },
      overrides: { features: { autoscaler: { enabled: false } } },
      check: (r) => expect(r.spec.backend.kind).toBe('ironic'),
    },
    {
      name: 'autoscaler on a capi backend with a scalable group',
      ctx: { template: { backend: { name: 'sim', kind: 'capi' } } },
      overrides: { features: { autoscaler: { enabled: true } } },
      check: (r) => expect(r.nodeGroups[0]!.features.autoscaler).toEqual({ enabled: true }),
    },
    {
      name: 'autoscaler with one fixed group opted out and one scalable group',
      overrides: {
        features: { autoscaler: { enabled: true } },
        nodeGroups: [
          { name: 'workers', minCount: 3, maxCount: 3, features: { autoscaler: { enabled: false } } },
          { name: 'burst', machineClass: 'm1.large', count: 0, minCount: 0, maxCount: 5 },
        ],
      },
      check: (r) =>
        expect(r.nodeGroups.map((g) => [g.name, g.features.autoscaler?.enabled])).toEqual([
          ['workers', false],
          ['burst', true],
        ]),
    },
    {
      name: 'a deprecated Kubernetes version',
      ctx: { lifecycle: 'deprecated' },
      overrides: {},
      check: (r) => expect(r.spec.kubernetesVersion).toBe('1.31.4'),
    },
    {
      name: 'count at the bounds, zones a subset of the class zones',
      overrides: {
        nodeGroups: [
          { name: 'workers', count: 10, zones: ['zone-b'] },
          { name: 'small', machineClass: 'm1.large', count: 1, minCount: 1, maxCount: 1 },
        ],
      },
      check: (r) => {
        expect(r.nodeGroups[0]).toMatchObject({ count: 10, zones: ['zone-b'] })
        expect(r.nodeGroups[1]).toMatchObject({ count: 1, minCount: 1, maxCount: 1 })
      },
    },
    {
      name: 'maxSurge 0 with maxUnavailable 1',
      overrides: { nodeGroups: [{ name: 'workers', maxSurge: 0, maxUnavailable: 1 }] },
      check: (r) => expect(r.nodeGroups[0]).toMatchObject({ maxSurge: 0, maxUnavailable: 1 }),
    },
    {
      name: 'overrides of a template group keep the template order; new groups follow in request order',
      overrides: {
        nodeGroups: [
          { name: 'b', machineClass: 'm1.large', count: 1 },
          { name: 'workers', count: 5, labels: { pool: 'main' } },
          { name: 'a', machineClass: 'm1.large', count: 2, role: 'ingress' },
        ],
      },
      check: (r) => {
        expect(r.nodeGroups.map((g) => g.name)).toEqual(['workers', 'b', 'a'])
        expect(r.nodeGroups[0]).toMatchObject({
          count: 5,
          labels: { pool: 'main' },
          machineClass: 'm1.large',
        })
        expect(r.nodeGroups[2]).toMatchObject({ role: 'ingress', provenance: { '/role': 'nodeGroup' } })
      },
    },
  ]

  it.each(accepted)('$name', ({ ctx, overrides, check }) => {
    check(resolveCluster(buildContext(ctx), overrides))
  })

  it('does not leak one result’s label or taint changes into later resolutions', () => {
    const first = resolveCluster(buildContext(), {})
    first.nodeGroups[0]!.labels['leak'] = 'yes'
    first.nodeGroups[0]!.taints.push({ key: 'leak', effect: 'NoSchedule' })
    const second = resolveCluster(buildContext(), {})
    expect(second.nodeGroups[0]!.labels).toEqual({})
    expect(second.nodeGroups[0]!.taints).toEqual([])
  })
})
