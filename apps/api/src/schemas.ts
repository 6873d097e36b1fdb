import {
  BackendKind,
  ClusterOverrides,
  ClusterPhase,
  Condition,
  ConditionStatus,
  ControlPlaneInput,
  DnsLabel,
  effectiveFeaturesSchema,
  type FeatureValues,
  Labels,
  NodeGroupInput,
  NodeGroupRole,
  type NodeGroupScopedFeature,
  OperationKindSchema,
  OperationStatus,
  operationCatalogue,
  ProvenanceSource,
  StepStatus,
  StringEnum,
  Taint,
  TemplateName,
  VersionLifecycle,
} from '@kiln/domain'
import Type from 'typebox'
import { problemBase, problemTypes } from './problem-types.ts'

/**
 * Every named schema of the API. Each is registered once (`app.addSchema`) and referenced with
 * `ref()`, so it is one component in the OpenAPI document and one type in generated clients.
 */
const components: Record<string, Type.TSchema> = {}

export function named<T extends Type.TSchema>(id: string, schema: T): T {
  const withId = { ...schema, $id: id } as T
  components[id] = withId
  return withId
}

/** A `$ref` to a named schema that keeps the schema's static type for handlers. */
export function ref<T extends Type.TSchema>(schema: T): Type.TUnsafe<Type.Static<T>> {
  const id = (schema as { $id?: string }).$id
  if (!id) throw new Error('ref() needs a named schema')
  return Type.Unsafe<Type.Static<T>>(Type.Ref(id))
}

export const namedSchemas = () => Object.values(components)

const Timestamp = Type.String({ format: 'date-time', examples: ['2026-11-21T10:00:00.000Z'] })
const Id = Type.String({ format: 'uuid', examples: ['0b7c2a3e-9d44-4d1a-9a43-52f0f3c2a1b0'] })

/** The examples of a schema, or of the named schema a `ref()` points at. */
export function examplesOf(schema: Type.TSchema): unknown[] {
  const { examples, $ref } = schema as { examples?: unknown; $ref?: string }
  const found =
    examples ?? ($ref ? (components[$ref] as { examples?: unknown } | undefined)?.examples : undefined)
  return Array.isArray(found) ? found : []
}

/** `examples` for a list of `item`: one list holding every example of the item (none when it has none). */
export function listExamples(item: Type.TSchema, extra: Record<string, unknown> = {}) {
  const items = examplesOf(item)
  return items.length > 0 ? { examples: [{ items, ...extra }] } : {}
}

// Examples: one consistent story told with the demo data of seed.ts. Project `demo` creates cluster
// `ci-run-4711` from template k8s-1.31 on backend `sim` (the ClusterCreate example); its create
// operation is running, with the control plane up and the workers joining.
const seededAt = '2026-11-02T08:00:00.000Z'
const ids = {
  project: '3f6c1a52-8d2e-4b7a-9c41-6e0d5b8a2f17',
  backend: '9a2e7c14-5b3d-4f68-8e1a-2c7d9b0f4e63',
  m1Large: '1c8f4e2a-7b6d-4a39-b5e0-8d2f6c1a9e47',
  gpuA100x4: '6d3b9f71-2e8c-4c05-a4d6-0f1e7b5c3a92',
  template: '7e4a2d9c-1f5b-4e83-9a6c-3b8d0e2f5c14',
  cluster: '0b7c2a3e-9d44-4d1a-9a43-52f0f3c2a1b0',
  workers: 'c5e81f3a-4d27-4b9e-8f06-1a3c7e9d2b58',
  operation: '4f1d8b6e-3a2c-4e97-b5d8-7c0a9e2f1b36',
}
const endpointExample = `https://${ids.cluster}.clusters.sim.sim.kiln.internal:6443`

const projectExample = {
  id: ids.project,
  name: 'demo',
  displayName: 'Demo project',
  labels: {},
  createdAt: seededAt,
  updatedAt: seededAt,
}

const backendExample = {
  id: ids.backend,
  name: 'sim',
  kind: 'simulator',
  zones: ['zone-a', 'zone-b', 'zone-c'],
  createdAt: seededAt,
  updatedAt: seededAt,
}

const machineClassExamples = [
  {
    id: ids.gpuA100x4,
    name: 'gpu.a100x4',
    backend: 'sim',
    cpu: 32,
    memoryMiB: 262144,
    gpuModel: 'nvidia-a100',
    gpuCount: 4,
    zones: ['zone-a'],
    description: '',
    labels: {},
    createdAt: seededAt,
    updatedAt: seededAt,
  },
  {
    id: ids.m1Large,
    name: 'm1.large',
    backend: 'sim',
    cpu: 4,
    memoryMiB: 16384,
    gpuModel: null,
    gpuCount: 0,
    zones: ['zone-a', 'zone-b', 'zone-c'],
    description: '',
    labels: {},
    createdAt: seededAt,
    updatedAt: seededAt,
  },
]

const kubernetesVersionExamples = [
  {
    version: '1.31.4',
    lifecycle: 'supported',
    releasedAt: null,
    endOfLifeAt: null,
    createdAt: seededAt,
    updatedAt: seededAt,
  },
  {
    version: '1.30.8',
    lifecycle: 'deprecated',
    releasedAt: null,
    endOfLifeAt: null,
    createdAt: seededAt,
    updatedAt: seededAt,
  },
]

const featureExamples = [
  {
    name: 'ingress',
    title: 'Ingress controller',
    description: 'An ingress controller on nodes with the ingress role (or on workers when there are none).',
    schema: {
      type: 'object',
      required: ['controller'],
      properties: {
        controller: {
          type: 'string',
          enum: ['traefik', 'nginx', 'none'],
          description: 'The ingress controller to run on ingress nodes.',
        },
      },
      additionalProperties: false,
    },
    default: { controller: 'traefik' },
    kubernetesVersions: {},
    backends: ['simulator', 'ironic', 'capi'],
    mutable: true,
    nodeGroupScoped: false,
    conflicts: [],
  },
  {
    name: 'kubeProxyMode',
    title: 'kube-proxy mode',
    description: 'How Services are implemented on nodes. `none` lets Cilium replace kube-proxy.',
    schema: {
      type: 'object',
      required: ['mode'],
      properties: {
        mode: {
          type: 'string',
          enum: ['iptables', 'ipvs', 'none'],
          description: 'none: no kube-proxy; the CNI replaces it (Cilium only).',
        },
      },
      additionalProperties: false,
    },
    default: { mode: 'iptables' },
    kubernetesVersions: {},
    backends: ['simulator', 'ironic', 'capi'],
    mutable: false,
    nodeGroupScoped: false,
    conflicts: [
      {
        when: { field: 'mode', oneOf: ['none'] },
        conflictsWith: { feature: 'cni', field: 'plugin', oneOf: ['calico', 'flannel'] },
        reason: 'Only Cilium can replace kube-proxy; use cni.plugin=cilium or another kube-proxy mode.',
      },
    ],
  },
]

/**
 * What POST /v1/templates answers for its example. Not a seeded template: their names (k8s-1.31)
 * contain dots, which `name` (a DNS label) does not allow.
 */
const templateExample = {
  id: ids.template,
  name: 'k8s-standard',
  version: 1,
  project: 'demo',
  description: 'Kubernetes 1.31 with traefik ingress; CPU workers.',
  kubernetesVersion: '1.31.4',
  kubernetesVersionLifecycle: 'supported',
  backend: 'sim',
  controlPlane: { count: 3, machineClass: 'm1.large' },
  nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 20 }],
  features: { ingress: { controller: 'traefik' } },
  lockedFeatures: ['cni'],
  image: null,
  labels: {},
  deprecated: false,
  createdAt: '2026-11-20T16:30:00.000Z',
  updatedAt: '2026-11-20T16:30:00.000Z',
}

/** The effective configuration of ci-run-4711: catalogue defaults ← template k8s-1.31 ← the request. */
const clusterFeaturesExample = {
  gpu: { enabled: false, mode: 'device-plugin' },
  ingress: { controller: 'nginx' },
  monitoring: { enabled: false, retentionDays: 15 },
  cni: { plugin: 'calico' },
  kubeProxyMode: { mode: 'iptables' },
  metricsServer: { enabled: true },
  autoscaler: { enabled: false },
}
const clusterProvenanceExample = {
  '/features/gpu/enabled': 'default',
  '/features/gpu/mode': 'default',
  '/features/ingress/controller': 'cluster',
  '/features/monitoring/enabled': 'default',
  '/features/monitoring/retentionDays': 'default',
  '/features/cni/plugin': 'default',
  '/features/kubeProxyMode/mode': 'default',
  '/features/metricsServer/enabled': 'default',
  '/features/autoscaler/enabled': 'default',
  '/controlPlane/count': 'template',
  '/controlPlane/machineClass': 'template',
}

const nodeGroupPlanExample = {
  name: 'workers',
  role: 'worker',
  machineClass: 'm1.large',
  count: 3,
  minCount: 1,
  maxCount: 20,
  zones: ['zone-a', 'zone-b', 'zone-c'],
  labels: {},
  taints: [],
  maxSurge: 1,
  maxUnavailable: 0,
  features: { gpu: { enabled: false, mode: 'device-plugin' }, autoscaler: { enabled: false } },
  provenance: {
    '/role': 'default',
    '/minCount': 'template',
    '/maxCount': 'template',
    '/labels': 'default',
    '/taints': 'default',
    '/maxSurge': 'default',
    '/maxUnavailable': 'default',
    '/machineClass': 'template',
    '/count': 'nodeGroup',
    '/zones': 'default',
    '/features/gpu/enabled': 'default',
    '/features/gpu/mode': 'default',
    '/features/autoscaler/enabled': 'default',
  },
}
const clusterCreatedAt = '2026-11-21T10:00:00.000Z'
const nodeGroupExample = {
  id: ids.workers,
  ...nodeGroupPlanExample,
  generation: 1,
  createdAt: clusterCreatedAt,
  updatedAt: clusterCreatedAt,
}

/** ci-run-4711 while its create runs: the control plane is up, the workers are joining. */
const provisioningStatusExample = {
  phase: 'Provisioning',
  conditions: [
    {
      type: 'Ready',
      status: 'Unknown',
      reason: 'Pending',
      message: 'Waiting for the create operation to start.',
      lastTransitionTime: clusterCreatedAt,
    },
    {
      type: 'Progressing',
      status: 'True',
      reason: 'cluster.create',
      message: `Operation ${ids.operation}`,
      lastTransitionTime: '2026-11-21T10:00:00.180Z',
    },
    {
      type: 'ControlPlaneAvailable',
      status: 'True',
      reason: 'Bootstrapped',
      message: endpointExample,
      lastTransitionTime: '2026-11-21T10:00:04.731Z',
    },
  ],
  observedGeneration: 0,
  message: 'cluster.create running',
  endpoint: endpointExample,
  lastObservedAt: null,
}
/** ci-run-4711 once its create succeeded and the health checker has looked at it. */
const readyStatusExample = {
  phase: 'Ready',
  conditions: [
    {
      type: 'ControlPlaneAvailable',
      status: 'True',
      reason: 'Bootstrapped',
      message: endpointExample,
      lastTransitionTime: '2026-11-21T10:00:04.731Z',
    },
    {
      type: 'Progressing',
      status: 'False',
      reason: 'Succeeded',
      message: '',
      lastTransitionTime: '2026-11-21T10:00:09.214Z',
    },
    {
      type: 'Ready',
      status: 'True',
      reason: 'ClusterReady',
      message: 'All machines are healthy.',
      lastTransitionTime: '2026-11-21T10:00:09.214Z',
    },
    {
      type: 'MachinesReady',
      status: 'True',
      reason: 'AllMachinesHealthy',
      message: '',
      lastTransitionTime: '2026-11-21T10:00:09.214Z',
    },
  ],
  observedGeneration: 1,
  message: 'Ready',
  endpoint: endpointExample,
  lastObservedAt: '2026-11-21T10:00:39.502Z',
}

const clusterExample = {
  id: ids.cluster,
  name: 'ci-run-4711',
  project: 'demo',
  labels: { pipeline: '4711' },
  template: { name: 'k8s-1.31', version: 1 },
  generation: 1,
  spec: {
    kubernetesVersion: '1.31.4',
    backend: { name: 'sim', kind: 'simulator' },
    controlPlane: { count: 3, machineClass: 'm1.large' },
    features: clusterFeaturesExample,
    nodeGroups: [nodeGroupExample],
    provenance: clusterProvenanceExample,
  },
  status: provisioningStatusExample,
  activeOperationId: ids.operation,
  deletionRequested: false,
  expiresAt: null,
  createdAt: clusterCreatedAt,
  updatedAt: '2026-11-21T10:00:04.731Z',
}

/** The create operation of ci-run-4711, four of seven steps done (one skipped), the fifth running. */
const operationExample = {
  id: ids.operation,
  kind: 'cluster.create',
  status: 'running',
  progress: 57,
  steps: [
    {
      name: 'reserve-capacity',
      status: 'succeeded',
      startedAt: '2026-11-21T10:00:00.180Z',
      finishedAt: '2026-11-21T10:00:00.912Z',
      message: 'Capacity for 6 machines is available.',
    },
    {
      name: 'allocate-machines',
      status: 'succeeded',
      startedAt: '2026-11-21T10:00:00.912Z',
      finishedAt: '2026-11-21T10:00:03.447Z',
      message: '6 machines allocated.',
    },
    {
      name: 'issue-certificates',
      status: 'skipped',
      startedAt: '2026-11-21T10:00:03.447Z',
      finishedAt: '2026-11-21T10:00:03.449Z',
      message: 'Cluster certificates are not issued yet: the PKI arrives with the Kubernetes work.',
    },
    {
      name: 'bootstrap-control-plane',
      status: 'succeeded',
      startedAt: '2026-11-21T10:00:03.449Z',
      finishedAt: '2026-11-21T10:00:04.731Z',
      message: `Control plane up at ${endpointExample}.`,
    },
    {
      name: 'join-workers',
      status: 'running',
      startedAt: '2026-11-21T10:00:04.731Z',
      finishedAt: null,
      message:
        'Waiting for the backend (ERR_UNAVAILABLE: Ironic is unreachable at https://ironic.example.org:6385); attempt 2 failed, next at 10:00:07Z, gives up at 10:30:04Z.',
      retry: {
        attempts: 2,
        since: '2026-11-21T10:00:04.735Z',
        nextAttemptAt: '2026-11-21T10:00:07.120Z',
        giveUpAt: '2026-11-21T10:30:04.735Z',
        lastError: {
          code: 'ERR_UNAVAILABLE',
          message: 'Ironic is unreachable at https://ironic.example.org:6385',
        },
      },
    },
    { name: 'install-addons', status: 'pending', startedAt: null, finishedAt: null, message: '' },
    { name: 'wait-healthy', status: 'pending', startedAt: null, finishedAt: null, message: '' },
  ],
  error: null,
  project: 'demo',
  resource: { kind: 'cluster', id: ids.cluster, name: 'ci-run-4711' },
  requestedBy: 'user:local-operator',
  cancelRequested: false,
  createdAt: clusterCreatedAt,
  startedAt: '2026-11-21T10:00:00.180Z',
  finishedAt: null,
  updatedAt: '2026-11-21T10:00:04.731Z',
}

/** ci-run-4711: 3 control-plane and 3 worker m1.large machines (4 vCPU, 16 GiB each). */
const consumptionExample = { clusters: 1, nodes: 6, vcpus: 24, memoryMiB: 98304, gpus: 0, gpusByModel: {} }
/** A cluster from k8s-1.31-gpu: 5 m1.large machines and one gpu.a100x4. */
const gpuConsumptionExample = {
  clusters: 1,
  nodes: 6,
  vcpus: 52,
  memoryMiB: 344064,
  gpus: 4,
  gpusByModel: { 'nvidia-a100': 4 },
}

/** The demo project's quota. */
const quotaLimitsExample = {
  clusters: 10,
  nodes: 60,
  vcpus: 512,
  memoryMiB: 2097152,
  gpus: 16,
  gpusByModel: { 'nvidia-a100': 8 },
}
/** ci-run-4711 planned while the demo project runs one GPU cluster (gpuConsumptionExample). */
const quotaCheckExample = {
  accepted: true,
  resources: [
    { resource: 'clusters', limit: 10, usage: 1, request: 1, remaining: 9, exceeded: false },
    { resource: 'nodes', limit: 60, usage: 6, request: 6, remaining: 54, exceeded: false },
    { resource: 'vcpus', limit: 512, usage: 52, request: 24, remaining: 460, exceeded: false },
    {
      resource: 'memoryMiB',
      limit: 2097152,
      usage: 344064,
      request: 98304,
      remaining: 1753088,
      exceeded: false,
    },
    { resource: 'gpus', limit: 16, usage: 4, request: 0, remaining: 12, exceeded: false },
    { resource: 'gpus:nvidia-a100', limit: 8, usage: 4, request: 0, remaining: 4, exceeded: false },
  ],
}
/** A second k8s-1.31-gpu cluster with two more gpu.a100x4 machines: 12 A100s where 8 are allowed. */
const quotaExceededLineExample = {
  resource: 'gpus:nvidia-a100',
  limit: 8,
  usage: 4,
  request: 12,
  remaining: 4,
  exceeded: true,
}

const clusterPlanExample = {
  template: { name: 'k8s-1.31', version: 1, deprecated: false },
  spec: {
    kubernetesVersion: '1.31.4',
    backend: { name: 'sim', kind: 'simulator' },
    controlPlane: { count: 3, machineClass: 'm1.large' },
    features: clusterFeaturesExample,
    nodeGroups: [nodeGroupPlanExample],
    provenance: clusterProvenanceExample,
  },
  consumption: consumptionExample,
  quota: quotaCheckExample,
  operation: {
    kind: 'cluster.create',
    steps: [...operationCatalogue['cluster.create']],
  },
}

// Enums first: referenced from the resources below.
export const BackendKindRef = ref(named('BackendKind', BackendKind))
export const VersionLifecycleRef = ref(named('VersionLifecycle', VersionLifecycle))
export const NodeGroupRoleRef = ref(named('NodeGroupRole', NodeGroupRole))
export const ClusterPhaseRef = ref(named('ClusterPhase', ClusterPhase))
export const OperationStatusRef = ref(named('OperationStatus', OperationStatus))
export const OperationKindRef = ref(named('OperationKind', OperationKindSchema))
export const StepStatusRef = ref(named('StepStatus', StepStatus))
export const ProvenanceSourceRef = ref(named('ProvenanceSource', ProvenanceSource))
export const ConditionStatusRef = ref(named('ConditionStatus', ConditionStatus))
export const CertificateAuthorityStateRef = ref(
  named(
    'CertificateAuthorityState',
    StringEnum(['current', 'previous'], {
      description:
        'current: signs every credential issued now. previous: the cluster CA being rotated out; still trusted (and still signing the API server’s serving certificate) until the rotation completes.',
    }),
  ),
)
export const CaRotationPhaseRef = ref(
  named(
    'CaRotationPhase',
    StringEnum(['start', 'complete'], {
      description:
        'start: generate a new cluster CA, trusted beside the current one, that signs every new credential. complete: destroy the previous CA, so credentials it signed stop working.',
    }),
  ),
)

export const Provenance = named(
  'Provenance',
  Type.Record(Type.String(), ProvenanceSourceRef, {
    description: 'JSON pointer (relative to the object it sits on) → where the effective value came from.',
    examples: [{ '/features/ingress/controller': 'template', '/features/gpu/enabled': 'cluster' }],
  }),
)

export const QuotaLineSchema = named(
  'QuotaLine',
  Type.Object(
    {
      resource: Type.String({
        pattern: '^(clusters|nodes|vcpus|memoryMiB|gpus|gpus:.+)$',
        description: 'clusters, nodes, vcpus, memoryMiB, gpus, or gpus:<model> for the GPUs of one model.',
        examples: ['gpus:nvidia-a100'],
      }),
      limit: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Null: unlimited.' }),
      usage: Type.Integer({
        description:
          'What the project’s clusters claim now: per group, the larger of its desired size and the machines it still holds.',
      }),
      request: Type.Integer({ description: 'What the request adds (negative when it gives back).' }),
      remaining: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
        description: 'limit − usage before the request, never below 0; null when unlimited.',
      }),
      exceeded: Type.Boolean({ description: 'Whether the request would take usage beyond the limit.' }),
    },
    {
      additionalProperties: false,
      description: 'One resource of a project’s quota against a request.',
      examples: [quotaCheckExample.resources[2], quotaExceededLineExample],
    },
  ),
)

export const ProblemSchema = named(
  'Problem',
  Type.Object(
    {
      type: Type.String({
        format: 'uri',
        description: `Identifies the kind of problem; compare it as a string. One of ${Object.keys(
          problemTypes,
        )
          .map((slug) => `\`${problemBase}${slug}\``)
          .join(
            ', ',
          )}; \`x-problem-types\` describes each, and every server shows a page for it at \`/problems/{slug}\`.`,
        examples: ['https://kiln.dev/problems/invalid-spec'],
      }),
      title: Type.String(),
      status: Type.Integer(),
      detail: Type.String(),
      instance: Type.String(),
      requestId: Type.String(),
      errors: Type.Optional(
        Type.Array(
          Type.Object({
            pointer: Type.String({ description: 'JSON pointer into the part named by `in`.' }),
            in: StringEnum(['body', 'query', 'path', 'header']),
            message: Type.String(),
          }),
        ),
      ),
      operationId: Type.Optional(
        Type.String({ description: 'On 409: the operation the cluster is busy with.' }),
      ),
      exceeded: Type.Optional(
        Type.Array(ref(QuotaLineSchema), {
          description: 'On 422 quota-exceeded: every resource the request would take beyond its limit.',
        }),
      ),
    },
    {
      additionalProperties: true,
      description: 'An RFC 9457 problem document.',
      'x-problem-types': Object.entries(problemTypes).map(([slug, t]) => ({
        type: `${problemBase}${slug}`,
        ...t,
      })),
      examples: [
        {
          type: 'https://kiln.dev/problems/invalid-spec',
          title: 'The request breaks a rule',
          status: 422,
          detail: 'GPU support is enabled, but no node group uses a machine class with GPUs.',
          instance: '/v1/projects/demo/clusters',
          requestId: 'req-1',
          errors: [
            { pointer: '/features/gpu/enabled', in: 'body', message: 'GPU support is enabled, but …' },
          ],
        },
        {
          type: 'https://kiln.dev/problems/quota-exceeded',
          title: 'Quota exceeded',
          status: 422,
          detail:
            "The request exceeds the project's quota. gpus:nvidia-a100: the limit is 8, 4 are in use and this request needs 12 more.",
          instance: '/v1/projects/demo/clusters',
          requestId: 'req-2',
          errors: [
            {
              pointer: '/nodeGroups/0',
              in: 'body',
              message: 'gpus:nvidia-a100: the limit is 8, 4 are in use and this request needs 12 more.',
            },
          ],
          exceeded: [quotaExceededLineExample],
        },
      ],
    },
  ),
)

export const ProjectSchema = named(
  'Project',
  Type.Object(
    {
      id: Id,
      name: DnsLabel,
      displayName: Type.String(),
      labels: Labels,
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A tenant: clusters, templates and quotas belong to one.',
      examples: [projectExample],
    },
  ),
)

const QuotaLimit = Type.Union([Type.Integer({ minimum: 0, maximum: 2_147_483_647 }), Type.Null()], {
  description: 'Null: unlimited.',
})
const GpusByModel = Type.Record(Type.String(), Type.Integer({ minimum: 0, maximum: 2_147_483_647 }), {
  propertyNames: { pattern: '^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$' },
  maxProperties: 64,
  description:
    'GPU limits by model (a machine class’s gpuModel). A model not named here is bounded only by `gpus`.',
})

export const QuotaLimitsSchema = named(
  'QuotaLimits',
  Type.Object(
    {
      clusters: QuotaLimit,
      nodes: QuotaLimit,
      vcpus: QuotaLimit,
      memoryMiB: QuotaLimit,
      gpus: QuotaLimit,
      gpusByModel: GpusByModel,
    },
    {
      additionalProperties: false,
      description: 'A project’s limits; null means unlimited.',
      examples: [quotaLimitsExample],
    },
  ),
)

export const QuotaLimitsUpdateSchema = named(
  'QuotaLimitsUpdate',
  Type.Object(
    {
      clusters: Type.Optional(QuotaLimit),
      nodes: Type.Optional(QuotaLimit),
      vcpus: Type.Optional(QuotaLimit),
      memoryMiB: Type.Optional(QuotaLimit),
      gpus: Type.Optional(QuotaLimit),
      gpusByModel: Type.Optional(GpusByModel),
    },
    {
      additionalProperties: false,
      description:
        'The whole quota: a limit left out (or null) is unlimited. It may be below the current usage: that refuses growth and takes nothing away.',
      examples: [quotaLimitsExample, { gpus: 4 }],
    },
  ),
)

export const ProjectQuotaSchema = named(
  'ProjectQuota',
  Type.Object(
    {
      project: Type.String(),
      limits: ref(QuotaLimitsSchema),
      updatedBy: Type.Union([Type.String(), Type.Null()], {
        description: 'Who last changed it; null when it was never set (unlimited).',
      }),
      updatedAt: Type.Union([Timestamp, Type.Null()]),
    },
    {
      additionalProperties: false,
      description: 'A project’s quota.',
      examples: [
        {
          project: 'demo',
          limits: quotaLimitsExample,
          updatedBy: 'user:local-operator',
          updatedAt: '2026-11-20T09:00:00.000Z',
        },
      ],
    },
  ),
)

export const BackendSchema = named(
  'Backend',
  Type.Object(
    {
      id: Id,
      name: Type.String(),
      kind: BackendKindRef,
      zones: Type.Array(Type.String()),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'Where machines come from. Its configuration is never returned.',
      examples: [backendExample],
    },
  ),
)

export const MachineClassSchema = named(
  'MachineClass',
  Type.Object(
    {
      id: Id,
      name: Type.String({ examples: ['gpu.a100x4'] }),
      backend: Type.String({ description: 'Backend name.' }),
      cpu: Type.Integer({ examples: [32] }),
      memoryMiB: Type.Integer({ examples: [262144] }),
      gpuModel: Type.Union([Type.String(), Type.Null()], { examples: ['nvidia-a100'] }),
      gpuCount: Type.Integer({ examples: [4] }),
      zones: Type.Array(Type.String()),
      description: Type.String(),
      labels: Labels,
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A kind of machine a backend offers (a flavour).',
      examples: machineClassExamples,
    },
  ),
)

export const KubernetesVersionSchema = named(
  'KubernetesVersion',
  Type.Object(
    {
      version: Type.String({ examples: ['1.31.4'] }),
      lifecycle: VersionLifecycleRef,
      releasedAt: Type.Union([Type.String({ format: 'date' }), Type.Null()]),
      endOfLifeAt: Type.Union([Type.String({ format: 'date' }), Type.Null()]),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A Kubernetes version Kiln can run, and where it is in its lifecycle.',
      examples: kubernetesVersionExamples,
    },
  ),
)

export const FeatureSchema = named(
  'Feature',
  Type.Object(
    {
      name: Type.String({ examples: ['ingress'] }),
      title: Type.String(),
      description: Type.String(),
      schema: Type.Record(Type.String(), Type.Unknown(), { description: 'JSON Schema of the value.' }),
      default: Type.Record(Type.String(), Type.Unknown()),
      kubernetesVersions: Type.Object({
        min: Type.Optional(Type.String()),
        max: Type.Optional(Type.String()),
      }),
      backends: Type.Array(BackendKindRef),
      mutable: Type.Boolean({ description: 'Whether it can change on a live cluster.' }),
      nodeGroupScoped: Type.Boolean({ description: 'Whether node groups may override it.' }),
      conflicts: Type.Array(
        Type.Object({
          when: Type.Object({ field: Type.String(), oneOf: Type.Array(Type.Unknown()) }),
          conflictsWith: Type.Object({
            feature: Type.String(),
            field: Type.String(),
            oneOf: Type.Array(Type.Unknown()),
          }),
          reason: Type.String(),
        }),
      ),
    },
    {
      additionalProperties: false,
      description: 'A typed switch a template or cluster may set.',
      examples: featureExamples,
    },
  ),
)

export const TaintSchema = ref(
  named('Taint', { ...Taint, examples: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }] }),
)
export const NodeGroupInputSchema = named('NodeGroupInput', {
  ...NodeGroupInput,
  // The named enum, not a copy of it, so generated clients share one type.
  properties: { ...NodeGroupInput.properties, role: Type.Optional(NodeGroupRoleRef) },
  examples: [
    {
      name: 'batch',
      machineClass: 'm1.xlarge',
      count: 2,
      minCount: 0,
      maxCount: 10,
      labels: { workload: 'batch' },
      taints: [{ key: 'workload', value: 'batch', effect: 'NoSchedule' }],
    },
  ],
})
export const ControlPlaneInputSchema = named('ControlPlaneInput', {
  ...ControlPlaneInput,
  examples: [{ count: 3, machineClass: 'm1.large' }],
})
export const FeatureOverridesSchema = named('FeatureOverrides', {
  ...ClusterOverrides.properties.features,
  examples: [{ ingress: { controller: 'nginx' }, monitoring: { enabled: true, retentionDays: 30 } }],
})

const EffectiveFeaturesSchema = named(
  'EffectiveFeatures',
  Type.Unsafe<FeatureValues>({ ...effectiveFeaturesSchema(), examples: [clusterFeaturesExample] }),
)
const EffectiveNodeGroupFeaturesSchema = named(
  'EffectiveNodeGroupFeatures',
  Type.Unsafe<Pick<FeatureValues, NodeGroupScopedFeature>>({
    ...effectiveFeaturesSchema({ nodeGroupScopedOnly: true }),
    examples: [nodeGroupPlanExample.features],
  }),
)

export const BootImageSchema = named(
  'BootImage',
  Type.Object(
    {
      source: Type.String({
        minLength: 1,
        maxLength: 2048,
        description: 'An http(s) URL, or an image id of the backend’s image service.',
      }),
      checksum: Type.String({ minLength: 8, maxLength: 256, description: 'Hex digest of the image.' }),
      checksumAlgorithm: Type.Optional(StringEnum(['sha256', 'sha512'], { default: 'sha256' })),
      diskFormat: Type.Optional(StringEnum(['qcow2', 'raw'], { default: 'qcow2' })),
    },
    {
      additionalProperties: false,
      description:
        'The OS image bare-metal machines are deployed with (Ironic’s instance_info). Backends that provision finished machines ignore it.',
      examples: [
        {
          source: 'https://images.example.org/kiln-node-k8s-1.31.4.qcow2',
          checksum: 'a3b1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90',
          checksumAlgorithm: 'sha256',
          diskFormat: 'qcow2',
        },
      ],
    },
  ),
)

export const TemplateSchema = named(
  'ClusterTemplate',
  Type.Object(
    {
      id: Id,
      name: TemplateName,
      version: Type.Integer({ minimum: 1 }),
      project: Type.Union([Type.String(), Type.Null()], { description: 'Owning project; null when public.' }),
      description: Type.String(),
      kubernetesVersion: Type.String(),
      kubernetesVersionLifecycle: VersionLifecycleRef,
      backend: Type.String(),
      controlPlane: Type.Object({ count: Type.Integer(), machineClass: Type.String() }),
      nodeGroups: Type.Array(ref(NodeGroupInputSchema)),
      features: ref(FeatureOverridesSchema),
      lockedFeatures: Type.Array(Type.String()),
      labels: Labels,
      image: Type.Union([ref(BootImageSchema), Type.Null()], {
        description: 'Null: bare-metal backends use their own image for the Kubernetes version.',
      }),
      deprecated: Type.Boolean(),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A published, immutable template version. Only `deprecated` and `labels` may change.',
      examples: [templateExample],
    },
  ),
)

export const ConditionSchema = ref(
  named('Condition', {
    ...Condition,
    properties: { ...Condition.properties, status: ConditionStatusRef },
    examples: [readyStatusExample.conditions[2]],
  }),
)

export const NodeGroupSchema = named(
  'NodeGroup',
  Type.Object(
    {
      id: Id,
      name: DnsLabel,
      role: NodeGroupRoleRef,
      machineClass: Type.String(),
      count: Type.Integer(),
      minCount: Type.Integer(),
      maxCount: Type.Integer(),
      zones: Type.Array(Type.String()),
      labels: Labels,
      taints: Type.Array(TaintSchema),
      maxSurge: Type.Integer(),
      maxUnavailable: Type.Integer(),
      features: ref(EffectiveNodeGroupFeaturesSchema),
      provenance: ref(Provenance),
      generation: Type.Integer(),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A group of identical worker machines.',
      examples: [nodeGroupExample],
    },
  ),
)

export const MachinePhaseRef = ref(
  named(
    'MachinePhase',
    StringEnum(['Reserved', 'Allocating', 'Allocated', 'Running', 'Draining', 'Releasing'], {
      description:
        'Where a machine is in its life. `Reserved`: recorded and counted against the backend’s capacity, the backend not yet asked. `Allocating`: the backend is being asked for it (a retry adopts it by name). `Allocated`: the backend handed it out; not yet a node. `Running`: a node of the cluster. `Draining`: leaving the cluster. `Releasing`: being given back to the backend.',
    }),
  ),
)
export const MachineHealthRef = ref(
  named(
    'MachineHealth',
    StringEnum(['Healthy', 'Unhealthy', 'Missing', 'Unknown'], {
      description:
        'What the health checker last saw. `Missing`: the backend does not know the machine; `Unknown`: the backend did not answer.',
    }),
  ),
)

export const MachineSchema = named(
  'Machine',
  Type.Object(
    {
      name: Type.String({ description: 'Kiln’s deterministic name for it, which the backend knows it by.' }),
      role: StringEnum(['control-plane', 'worker']),
      nodeGroup: Type.Union([Type.String(), Type.Null()], {
        description: 'The node group’s name; null for control-plane machines.',
      }),
      machineClass: Type.String(),
      zone: Type.Union([Type.String(), Type.Null()]),
      phase: MachinePhaseRef,
      externalId: Type.Union([Type.String(), Type.Null()], {
        description: 'The backend’s id for it; null until the backend hands it out.',
      }),
      kubernetesVersion: Type.String(),
      health: Type.Union([MachineHealthRef, Type.Null()], { description: 'Null until first observed.' }),
      healthReason: Type.Union([Type.String(), Type.Null()]),
      unhealthySince: Type.Union([Timestamp, Type.Null()], {
        description: 'Since when it has been unhealthy without a break; null while healthy.',
      }),
      observedAt: Type.Union([Timestamp, Type.Null()], { description: 'When its health was last observed.' }),
      createdAt: Timestamp,
    },
    {
      additionalProperties: false,
      description:
        'A machine a cluster holds: reserved at its backend, being allocated, allocated, running as a node, or on its way out.',
      examples: [
        {
          name: 'k-0b7c2a3e-ng-workers-0-4f1d8b',
          role: 'worker',
          nodeGroup: 'workers',
          machineClass: 'm1.large',
          zone: 'zone-a',
          phase: 'Running',
          externalId: 'sim/zone-a-r01/m1.large/1',
          kubernetesVersion: '1.31.4',
          health: 'Healthy',
          healthReason: null,
          unhealthySince: null,
          observedAt: '2026-11-21T10:05:00.000Z',
          createdAt: clusterCreatedAt,
        },
      ],
    },
  ),
)

export const ClusterStatusSchema = named(
  'ClusterStatus',
  Type.Object(
    {
      phase: ClusterPhaseRef,
      conditions: Type.Array(ConditionSchema),
      observedGeneration: Type.Integer(),
      message: Type.String(),
      endpoint: Type.Union([Type.String(), Type.Null()], { description: 'The Kubernetes API server URL.' }),
      tlsServerName: Type.Optional(
        Type.Union([Type.String(), Type.Null()], {
          description: 'The TLS server name to ask the endpoint for, when one address serves many clusters.',
        }),
      ),
      lastObservedAt: Type.Union([Timestamp, Type.Null()]),
    },
    {
      additionalProperties: false,
      description: 'What was last observed.',
      examples: [provisioningStatusExample, readyStatusExample],
    },
  ),
)

export const ClusterSchema = named(
  'Cluster',
  Type.Object(
    {
      id: Id,
      name: DnsLabel,
      project: Type.String(),
      labels: Labels,
      template: Type.Object({ name: Type.String(), version: Type.Integer() }),
      generation: Type.Integer({ description: 'Bumped whenever the desired state changes.' }),
      spec: Type.Object(
        {
          kubernetesVersion: Type.String(),
          backend: Type.Object({ name: Type.String(), kind: BackendKindRef }),
          controlPlane: Type.Object({ count: Type.Integer(), machineClass: Type.String() }),
          features: ref(EffectiveFeaturesSchema),
          nodeGroups: Type.Array(ref(NodeGroupSchema)),
          provenance: ref(Provenance),
        },
        {
          additionalProperties: false,
          description: 'The effective desired state, with where each value came from.',
        },
      ),
      status: ref(ClusterStatusSchema),
      activeOperationId: Type.Union([Id, Type.Null()]),
      deletionRequested: Type.Boolean(),
      expiresAt: Type.Union([Timestamp, Type.Null()]),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A Kubernetes cluster: desired `spec`, observed `status`.',
      examples: [clusterExample],
    },
  ),
)

export const StepRetrySchema = named(
  'StepRetry',
  Type.Object(
    {
      attempts: Type.Integer({ minimum: 1, description: 'Failed attempts since the step last succeeded.' }),
      since: { ...Timestamp, description: 'When the first of these failures happened.' },
      nextAttemptAt: { ...Timestamp, description: 'When the step is tried again.' },
      giveUpAt: {
        ...Timestamp,
        description: 'A failure after this time fails the operation (the worker’s retry horizon).',
      },
      lastError: Type.Object(
        { code: Type.String({ examples: ['ERR_UNAVAILABLE'] }), message: Type.String() },
        { additionalProperties: false },
      ),
    },
    {
      additionalProperties: false,
      description:
        'A step waiting to retry a retryable failure (a backend outage): it keeps trying, with growing pauses, until `giveUpAt`.',
    },
  ),
)

export const OperationSchema = named(
  'Operation',
  Type.Object(
    {
      id: Id,
      kind: OperationKindRef,
      status: OperationStatusRef,
      progress: Type.Integer({ minimum: 0, maximum: 100 }),
      steps: Type.Array(
        Type.Object({
          name: Type.String({ examples: ['allocate-machines'] }),
          status: StepStatusRef,
          startedAt: Type.Union([Timestamp, Type.Null()]),
          finishedAt: Type.Union([Timestamp, Type.Null()]),
          message: Type.String(),
          retry: Type.Optional(
            Type.Union([ref(StepRetrySchema), Type.Null()], {
              description: 'Present while the step waits to retry; null or absent otherwise.',
            }),
          ),
        }),
      ),
      error: Type.Union([ref(ProblemSchema), Type.Null()]),
      project: Type.String(),
      resource: Type.Object({ kind: Type.String(), id: Type.String(), name: Type.String() }),
      requestedBy: Type.String(),
      cancelRequested: Type.Boolean(),
      createdAt: Timestamp,
      startedAt: Type.Union([Timestamp, Type.Null()]),
      finishedAt: Type.Union([Timestamp, Type.Null()]),
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'Asynchronous work on a resource; watch it to completion.',
      examples: [operationExample],
    },
  ),
)

export const ConsumptionSchema = named(
  'Consumption',
  Type.Object(
    {
      clusters: Type.Integer(),
      nodes: Type.Integer(),
      vcpus: Type.Integer(),
      memoryMiB: Type.Integer(),
      gpus: Type.Integer(),
      gpusByModel: Type.Record(Type.String(), Type.Integer()),
    },
    {
      additionalProperties: false,
      description: 'What a cluster takes from its project’s quota.',
      examples: [consumptionExample, gpuConsumptionExample],
    },
  ),
)

const {
  id: _id,
  generation: _g,
  createdAt: _c,
  updatedAt: _u,
  ...plannedNodeGroupFields
} = NodeGroupSchema.properties
export const NodeGroupPlanSchema = named(
  'NodeGroupPlan',
  Type.Object(plannedNodeGroupFields, {
    additionalProperties: false,
    description: 'A node group as it would be created.',
    examples: [nodeGroupPlanExample],
  }),
)

export const QuotaCheckSchema = named(
  'QuotaCheck',
  Type.Object(
    {
      accepted: Type.Boolean({ description: 'Whether the request fits the quota now.' }),
      resources: Type.Array(ref(QuotaLineSchema)),
    },
    {
      additionalProperties: false,
      description:
        'A request against the project’s quota, resource by resource. A dry run promises nothing: the real request is checked again when it is sent.',
      examples: [quotaCheckExample],
    },
  ),
)

export const ProjectUsageSchema = named(
  'ProjectUsage',
  Type.Object(
    {
      project: Type.String(),
      usage: ref(ConsumptionSchema),
      limits: ref(QuotaLimitsSchema),
      resources: Type.Array(
        Type.Object(
          {
            resource: QuotaLineSchema.properties.resource,
            usage: Type.Integer(),
            limit: QuotaLineSchema.properties.limit,
            remaining: QuotaLineSchema.properties.remaining,
          },
          { additionalProperties: false },
        ),
      ),
    },
    {
      additionalProperties: false,
      description:
        'What the project’s clusters claim now against its limits. Per cluster group, the larger of its desired size and the machines it still holds: a create or resize counts from the moment it is accepted, a release from the moment the machines are released.',
      examples: [
        {
          project: 'demo',
          usage: {
            clusters: 2,
            nodes: 12,
            vcpus: 76,
            memoryMiB: 442368,
            gpus: 4,
            gpusByModel: { 'nvidia-a100': 4 },
          },
          limits: quotaLimitsExample,
          resources: [
            { resource: 'clusters', usage: 2, limit: 10, remaining: 8 },
            { resource: 'nodes', usage: 12, limit: 60, remaining: 48 },
            { resource: 'vcpus', usage: 76, limit: 512, remaining: 436 },
            { resource: 'memoryMiB', usage: 442368, limit: 2097152, remaining: 1654784 },
            { resource: 'gpus', usage: 4, limit: 16, remaining: 12 },
            { resource: 'gpus:nvidia-a100', usage: 4, limit: 8, remaining: 4 },
          ],
        },
      ],
    },
  ),
)

export const ClusterPlanSchema = named(
  'ClusterPlan',
  Type.Object(
    {
      template: Type.Object({ name: Type.String(), version: Type.Integer(), deprecated: Type.Boolean() }),
      spec: Type.Object(
        { ...ClusterSchema.properties.spec.properties, nodeGroups: Type.Array(ref(NodeGroupPlanSchema)) },
        { additionalProperties: false },
      ),
      consumption: ref(ConsumptionSchema),
      quota: ref(QuotaCheckSchema),
      operation: Type.Object({ kind: OperationKindRef, steps: Type.Array(Type.String()) }),
    },
    {
      additionalProperties: false,
      description: 'What a create would do, without doing it.',
      examples: [clusterPlanExample],
    },
  ),
)

export const ClusterCreateSchema = named(
  'ClusterCreate',
  Type.Object(
    {
      name: DnsLabel,
      template: Type.String({
        minLength: 1,
        maxLength: 63,
        description: 'Template name (or id).',
        examples: ['k8s-1.31'],
      }),
      templateVersion: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 2_147_483_647,
          description: 'Defaults to the latest version that is not deprecated.',
        }),
      ),
      labels: Type.Optional(Labels),
      expiresAt: Type.Optional(
        Type.String({ format: 'date-time', description: 'Delete the cluster at this time.' }),
      ),
      controlPlane: Type.Optional(ref(ControlPlaneInputSchema)),
      features: Type.Optional(ref(FeatureOverridesSchema)),
      nodeGroups: Type.Optional(Type.Array(ref(NodeGroupInputSchema), { maxItems: 32 })),
    },
    {
      additionalProperties: false,
      examples: [
        {
          name: 'ci-run-4711',
          template: 'k8s-1.31',
          labels: { pipeline: '4711' },
          features: { ingress: { controller: 'nginx' } },
          nodeGroups: [{ name: 'workers', count: 3 }],
        },
      ],
    },
  ),
)

/**
 * The one list envelope: a page of `item`s in a stable order and the cursor of the next page, as a
 * named schema (`<Thing>List`) so generated clients get one type per list.
 */
export const Page = <T extends Type.TSchema>(name: string, item: T, description: string) =>
  named(
    name,
    Type.Object(
      {
        items: Type.Array(item),
        nextCursor: Type.Union([Type.String(), Type.Null()], {
          description: 'Pass as ?cursor= for the next page; null on the last page.',
        }),
      },
      { additionalProperties: false, description, ...listExamples(item, { nextCursor: null }) },
    ),
  )

export const ListQuery = {
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'At most this many items.' }),
  ),
  cursor: Type.Optional(
    Type.String({
      maxLength: 512,
      description: 'The `nextCursor` of the previous page of the same list (another list’s is 422).',
    }),
  ),
}

export const CertificateAuthoritySchema = named(
  'CertificateAuthority',
  Type.Object(
    {
      purpose: StringEnum(['cluster-ca', 'etcd-ca', 'front-proxy-ca'], {
        description: 'What the CA signs: the API server and its clients, etcd, or the aggregation layer.',
      }),
      certificatePem: Type.String({ description: 'The CA certificate (PEM). Never a private key.' }),
      subject: Type.String({ examples: ['CN=kubernetes'] }),
      notBefore: Timestamp,
      notAfter: Timestamp,
      fingerprintSha256: Type.String({ description: 'Lower-case hex, no separators.' }),
      generation: Type.Integer({
        minimum: 1,
        description: '1 when the cluster was created; each CA rotation adds one.',
      }),
      state: CertificateAuthorityStateRef,
    },
    {
      additionalProperties: false,
      description:
        'One of a cluster’s certificate authorities (public certificate only). While the cluster CA rotates, both the previous and the current cluster-ca are listed.',
      examples: [
        {
          purpose: 'cluster-ca',
          certificatePem: '-----BEGIN CERTIFICATE-----\nMIIDBTCCAe2gAwIBAgIQ…\n-----END CERTIFICATE-----\n',
          subject: 'CN=kubernetes',
          notBefore: '2026-11-21T09:59:00.000Z',
          notAfter: '2036-11-19T10:00:00.000Z',
          fingerprintSha256: '9f2c4e1b7a3d5c8e0f6a2b4d7c9e1f3a5b7d9c2e4f6a8b0c1d3e5f7a9b2c4d6e',
          generation: 1,
          state: 'current',
        },
      ],
    },
  ),
)

const csrPemExample =
  '-----BEGIN CERTIFICATE REQUEST-----\nMIHhMIGIAgEAMCYxDzANBgNVBAoMBmRldm9wczETMBEGA1UEAwwKYWxpY2VA…\n-----END CERTIFICATE REQUEST-----\n'

/** Lifetimes of issued client credentials: 24 h unless asked, never more than 7 days. */
export const CredentialTtlSeconds = Type.Integer({
  minimum: 300,
  maximum: 7 * 24 * 3600,
  description: 'Lifetime in seconds: at least 5 minutes, at most 7 days; 24 hours when omitted.',
})

export const KubeconfigRequestSchema = named(
  'KubeconfigRequest',
  Type.Object(
    { ttlSeconds: Type.Optional(CredentialTtlSeconds) },
    {
      additionalProperties: false,
      examples: [{ ttlSeconds: 3600 }],
      description: 'What the issued kubeconfig’s client certificate should be.',
    },
  ),
)

export const CertificateSigningRequestSchema = named(
  'CertificateSigningRequest',
  Type.Object(
    {
      csrPem: Type.String({
        minLength: 1,
        maxLength: 16_384,
        description:
          'A PEM PKCS#10 request (`openssl req -new …`) with an RSA (2048 bits or more) or ECDSA P-256/P-384 key. Its CN becomes the Kubernetes user and its O= values the groups, which must be among the groups your role grants; other attributes and requested extensions are ignored.',
      }),
      ttlSeconds: Type.Optional(CredentialTtlSeconds),
      usage: Type.Optional(
        StringEnum(['client'], {
          default: 'client',
          description: 'A client certificate for the API server.',
        }),
      ),
    },
    {
      additionalProperties: false,
      description: 'A certificate signing request for the cluster CA (Magnum’s `ca-sign`).',
      examples: [{ csrPem: csrPemExample, ttlSeconds: 3600 }],
    },
  ),
)

export const SignedCertificateSchema = named(
  'SignedCertificate',
  Type.Object(
    {
      certificatePem: Type.String({
        description: 'The client certificate (PEM), signed by the current cluster CA.',
      }),
      caPem: Type.String({
        description:
          'Every CA certificate the cluster trusts now (PEM bundle; two while the CA rotates): verify the API server with it.',
      }),
      username: Type.String({ description: 'The Kubernetes user: the CSR’s common name.' }),
      groups: Type.Array(Type.String(), { description: 'The Kubernetes groups: the CSR’s organizations.' }),
      notAfter: Timestamp,
      serialNumber: Type.String({ description: 'Lower-case hex.' }),
    },
    {
      additionalProperties: false,
      description: 'A certificate issued for a CSR. Kiln keeps no copy; the audit log records its serial.',
      examples: [
        {
          certificatePem: '-----BEGIN CERTIFICATE-----\nMIIB9jCCAZygAwIBAgIQ…\n-----END CERTIFICATE-----\n',
          caPem: '-----BEGIN CERTIFICATE-----\nMIIBdjCCAR2gAwIBAgIQ…\n-----END CERTIFICATE-----\n',
          username: 'alice@example.com',
          groups: ['system:masters'],
          notAfter: '2026-11-21T11:00:00.000Z',
          serialNumber: '5c1f0e9a7d3b42c8a6e4f2d0b8c6a4e2',
        },
      ],
    },
  ),
)

export const CaRotationRequestSchema = named(
  'CaRotationRequest',
  Type.Object(
    { phase: CaRotationPhaseRef },
    {
      additionalProperties: false,
      description: 'Which phase of the cluster CA rotation to run.',
      examples: [{ phase: 'start' }, { phase: 'complete' }],
    },
  ),
)

// Portal login (oidc.ts): who the caller is, as the OIDC issuer says.

export const IdentitySchema = named(
  'Identity',
  Type.Object(
    {
      subject: Type.String({ description: "The issuer's `sub` for the caller." }),
      issuer: Type.String({ format: 'uri', description: 'The OIDC issuer that vouched for the caller.' }),
      groups: Type.Array(Type.String(), { description: 'From the configured groups claim.' }),
      email: Type.Optional(Type.String()),
      name: Type.Optional(Type.String()),
      authenticatedBy: StringEnum(['session', 'bearer'], {
        description: '`session`: the portal cookie; `bearer`: an OIDC access token.',
      }),
      expiresAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'The caller, as the OIDC issuer identified them, and until when.',
      examples: [
        {
          subject: 'demo',
          issuer: 'http://127.0.0.1:8081',
          groups: ['kiln:demo-admins'],
          email: 'demo@kiln.example',
          name: 'Demo User',
          authenticatedBy: 'session',
          expiresAt: '2026-11-21T18:00:00.000Z',
        },
      ],
    },
  ),
)

export const LogoutSchema = named(
  'Logout',
  Type.Object(
    {
      endSessionUrl: Type.Union([Type.String({ format: 'uri' }), Type.Null()], {
        description:
          "Navigate here to end the issuer's session too (RP-initiated logout); null when it has none.",
      }),
    },
    {
      additionalProperties: false,
      description: 'The session cookie is cleared and the session can no longer be used.',
      examples: [{ endSessionUrl: 'http://127.0.0.1:8081/session/end?client_id=kiln-portal' }],
    },
  ),
)

// Every list answers the same envelope (Page); each has its own name.

export const ProjectListSchema = Page('ProjectList', ref(ProjectSchema), 'A page of projects, oldest first.')
export const ClusterListSchema = Page(
  'ClusterList',
  ref(ClusterSchema),
  'A page of a project’s clusters, oldest first.',
)
export const TemplateListSchema = Page(
  'TemplateList',
  ref(TemplateSchema),
  'A page of template versions, oldest first.',
)
export const UpgradeTargetListSchema = Page(
  'UpgradeTargetList',
  ref(TemplateSchema),
  'A page of the template versions a cluster can be upgraded to, newest Kubernetes first.',
)
export const OperationListSchema = Page(
  'OperationList',
  ref(OperationSchema),
  'A page of operations, oldest first.',
)
export const FeatureListSchema = Page(
  'FeatureList',
  ref(FeatureSchema),
  'A page of the feature catalogue, in catalogue order.',
)
export const MachineClassListSchema = Page(
  'MachineClassList',
  ref(MachineClassSchema),
  'A page of machine classes, by name.',
)
export const KubernetesVersionListSchema = Page(
  'KubernetesVersionList',
  ref(KubernetesVersionSchema),
  'A page of Kubernetes versions, newest first.',
)
export const BackendListSchema = Page('BackendList', ref(BackendSchema), 'A page of backends, by name.')
export const NodeGroupListSchema = Page(
  'NodeGroupList',
  ref(NodeGroupSchema),
  'A page of a cluster’s node groups, oldest first.',
)
export const MachineListSchema = Page(
  'MachineList',
  ref(MachineSchema),
  'A page of the machines a cluster holds: control plane first, then by node group and position.',
)
export const CertificateAuthorityListSchema = Page(
  'CertificateAuthorityList',
  ref(CertificateAuthoritySchema),
  'A page of a cluster’s CA certificates, by purpose, then oldest generation first.',
)
