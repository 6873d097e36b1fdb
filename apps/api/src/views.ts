import type {
  Backend,
  ClusterReadRow,
  ClusterRow,
  ClusterTemplate,
  KubernetesVersion,
  Machine,
  MachineClass,
  NodeGroup,
  Operation,
  Project,
} from '@kiln/db'
import type {
  ClusterStatus,
  FeatureValues,
  Labels,
  NodeGroupScopedFeature,
  PartialFeatureValues,
  ResolvedClusterSpec,
  ResolvedNodeGroup,
} from '@kiln/domain'
import type Type from 'typebox'
import type {
  BackendSchema,
  ClusterSchema,
  KubernetesVersionSchema,
  MachineClassSchema,
  MachineSchema,
  NodeGroupPlanSchema,
  NodeGroupSchema,
  OperationSchema,
  ProblemSchema,
  ProjectSchema,
  TemplateSchema,
} from './schemas.ts'

// Views pick fields one by one (an allow-list): a new column never leaks by accident.

const iso = (d: Date) => d.toISOString()
const isoOrNull = (d: Date | null) => (d ? d.toISOString() : null)
const dateOrNull = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : null)

export function projectView(p: Project): Type.Static<typeof ProjectSchema> {
  return {
    id: p.id,
    name: p.name,
    displayName: p.displayName,
    labels: p.labels as Labels,
    createdAt: iso(p.createdAt),
    updatedAt: iso(p.updatedAt),
  }
}

export function backendView(b: Backend): Type.Static<typeof BackendSchema> {
  return {
    id: b.id,
    name: b.name,
    kind: b.kind,
    zones: ((b.capabilities as { zones?: string[] }).zones ?? []).slice(),
    createdAt: iso(b.createdAt),
    updatedAt: iso(b.updatedAt),
  }
}

export function machineClassView(
  mc: MachineClass & { backend: Backend },
): Type.Static<typeof MachineClassSchema> {
  return {
    id: mc.id,
    name: mc.name,
    backend: mc.backend.name,
    cpu: mc.cpu,
    memoryMiB: mc.memoryMiB,
    gpuModel: mc.gpuModel,
    gpuCount: mc.gpuCount,
    zones: mc.zones,
    description: mc.description,
    labels: mc.labels as Labels,
    createdAt: iso(mc.createdAt),
    updatedAt: iso(mc.updatedAt),
  }
}

export function kubernetesVersionView(v: KubernetesVersion): Type.Static<typeof KubernetesVersionSchema> {
  return {
    version: v.version,
    lifecycle: v.lifecycle,
    releasedAt: dateOrNull(v.releasedAt),
    endOfLifeAt: dateOrNull(v.endOfLifeAt),
    createdAt: iso(v.createdAt),
    updatedAt: iso(v.updatedAt),
  }
}

export type TemplateWithRelations = ClusterTemplate & {
  backend: Backend
  project: Project | null
  k8sVersion: KubernetesVersion
}

export function templateView(t: TemplateWithRelations): Type.Static<typeof TemplateSchema> {
  return {
    id: t.id,
    name: t.name,
    version: t.version,
    project: t.project?.name ?? null,
    description: t.description,
    kubernetesVersion: t.kubernetesVersion,
    kubernetesVersionLifecycle: t.k8sVersion.lifecycle,
    backend: t.backend.name,
    controlPlane: t.controlPlane as { count: number; machineClass: string },
    nodeGroups: t.nodeGroups as Type.Static<typeof TemplateSchema>['nodeGroups'],
    features: t.features as PartialFeatureValues,
    lockedFeatures: t.lockedFeatures,
    labels: t.labels as Labels,
    image: (t.image as Type.Static<typeof TemplateSchema>['image']) ?? null,
    deprecated: t.deprecated,
    createdAt: iso(t.createdAt),
    updatedAt: iso(t.updatedAt),
  }
}

/** A node group's configuration: as planned by a dry run, and as part of the stored node group. */
export function plannedNodeGroupView(ng: ResolvedNodeGroup): Type.Static<typeof NodeGroupPlanSchema> {
  return {
    name: ng.name,
    role: ng.role,
    machineClass: ng.machineClass,
    count: ng.count,
    minCount: ng.minCount,
    maxCount: ng.maxCount,
    zones: ng.zones,
    labels: ng.labels,
    taints: ng.taints,
    maxSurge: ng.maxSurge,
    maxUnavailable: ng.maxUnavailable,
    features: ng.features as Pick<FeatureValues, NodeGroupScopedFeature>,
    provenance: ng.provenance,
  }
}

export function nodeGroupView(
  ng: Omit<NodeGroup, 'status' | 'revision' | 'clusterId'>,
): Type.Static<typeof NodeGroupSchema> {
  return {
    id: ng.id,
    ...plannedNodeGroupView(ng as unknown as ResolvedNodeGroup),
    generation: ng.generation,
    createdAt: iso(ng.createdAt),
    updatedAt: iso(ng.updatedAt),
  }
}

export function clusterSpecView(
  spec: ResolvedClusterSpec,
  nodeGroups: Omit<NodeGroup, 'status' | 'revision' | 'clusterId'>[],
) {
  return {
    kubernetesVersion: spec.kubernetesVersion,
    backend: spec.backend,
    controlPlane: spec.controlPlane,
    features: spec.features,
    nodeGroups: nodeGroups.map(nodeGroupView),
    provenance: spec.provenance,
  }
}

export function clusterView(
  c: ClusterReadRow | ClusterRow,
  projectName: string,
): Type.Static<typeof ClusterSchema> {
  const status = c.status as unknown as ClusterStatus
  return {
    id: c.id,
    name: c.name,
    project: projectName,
    labels: c.labels as Labels,
    template: { name: c.template.name, version: c.template.version },
    generation: c.generation,
    spec: clusterSpecView(c.spec as unknown as ResolvedClusterSpec, c.nodeGroups),
    status: {
      phase: status.phase,
      conditions: status.conditions,
      observedGeneration: status.observedGeneration,
      message: status.message,
      endpoint: status.endpoint ?? null,
      tlsServerName: status.tlsServerName ?? null,
      lastObservedAt: status.lastObservedAt ?? null,
    },
    activeOperationId: c.activeOperationId,
    deletionRequested: c.deletionRequested,
    expiresAt: isoOrNull(c.expiresAt),
    createdAt: iso(c.createdAt),
    updatedAt: iso(c.updatedAt),
  }
}

export function operationView(op: Operation, projectName: string): Type.Static<typeof OperationSchema> {
  return {
    id: op.id,
    kind: op.kind as Type.Static<typeof OperationSchema>['kind'],
    status: op.status,
    progress: op.progress,
    steps: op.steps as Type.Static<typeof OperationSchema>['steps'],
    error: (op.error as Type.Static<typeof ProblemSchema> | null) ?? null,
    project: projectName,
    resource: op.resource as { kind: string; id: string; name: string },
    requestedBy: op.requestedBy,
    cancelRequested: op.cancelRequested,
    createdAt: iso(op.createdAt),
    startedAt: isoOrNull(op.startedAt),
    finishedAt: isoOrNull(op.finishedAt),
    updatedAt: iso(op.updatedAt),
  }
}

export function machineView(m: Machine, nodeGroup: string | null): Type.Static<typeof MachineSchema> {
  return {
    name: m.name,
    role: m.role === 'control-plane' ? 'control-plane' : 'worker',
    nodeGroup,
    machineClass: m.machineClass,
    zone: m.zone,
    phase: m.phase as Type.Static<typeof MachineSchema>['phase'],
    externalId: m.externalId,
    kubernetesVersion: m.kubernetesVersion,
    health: m.health as Type.Static<typeof MachineSchema>['health'],
    healthReason: m.healthReason,
    unhealthySince: isoOrNull(m.unhealthySince),
    observedAt: isoOrNull(m.observedAt),
    createdAt: iso(m.createdAt),
  }
}
