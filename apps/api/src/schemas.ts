import {
  BackendKind,
  ClusterOverrides,
  ClusterPhase,
  Condition,
  ConditionStatus,
  ControlPlaneInput,
  DnsLabel,
  Labels,
  NodeGroupInput,
  NodeGroupRole,
  OperationKindSchema,
  OperationStatus,
  ProvenanceSource,
  StepStatus,
  StringEnum,
  Taint,
  VersionLifecycle,
} from '@kiln/domain'
import Type from 'typebox'

/**
 * Every named schema of the API. Each is registered once (`app.addSchema`) and referenced with
 * `ref()`, so it is one component in the OpenAPI document and one type in generated clients.
 */
const components: Record<string, Type.TSchema> = {}

function named<T extends Type.TSchema>(id: string, schema: T): T {
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

// Enums first: referenced from the resources below.
export const BackendKindRef = ref(named('BackendKind', BackendKind))
export const VersionLifecycleRef = ref(named('VersionLifecycle', VersionLifecycle))
export const NodeGroupRoleRef = ref(named('NodeGroupRole', NodeGroupRole))
export const ClusterPhaseRef = ref(named('ClusterPhase', ClusterPhase))
export const OperationStatusRef = ref(named('OperationStatus', OperationStatus))
export const OperationKindRef = ref(named('OperationKind', OperationKindSchema))
export const StepStatusRef = ref(named('StepStatus', StepStatus))
export const ProvenanceSourceRef = ref(named('ProvenanceSource', ProvenanceSource))
named('ConditionStatus', ConditionStatus)

export const Provenance = named(
  'Provenance',
  Type.Record(Type.String(), ProvenanceSourceRef, {
    description: 'JSON pointer (relative to the object it sits on) → where the effective value came from.',
    examples: [{ '/features/ingress/controller': 'template', '/features/gpu/enabled': 'cluster' }],
  }),
)

export const ProblemSchema = named(
  'Problem',
  Type.Object(
    {
      type: Type.String({ format: 'uri', examples: ['https://kiln.dev/problems/invalid-spec'] }),
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
    },
    {
      additionalProperties: true,
      description: 'An RFC 9457 problem document.',
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
    { additionalProperties: false, description: 'A tenant: clusters, templates and quotas belong to one.' },
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
    { additionalProperties: false, description: 'A kind of machine a backend offers (a flavour).' },
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
    { additionalProperties: false },
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
    { additionalProperties: false, description: 'A typed switch a template or cluster may set.' },
  ),
)

export const TaintSchema = ref(named('Taint', Taint))
export const NodeGroupInputSchema = named('NodeGroupInput', NodeGroupInput)
export const ControlPlaneInputSchema = named('ControlPlaneInput', ControlPlaneInput)
export const FeatureOverridesSchema = named('FeatureOverrides', ClusterOverrides.properties.features)

const FeatureValues = Type.Record(Type.String(), Type.Record(Type.String(), Type.Unknown()), {
  description: 'Effective feature values by feature name.',
  examples: [{ ingress: { controller: 'traefik' }, gpu: { enabled: true, mode: 'device-plugin' } }],
})

export const TemplateSchema = named(
  'ClusterTemplate',
  Type.Object(
    {
      id: Id,
      name: DnsLabel,
      version: Type.Integer({ minimum: 1 }),
      project: Type.Union([Type.String(), Type.Null()], { description: 'Owning project; null when public.' }),
      description: Type.String(),
      kubernetesVersion: Type.String(),
      kubernetesVersionLifecycle: VersionLifecycleRef,
      backend: Type.String(),
      controlPlane: Type.Object({ count: Type.Integer(), machineClass: Type.String() }),
      nodeGroups: Type.Array(ref(NodeGroupInputSchema)),
      features: Type.Record(Type.String(), Type.Record(Type.String(), Type.Unknown())),
      lockedFeatures: Type.Array(Type.String()),
      labels: Labels,
      deprecated: Type.Boolean(),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    {
      additionalProperties: false,
      description: 'A published, immutable template version. Only `deprecated` and `labels` may change.',
    },
  ),
)

export const ConditionSchema = ref(named('Condition', Condition))

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
      features: FeatureValues,
      provenance: ref(Provenance),
      generation: Type.Integer(),
      createdAt: Timestamp,
      updatedAt: Timestamp,
    },
    { additionalProperties: false, description: 'A group of identical worker machines.' },
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
      lastObservedAt: Type.Union([Timestamp, Type.Null()]),
    },
    { additionalProperties: false, description: 'What was last observed.' },
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
          features: FeatureValues,
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
    { additionalProperties: false, description: 'A Kubernetes cluster: desired `spec`, observed `status`.' },
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
    { additionalProperties: false, description: 'Asynchronous work on a resource; watch it to completion.' },
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
    { additionalProperties: false, description: 'What a cluster takes from its project’s quota.' },
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
  }),
)

export const ClusterPlanSchema = named(
  'ClusterPlan',
  Type.Object(
    {
      dryRun: Type.Literal(true),
      template: Type.Object({ name: Type.String(), version: Type.Integer(), deprecated: Type.Boolean() }),
      spec: Type.Object(
        { ...ClusterSchema.properties.spec.properties, nodeGroups: Type.Array(ref(NodeGroupPlanSchema)) },
        { additionalProperties: false },
      ),
      consumption: ref(ConsumptionSchema),
      operation: Type.Object({ kind: OperationKindRef, steps: Type.Array(Type.String()) }),
    },
    { additionalProperties: false, description: 'What a create would do, without doing it.' },
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

export const Page = <T extends Type.TSchema>(item: T, description: string) =>
  Type.Object(
    {
      items: Type.Array(item),
      nextCursor: Type.Union([Type.String(), Type.Null()], {
        description: 'Pass as ?cursor= for the next page.',
      }),
    },
    { additionalProperties: false, description },
  )

export const ListQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 })),
}
