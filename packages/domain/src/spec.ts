import Type from 'typebox'
import { featureOverridesSchema, type PartialFeatureValues } from './features.ts'
import { DnsLabel, Labels, StringEnum } from './names.ts'

export const NodeGroupRole = StringEnum(['worker', 'ingress', 'infra'], {
  description:
    'worker: general workloads; ingress: runs the ingress controller; infra: monitoring and other add-ons.',
})
export type NodeGroupRole = Type.Static<typeof NodeGroupRole>

export const Taint = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 253 }),
    value: Type.Optional(Type.String({ maxLength: 63 })),
    effect: StringEnum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']),
  },
  { additionalProperties: false },
)
export type Taint = Type.Static<typeof Taint>

const count = (description: string) => Type.Integer({ minimum: 0, maximum: 1000, description })

/** The node-group fields a template or a request may set; all optional so overrides can be partial. */
const nodeGroupFields = {
  role: Type.Optional(NodeGroupRole),
  machineClass: Type.Optional(Type.String({ minLength: 1, maxLength: 63, examples: ['m1.large'] })),
  count: Type.Optional(count('Desired number of machines.')),
  minCount: Type.Optional(count('Lower bound for resizes and the autoscaler.')),
  maxCount: Type.Optional(count('Upper bound for resizes and the autoscaler.')),
  zones: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 63 }), { maxItems: 16, uniqueItems: true }),
  ),
  labels: Type.Optional(Labels),
  taints: Type.Optional(Type.Array(Taint, { maxItems: 32 })),
  maxSurge: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 100,
      description: 'Extra machines allowed during a rolling replace.',
    }),
  ),
  maxUnavailable: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 100,
      description: 'Machines allowed down during a rolling replace.',
    }),
  ),
  features: Type.Optional(
    Type.Unsafe<Pick<PartialFeatureValues, 'gpu' | 'autoscaler'>>(
      featureOverridesSchema({ nodeGroupScopedOnly: true }),
    ),
  ),
}

/** A node group as a template declares it, or as a request adds or overrides it (matched by name). */
export const NodeGroupInput = Type.Object(
  { name: DnsLabel, ...nodeGroupFields },
  { additionalProperties: false },
)
export type NodeGroupInput = Type.Static<typeof NodeGroupInput>

export const ControlPlaneInput = Type.Object(
  {
    count: Type.Optional(
      Type.Integer({ enum: [1, 3, 5], description: 'Control-plane machines; odd, for etcd quorum.' }),
    ),
    machineClass: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
  },
  { additionalProperties: false },
)
export type ControlPlaneInput = Type.Static<typeof ControlPlaneInput>

/** What a cluster request may change relative to its template. */
export const ClusterOverrides = Type.Object(
  {
    controlPlane: Type.Optional(ControlPlaneInput),
    features: Type.Optional(Type.Unsafe<PartialFeatureValues>(featureOverridesSchema())),
    nodeGroups: Type.Optional(Type.Array(NodeGroupInput, { maxItems: 32 })),
  },
  { additionalProperties: false },
)
export type ClusterOverrides = Type.Static<typeof ClusterOverrides>

export const ProvenanceSource = StringEnum(['default', 'template', 'cluster', 'nodeGroup'], {
  description:
    'Where an effective value came from: the feature catalogue default, the template, the cluster request, or the node group.',
})
export type ProvenanceSource = Type.Static<typeof ProvenanceSource>
/** JSON pointer (relative to the object it sits on) → source of the value there. */
export type Provenance = Record<string, ProvenanceSource>
