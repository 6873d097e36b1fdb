import Type from 'typebox'
import type { VersionRange } from './kubernetes-versions.ts'
import { StringEnum } from './names.ts'

/** Backend kinds Kiln knows; the driver registry is keyed by these. */
export const BackendKind = StringEnum(['simulator', 'ironic', 'capi'], {
  description: 'simulator: the embedded simulated data centre; ironic: bare metal; capi: Cluster API.',
})
export type BackendKind = Type.Static<typeof BackendKind>
export const allBackendKinds: BackendKind[] = ['simulator', 'ironic', 'capi']

const GpuValue = Type.Object(
  {
    enabled: Type.Boolean({
      description: 'Install GPU support on node groups whose machine class has GPUs.',
    }),
    mode: StringEnum(['device-plugin', 'operator'], {
      description: 'device-plugin: the NVIDIA device plugin only; operator: the NVIDIA GPU operator.',
    }),
  },
  { additionalProperties: false },
)
const IngressValue = Type.Object(
  {
    controller: StringEnum(['traefik', 'nginx', 'none'], {
      description: 'The ingress controller to run on ingress nodes.',
    }),
  },
  { additionalProperties: false },
)
const MonitoringValue = Type.Object(
  {
    enabled: Type.Boolean(),
    retentionDays: Type.Integer({ minimum: 1, maximum: 365, description: 'Prometheus retention.' }),
  },
  { additionalProperties: false },
)
const CniValue = Type.Object(
  { plugin: StringEnum(['calico', 'cilium', 'flannel']) },
  { additionalProperties: false },
)
const KubeProxyModeValue = Type.Object(
  {
    mode: StringEnum(['iptables', 'ipvs', 'none'], {
      description: 'none: no kube-proxy; the CNI replaces it (Cilium only).',
    }),
  },
  { additionalProperties: false },
)
const EnabledValue = Type.Object({ enabled: Type.Boolean() }, { additionalProperties: false })

export interface FeatureValues {
  gpu: Type.Static<typeof GpuValue>
  ingress: Type.Static<typeof IngressValue>
  monitoring: Type.Static<typeof MonitoringValue>
  cni: Type.Static<typeof CniValue>
  kubeProxyMode: Type.Static<typeof KubeProxyModeValue>
  metricsServer: Type.Static<typeof EnabledValue>
  autoscaler: Type.Static<typeof EnabledValue>
}
export type FeatureName = keyof FeatureValues
/** The features node groups may override (`nodeGroupScoped` in the catalogue). */
export type NodeGroupScopedFeature = 'gpu' | 'autoscaler'
export type PartialFeatureValues = { [K in FeatureName]?: Partial<FeatureValues[K]> }

/** A condition on one field of one feature's effective value. */
export interface FeatureCondition {
  feature: FeatureName
  field: string
  oneOf: unknown[]
}

export interface FeatureConflict {
  /** When this feature's field takes one of these values… */
  when: { field: string; oneOf: unknown[] }
  /** …this other condition must not hold. */
  conflictsWith: FeatureCondition
  reason: string
}

export interface FeatureDefinition<K extends FeatureName = FeatureName> {
  name: K
  title: string
  description: string
  schema: Type.TObject
  default: FeatureValues[K]
  /** Kubernetes versions the feature may be enabled on. */
  kubernetesVersions: VersionRange
  /** Backends that can provide it when enabled. */
  backends: BackendKind[]
  /** Whether it can change on a live cluster (otherwise only at creation). */
  mutable: boolean
  /** Whether node groups may override it; the type keeps it in step with NodeGroupScopedFeature. */
  nodeGroupScoped: K extends NodeGroupScopedFeature ? true : false
  conflicts: FeatureConflict[]
  /** Whether a value asks for something to be installed; version and backend checks apply only then. */
  isEnabled(value: FeatureValues[K]): boolean
}

type Catalogue = { [K in FeatureName]: FeatureDefinition<K> }

const everywhere: BackendKind[] = allBackendKinds

/** The typed feature catalogue: the only switches a template or cluster may set. */
export const featureCatalogue: Catalogue = {
  gpu: {
    name: 'gpu',
    title: 'GPU support',
    description:
      'NVIDIA GPU support on node groups whose machine class has GPUs (device plugin with the GPU taint toleration, or the GPU operator).',
    schema: GpuValue,
    default: { enabled: false, mode: 'device-plugin' },
    kubernetesVersions: {},
    backends: everywhere,
    mutable: true,
    nodeGroupScoped: true,
    conflicts: [],
    isEnabled: (v) => v.enabled,
  },
  ingress: {
    name: 'ingress',
    title: 'Ingress controller',
    description: 'An ingress controller on nodes with the ingress role (or on workers when there are none).',
    schema: IngressValue,
    default: { controller: 'traefik' },
    kubernetesVersions: {},
    backends: everywhere,
    mutable: true,
    nodeGroupScoped: false,
    conflicts: [],
    isEnabled: (v) => v.controller !== 'none',
  },
  monitoring: {
    name: 'monitoring',
    title: 'Monitoring',
    description: 'Prometheus with node exporters, keeping metrics for the given number of days.',
    schema: MonitoringValue,
    default: { enabled: false, retentionDays: 15 },
    kubernetesVersions: { min: '1.30' },
    backends: everywhere,
    mutable: true,
    nodeGroupScoped: false,
    conflicts: [],
    isEnabled: (v) => v.enabled,
  },
  cni: {
    name: 'cni',
    title: 'Container network',
    description: 'The CNI plugin. Chosen at creation; changing it needs a new cluster.',
    schema: CniValue,
    default: { plugin: 'calico' },
    kubernetesVersions: {},
    backends: everywhere,
    mutable: false,
    nodeGroupScoped: false,
    conflicts: [],
    isEnabled: () => true,
  },
  kubeProxyMode: {
    name: 'kubeProxyMode',
    title: 'kube-proxy mode',
    description: 'How Services are implemented on nodes. `none` lets Cilium replace kube-proxy.',
    schema: KubeProxyModeValue,
    default: { mode: 'iptables' },
    kubernetesVersions: {},
    backends: everywhere,
    mutable: false,
    nodeGroupScoped: false,
    conflicts: [
      {
        when: { field: 'mode', oneOf: ['none'] },
        conflictsWith: { feature: 'cni', field: 'plugin', oneOf: ['calico', 'flannel'] },
        reason: 'Only Cilium can replace kube-proxy; use cni.plugin=cilium or another kube-proxy mode.',
      },
    ],
    isEnabled: () => true,
  },
  metricsServer: {
    name: 'metricsServer',
    title: 'metrics-server',
    description: 'Resource metrics for `kubectl top` and the horizontal pod autoscaler.',
    schema: EnabledValue,
    default: { enabled: true },
    kubernetesVersions: {},
    backends: everywhere,
    mutable: true,
    nodeGroupScoped: false,
    conflicts: [],
    isEnabled: (v) => v.enabled,
  },
  autoscaler: {
    name: 'autoscaler',
    title: 'Cluster autoscaler',
    description:
      'Scales node groups between their minCount and maxCount. Bare metal has no spare servers to add.',
    schema: EnabledValue,
    default: { enabled: false },
    kubernetesVersions: { min: '1.31' },
    backends: ['simulator', 'capi'],
    mutable: true,
    nodeGroupScoped: true,
    conflicts: [],
    isEnabled: (v) => v.enabled,
  },
}

export const featureNames = Object.keys(featureCatalogue) as FeatureName[]

export function featureDefinition(name: FeatureName): FeatureDefinition {
  return featureCatalogue[name] as unknown as FeatureDefinition
}

/**
 * The JSON Schema of feature values, built from the catalogue so input and output cannot drift:
 * `overrides` is what a template, cluster or node group may set (every feature and field optional,
 * unset fields inherit); `effective` is what a resolved cluster or node group has (every feature
 * present, every field set).
 */
function featureValuesSchema(
  form: 'overrides' | 'effective',
  options: { nodeGroupScopedOnly?: boolean },
  description: string,
) {
  const properties: Record<string, Type.TSchema> = {}
  for (const name of featureNames) {
    const def = featureDefinition(name)
    if (options.nodeGroupScopedOnly && !def.nodeGroupScoped) continue
    const meta = { description: def.title, additionalProperties: false }
    properties[name] =
      form === 'overrides' ? Type.Optional(Type.Partial(def.schema, meta)) : { ...def.schema, ...meta }
  }
  return Type.Object(properties, { additionalProperties: false, description })
}

/** The schema of partial feature values a template, cluster or node group may set. */
export function featureOverridesSchema(options: { nodeGroupScopedOnly?: boolean } = {}) {
  return featureValuesSchema('overrides', options, 'Feature values by feature name; unset fields inherit.')
}

/** The schema of effective feature values: the cluster's (all features) or a node group's (its scoped ones). */
export function effectiveFeaturesSchema(options: { nodeGroupScopedOnly?: boolean } = {}) {
  return featureValuesSchema(
    'effective',
    options,
    options.nodeGroupScopedOnly
      ? 'The effective values of the features a node group may override, by feature name.'
      : 'The effective value of every feature, by feature name.',
  )
}
