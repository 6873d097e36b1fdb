import { sameJson } from './canonical-json.ts'
import { invalidSpec, type Violation } from './errors.ts'
import {
  type BackendKind,
  type FeatureName,
  type FeatureValues,
  featureDefinition,
  featureNames,
  type NodeGroupScopedFeature,
  type PartialFeatureValues,
} from './features.ts'
import { inVersionRange, type VersionLifecycle } from './kubernetes-versions.ts'
import type { Labels } from './names.ts'
import type {
  ClusterOverrides,
  NodeGroupInput,
  NodeGroupRole,
  Provenance,
  ProvenanceSource,
  Taint,
} from './spec.ts'

export interface MachineClassInfo {
  name: string
  backend: string
  cpu: number
  memoryMiB: number
  gpuModel: string | null
  gpuCount: number
  zones: string[]
}

export interface TemplateInfo {
  name: string
  version: number
  kubernetesVersion: string
  backend: { name: string; kind: BackendKind }
  controlPlane: { count: number; machineClass: string }
  nodeGroups: NodeGroupInput[]
  features: PartialFeatureValues
  lockedFeatures: FeatureName[]
}

export interface ResolutionContext {
  template: TemplateInfo
  kubernetesVersionLifecycle: VersionLifecycle
  /** Every machine class Kiln knows, so a class of another backend gets a precise message. */
  machineClasses: ReadonlyMap<string, MachineClassInfo>
  /**
   * Where template-sourced values point in the request being checked. For a cluster request the
   * template is not part of the body, so this is `/template`; when a template itself is validated,
   * it is the template body's own pointer.
   */
  templatePointer(path: string): string
}

export type NodeGroupFeatures = Partial<Pick<FeatureValues, NodeGroupScopedFeature>>

export interface ResolvedNodeGroup {
  name: string
  role: NodeGroupRole
  machineClass: string
  count: number
  minCount: number
  maxCount: number
  zones: string[]
  labels: Labels
  taints: Taint[]
  maxSurge: number
  maxUnavailable: number
  features: NodeGroupFeatures
  provenance: Provenance
}

export interface ResolvedClusterSpec {
  template: { name: string; version: number }
  kubernetesVersion: string
  backend: { name: string; kind: BackendKind }
  controlPlane: { count: number; machineClass: string }
  features: FeatureValues
  provenance: Provenance
}

export interface ResolvedCluster {
  spec: ResolvedClusterSpec
  nodeGroups: ResolvedNodeGroup[]
}

/** Defaults for node-group fields neither the template nor the request set. */
export const nodeGroupDefaults = {
  role: 'worker' as NodeGroupRole,
  minCount: 0,
  maxCount: 100,
  labels: {} as Labels,
  taints: [] as Taint[],
  maxSurge: 1,
  maxUnavailable: 0,
}

/** A layer of partial values and the source to credit for each value it sets. */
interface Layer<T> {
  values: Partial<T> | undefined
  source: ProvenanceSource
}

/** Merges field by field, recording in `provenance` (under `prefix`) where each field came from. */
function mergeLayers<T extends object>(
  base: T,
  baseSource: ProvenanceSource | Provenance,
  layers: Layer<T>[],
  prefix: string,
  provenance: Provenance,
): T {
  const out = { ...base } as Record<string, unknown>
  for (const key of Object.keys(base)) {
    provenance[`${prefix}/${key}`] =
      typeof baseSource === 'string' ? baseSource : (baseSource[`/${key}`] ?? 'default')
  }
  for (const layer of layers) {
    if (!layer.values) continue
    for (const [key, value] of Object.entries(layer.values)) {
      if (value === undefined) continue
      out[key] = value
      provenance[`${prefix}/${key}`] = layer.source
    }
  }
  return out as T
}

const sameValue = sameJson

/**
 * Resolves the effective configuration: catalogue defaults ← template ← cluster overrides ← node-group
 * overrides, with the source of every value, and checks every rule. Throws one `invalid-spec` error
 * that lists every violation with a pointer into the request.
 */
export function resolveCluster(ctx: ResolutionContext, overrides: ClusterOverrides): ResolvedCluster {
  const violations: Violation[] = []
  const { template } = ctx
  const provenance: Provenance = {}

  if (ctx.kubernetesVersionLifecycle === 'expired') {
    violations.push({
      pointer: ctx.templatePointer('/kubernetesVersion'),
      message: `Kubernetes ${template.kubernetesVersion} (template ${template.name}@${template.version}) is expired; choose a template with a supported version.`,
    })
  }

  const features = resolveClusterFeatures(ctx, overrides.features, provenance, violations)

  const controlPlane = mergeLayers(
    { ...template.controlPlane },
    'template',
    [{ values: overrides.controlPlane, source: 'cluster' }],
    '/controlPlane',
    provenance,
  )
  checkMachineClass(
    ctx,
    controlPlane.machineClass,
    overrides.controlPlane?.machineClass !== undefined
      ? '/controlPlane/machineClass'
      : ctx.templatePointer('/controlPlane/machineClass'),
    violations,
  )

  const requested = overrides.nodeGroups ?? []
  const seen = new Map<string, number>()
  requested.forEach((ng, i) => {
    if (seen.has(ng.name)) {
      violations.push({
        pointer: `/nodeGroups/${i}/name`,
        message: `Node group '${ng.name}' is listed twice.`,
      })
    }
    seen.set(ng.name, i)
  })

  const nodeGroups: ResolvedNodeGroup[] = []
  template.nodeGroups.forEach((tng, ti) => {
    const ri = seen.get(tng.name)
    nodeGroups.push(
      resolveNodeGroup(ctx, {
        features,
        featureProvenance: provenance,
        templateGroup: tng,
        request: ri === undefined ? undefined : requested[ri],
        pointer: (field) =>
          ri === undefined ? ctx.templatePointer(`/nodeGroups/${ti}${field}`) : `/nodeGroups/${ri}${field}`,
        violations,
      }),
    )
  })
  requested.forEach((ng, i) => {
    if (template.nodeGroups.some((t) => t.name === ng.name) || seen.get(ng.name) !== i) return
    nodeGroups.push(
      resolveNodeGroup(ctx, {
        features,
        featureProvenance: provenance,
        templateGroup: undefined,
        request: ng,
        pointer: (field) => `/nodeGroups/${i}${field}`,
        violations,
      }),
    )
  })

  checkClusterWideFeatureRules(features, nodeGroups, overrides, ctx, violations)

  if (violations.length > 0) throw invalidSpec(violations)
  return {
    spec: {
      template: { name: template.name, version: template.version },
      kubernetesVersion: template.kubernetesVersion,
      backend: template.backend,
      controlPlane,
      features,
      provenance,
    },
    nodeGroups,
  }
}

function resolveClusterFeatures(
  ctx: ResolutionContext,
  requested: PartialFeatureValues | undefined,
  provenance: Provenance,
  violations: Violation[],
): FeatureValues {
  const { template } = ctx
  const out: Record<string, unknown> = {}
  for (const name of featureNames) {
    const def = featureDefinition(name)
    const templateValue = { ...def.default, ...stripUndefined(template.features[name]) }
    const override = requested?.[name]
    if (override && template.lockedFeatures.includes(name)) {
      for (const [field, value] of Object.entries(override)) {
        if (value !== undefined && !sameValue(value, (templateValue as Record<string, unknown>)[field])) {
          violations.push({
            pointer: `/features/${name}/${field}`,
            message: `Feature '${name}' is locked by template ${template.name}@${template.version} to ${JSON.stringify(templateValue)}.`,
          })
        }
      }
    }
    const templateProvenance: Provenance = {}
    for (const field of Object.keys(def.default)) {
      templateProvenance[`/${field}`] =
        (template.features[name] as Record<string, unknown> | undefined)?.[field] !== undefined
          ? 'template'
          : 'default'
    }
    out[name] = mergeLayers(
      templateValue,
      templateProvenance,
      [{ values: override, source: 'cluster' }],
      `/features/${name}`,
      provenance,
    )
  }
  const features = out as unknown as FeatureValues

  for (const name of featureNames) {
    const def = featureDefinition(name)
    const value = features[name]
    const pointerTo = (path: string) =>
      requested?.[name] ? `/features/${name}${path}` : ctx.templatePointer(`/features/${name}${path}`)
    const pointer = pointerTo('')
    if (!def.isEnabled(value)) continue
    if (!def.backends.includes(template.backend.kind)) {
      violations.push({
        pointer,
        message: `Feature '${name}' is not available on ${template.backend.kind} backends (backend '${template.backend.name}').`,
      })
    }
    if (!inVersionRange(template.kubernetesVersion, def.kubernetesVersions)) {
      const { min, max } = def.kubernetesVersions
      violations.push({
        pointer,
        message: `Feature '${name}' needs Kubernetes ${[min && `>= ${min}`, max && `<= ${max}`].filter(Boolean).join(' and ')}; the template uses ${template.kubernetesVersion}.`,
      })
    }
    for (const conflict of def.conflicts) {
      const own = (value as Record<string, unknown>)[conflict.when.field]
      const other = (features[conflict.conflictsWith.feature] as Record<string, unknown>)[
        conflict.conflictsWith.field
      ]
      if (conflict.when.oneOf.includes(own) && conflict.conflictsWith.oneOf.includes(other)) {
        violations.push({ pointer: pointerTo(`/${conflict.when.field}`), message: conflict.reason })
      }
    }
  }
  return features
}

function stripUndefined<T extends object>(value: T | undefined): Partial<T> {
  if (!value) return {}
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

function checkMachineClass(
  ctx: ResolutionContext,
  name: string,
  pointer: string,
  violations: Violation[],
): MachineClassInfo | undefined {
  const mc = ctx.machineClasses.get(name)
  if (!mc) {
    violations.push({ pointer, message: `Machine class '${name}' does not exist.` })
    return undefined
  }
  if (mc.backend !== ctx.template.backend.name) {
    violations.push({
      pointer,
      message: `Machine class '${name}' belongs to backend '${mc.backend}', but the template uses backend '${ctx.template.backend.name}'.`,
    })
    return undefined
  }
  return mc
}

export interface NodeGroupResolutionInput {
  features: FeatureValues
  /** The cluster's provenance, so inherited feature values keep their source. */
  featureProvenance: Provenance
  templateGroup: NodeGroupInput | undefined
  request: NodeGroupInput | undefined
  /** Maps a field path in this node group to a pointer into the request being checked. */
  pointer(field: string): string
  violations: Violation[]
}

/** Resolves one node group and checks its own rules (used for cluster creation and node-group CRUD). */
export function resolveNodeGroup(ctx: ResolutionContext, input: NodeGroupResolutionInput): ResolvedNodeGroup {
  const { templateGroup, request, violations, pointer } = input
  const name = (request ?? templateGroup)!.name
  const provenance: Provenance = {}
  const sourceOf = (field: keyof NodeGroupInput): string => pointer(`/${field}`)

  const { features: _tf, name: _tn, ...templateFields } = templateGroup ?? { name }
  const { features: _rf, name: _rn, ...requestFields } = request ?? { name }
  // Fresh containers per group: results must never share (and so leak) mutable defaults.
  const base = {
    ...nodeGroupDefaults,
    labels: {} as Labels,
    taints: [] as Taint[],
    machineClass: '',
    count: 0,
    zones: [] as string[],
  }
  const merged = mergeLayers(
    base,
    'default',
    [
      { values: structuredClone(templateFields), source: 'template' },
      { values: requestFields, source: 'nodeGroup' },
    ],
    '',
    provenance,
  )

  if (!templateGroup) {
    for (const field of ['machineClass', 'count'] as const) {
      if (request?.[field] === undefined) {
        violations.push({
          pointer: pointer(''),
          message: `Node group '${name}' is not in the template, so '${field}' is required.`,
        })
      }
    }
  }

  const mc = merged.machineClass
    ? checkMachineClass(ctx, merged.machineClass, sourceOf('machineClass'), violations)
    : undefined
  if (mc && merged.zones.length === 0) {
    merged.zones = [...mc.zones]
  } else if (mc) {
    merged.zones.forEach((zone, j) => {
      if (!mc.zones.includes(zone)) {
        violations.push({
          pointer: pointer(`/zones/${j}`),
          message: `Machine class '${mc.name}' is not offered in zone '${zone}' (it is in ${mc.zones.join(', ')}).`,
        })
      }
    })
  }
  if (merged.minCount > merged.maxCount) {
    violations.push({
      pointer: sourceOf('minCount'),
      message: `minCount ${merged.minCount} is greater than maxCount ${merged.maxCount}.`,
    })
  } else if (merged.count < merged.minCount || merged.count > merged.maxCount) {
    violations.push({
      pointer: sourceOf('count'),
      message: `count ${merged.count} is outside [${merged.minCount}, ${merged.maxCount}] for node group '${name}'.`,
    })
  }
  if (merged.maxSurge === 0 && merged.maxUnavailable === 0) {
    violations.push({
      pointer: sourceOf('maxSurge'),
      message: 'maxSurge and maxUnavailable cannot both be 0: a rolling replace could never make progress.',
    })
  }

  const features: NodeGroupFeatures = {}
  for (const featureName of ['gpu', 'autoscaler'] as const) {
    const clusterValue = input.features[featureName]
    const inherited =
      featureName === 'gpu'
        ? { ...clusterValue, enabled: clusterValue.enabled && (mc?.gpuCount ?? 0) > 0 }
        : // A fixed-size group has nothing to autoscale, so it does not inherit the switch.
          { ...clusterValue, enabled: clusterValue.enabled && merged.minCount < merged.maxCount }
    const inheritedProvenance: Provenance = {}
    for (const field of Object.keys(inherited)) {
      inheritedProvenance[`/${field}`] =
        input.featureProvenance[`/features/${featureName}/${field}`] ?? 'default'
    }
    const requestOverride = request?.features?.[featureName]
    if (requestOverride && ctx.template.lockedFeatures.includes(featureName)) {
      for (const [field, value] of Object.entries(requestOverride)) {
        // A value the group has anyway changes nothing: a re-resolved live cluster hands its groups'
        // effective values back (a CPU group's gpu.enabled=false under a template that locks gpu on).
        if (
          value !== undefined &&
          !sameValue(value, (clusterValue as Record<string, unknown>)[field]) &&
          !sameValue(value, (inherited as Record<string, unknown>)[field])
        ) {
          violations.push({
            pointer: pointer(`/features/${featureName}/${field}`),
            message: `Feature '${featureName}' is locked by template ${ctx.template.name}@${ctx.template.version}.`,
          })
        }
      }
    }
    const value = mergeLayers(
      inherited as Record<string, unknown>,
      inheritedProvenance,
      [
        { values: templateGroup?.features?.[featureName], source: 'template' },
        { values: requestOverride, source: 'nodeGroup' },
      ],
      `/features/${featureName}`,
      provenance,
    )
    ;(features as Record<string, unknown>)[featureName] = value
  }

  const gpuPointer = pointer('/features/gpu/enabled')
  const gpuSetOnGroup =
    request?.features?.gpu?.enabled !== undefined || templateGroup?.features?.gpu?.enabled !== undefined
  if (features.gpu?.enabled && gpuSetOnGroup) {
    if (mc && mc.gpuCount === 0) {
      violations.push({ pointer: gpuPointer, message: `Machine class '${mc.name}' has no GPUs.` })
    } else if (!input.features.gpu.enabled) {
      violations.push({
        pointer: gpuPointer,
        message: 'GPU support is off for the cluster; enable /features/gpu/enabled first.',
      })
    }
  }
  if (features.autoscaler?.enabled) {
    if (!input.features.autoscaler.enabled) {
      violations.push({
        pointer: pointer('/features/autoscaler/enabled'),
        message: 'The cluster autoscaler is off for the cluster; enable /features/autoscaler/enabled first.',
      })
    } else if (merged.minCount === merged.maxCount) {
      violations.push({
        pointer: sourceOf('maxCount'),
        message: `Autoscaling node group '${name}' needs minCount < maxCount.`,
      })
    }
  }

  return { ...merged, name, features, provenance }
}

function checkClusterWideFeatureRules(
  features: FeatureValues,
  nodeGroups: ResolvedNodeGroup[],
  overrides: ClusterOverrides,
  ctx: ResolutionContext,
  violations: Violation[],
) {
  if (features.gpu.enabled && !nodeGroups.some((ng) => ng.features.gpu?.enabled)) {
    violations.push({
      pointer:
        overrides.features?.gpu?.enabled !== undefined
          ? '/features/gpu/enabled'
          : ctx.templatePointer('/features/gpu'),
      message: 'GPU support is enabled, but no node group uses a machine class with GPUs.',
    })
  }
  if (
    features.autoscaler.enabled &&
    !nodeGroups.some((ng) => ng.features.autoscaler?.enabled && ng.minCount < ng.maxCount)
  ) {
    violations.push({
      pointer:
        overrides.features?.autoscaler?.enabled !== undefined
          ? '/features/autoscaler/enabled'
          : ctx.templatePointer('/features/autoscaler'),
      message: 'The cluster autoscaler is enabled, but no node group has minCount < maxCount.',
    })
  }
}

/** Checks a live feature change: features that are not `mutable` cannot change after creation. */
export function checkFeatureChange(before: FeatureValues, after: FeatureValues): Violation[] {
  const violations: Violation[] = []
  for (const name of featureNames) {
    const def = featureDefinition(name)
    if (!def.mutable && !sameValue(before[name], after[name])) {
      violations.push({
        pointer: `/features/${name}`,
        message: `Feature '${name}' cannot change on a live cluster; it is chosen at creation.`,
      })
    }
  }
  return violations
}
