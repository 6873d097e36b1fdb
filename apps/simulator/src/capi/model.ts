import { createHash, randomBytes } from 'node:crypto'
import type { Json, KubeObject, OwnerReference } from './client.ts'
import type { Condition, LegacyCondition } from './conditions.ts'

// The fields of Cluster API objects the stand-in reads and writes (v1beta2; CAPO v1beta1).

export const label = {
  clusterName: 'cluster.x-k8s.io/cluster-name',
  controlPlane: 'cluster.x-k8s.io/control-plane',
  controlPlaneName: 'cluster.x-k8s.io/control-plane-name',
  deploymentName: 'cluster.x-k8s.io/deployment-name',
  topologyOwned: 'topology.cluster.x-k8s.io/owned',
  topologyDeploymentName: 'topology.cluster.x-k8s.io/deployment-name',
} as const

export const annotation = {
  deleteMachine: 'cluster.x-k8s.io/delete-machine',
  paused: 'cluster.x-k8s.io/paused',
  clonedFromName: 'cluster.x-k8s.io/cloned-from-name',
  clonedFromGroupKind: 'cluster.x-k8s.io/cloned-from-groupkind',
} as const

export const finalizer = {
  cluster: 'cluster.cluster.x-k8s.io',
  machine: 'machine.cluster.x-k8s.io',
} as const

export interface Ref {
  apiGroup: string
  kind: string
  name: string
}

export interface TemplateRef {
  apiVersion: string
  kind: string
  name: string
}

export interface Taint {
  key: string
  value?: string
  effect: string
  propagation: string
}

export interface Metadata {
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

export interface TopologyMachineDeployment {
  class: string
  name: string
  replicas?: number
  failureDomain?: string
  metadata?: Metadata
  taints?: Taint[]
}

export interface ClusterSpec {
  topology?: {
    classRef: { name: string; namespace?: string }
    version: string
    controlPlane?: { replicas?: number; metadata?: Metadata }
    workers?: { machineDeployments?: TopologyMachineDeployment[] }
  }
  infrastructureRef?: Ref
  controlPlaneRef?: Ref
  controlPlaneEndpoint?: { host: string; port: number }
  paused?: boolean
}

export interface ClusterStatus {
  phase?: string
  conditions?: Condition[]
  initialization?: { infrastructureProvisioned?: boolean; controlPlaneInitialized?: boolean }
}

export interface ClusterClassSpec {
  infrastructure: { templateRef: TemplateRef }
  controlPlane: {
    templateRef: TemplateRef
    machineInfrastructure?: { templateRef: TemplateRef }
    metadata?: Metadata
  }
  workers?: {
    machineDeployments?: {
      class: string
      bootstrap: { templateRef: TemplateRef }
      infrastructure: { templateRef: TemplateRef }
      metadata?: Metadata
      failureDomain?: string
    }[]
  }
}

export interface MachineTemplateSpec {
  clusterName: string
  version?: string
  failureDomain?: string
  bootstrap: { configRef?: Ref; dataSecretName?: string }
  infrastructureRef: Ref
  providerID?: string
  taints?: Taint[]
  deletion?: Json
}

export interface MachineDeploymentSpec {
  clusterName: string
  replicas?: number
  selector: { matchLabels?: Record<string, string> }
  template: { metadata?: Metadata; spec: MachineTemplateSpec }
  rollout?: Json
}

export interface ReplicaStatus {
  replicas?: number
  readyReplicas?: number
  availableReplicas?: number
  upToDateReplicas?: number
  conditions?: Condition[]
}

export interface KubeadmControlPlaneSpec {
  replicas?: number
  version: string
  kubeadmConfigSpec?: Json
  machineTemplate: {
    metadata?: Metadata
    spec: { infrastructureRef: Ref; taints?: Taint[]; deletion?: Json }
  }
}

export interface KubeadmControlPlaneStatus extends ReplicaStatus {
  version?: string
  initialization?: { controlPlaneInitialized?: boolean }
}

export interface MachineStatus {
  phase?: string
  nodeRef?: { name: string }
  conditions?: Condition[]
  addresses?: { type: string; address: string }[]
  lastUpdated?: string
}

export interface OpenStackMachineStatus {
  ready?: boolean
  instanceID?: string
  instanceState?: string
  addresses?: { type: string; address: string }[]
  failureReason?: string
  failureMessage?: string
  conditions?: LegacyCondition[]
  initialization?: { provisioned?: boolean }
}

export interface MachineHealthCheckSpec {
  clusterName: string
  selector: {
    matchLabels?: Record<string, string>
    matchExpressions?: { key: string; operator: string; values?: string[] }[]
  }
  checks?: {
    nodeStartupTimeoutSeconds?: number
    unhealthyNodeConditions?: { type: string; status: string; timeoutSeconds: number }[]
  }
  remediation?: { triggerIf?: { unhealthyLessThanOrEqualTo?: number | string } }
}

export type Cluster = KubeObject<ClusterSpec, ClusterStatus>
export type ClusterClass = KubeObject<ClusterClassSpec>
export type Machine = KubeObject<MachineTemplateSpec, MachineStatus>
export type MachineDeployment = KubeObject<MachineDeploymentSpec, ReplicaStatus & Json>
export type KubeadmControlPlane = KubeObject<KubeadmControlPlaneSpec, KubeadmControlPlaneStatus>
export type OpenStackMachine = KubeObject<
  Json & { flavor?: string; providerID?: string },
  OpenStackMachineStatus
>
export type MachineHealthCheck = KubeObject<MachineHealthCheckSpec, Json>

export const controllerOf = (object: KubeObject<unknown, unknown>) =>
  object.metadata.ownerReferences?.find((r) => r.controller)

export const ownerReference = (owner: KubeObject<unknown, unknown>): OwnerReference => ({
  apiVersion: owner.apiVersion,
  kind: owner.kind,
  name: owner.metadata.name,
  uid: owner.metadata.uid!,
  controller: true,
  blockOwnerDeletion: true,
})

/** Cluster API's pause: a Cluster's spec.paused, or the paused annotation on any object. */
export const isPaused = (object: KubeObject<unknown, unknown>) =>
  (object.spec as { paused?: boolean } | undefined)?.paused === true ||
  object.metadata.annotations?.[annotation.paused] !== undefined

export const isDeleting = (object: KubeObject<unknown, unknown>) => Boolean(object.metadata.deletionTimestamp)

// The alphabet Kubernetes' and Cluster API's random name suffixes use (no vowels, no look-alikes).
const alphabet = 'bcdfghjklmnpqrstvwxz2456789'

/** A random five-character name suffix, as generateName and Cluster API give. */
export const randomSuffix = () => [...randomBytes(5)].map((b) => alphabet[b % alphabet.length]).join('')

/**
 * A suffix that looks random but is the same for the same input: an object the topology controller
 * creates gets the same name on every attempt, so a retry after a partial failure does not duplicate it.
 */
export const stableSuffix = (input: string) =>
  [...createHash('sha256').update(input).digest().subarray(0, 5)]
    .map((b) => alphabet[b % alphabet.length])
    .join('')

/** A label value (at most 63 characters): a longer name is cut and keeps a hash, as Cluster API does. */
export const labelValue = (value: string) =>
  value.length <= 63 ? value : `${value.slice(0, 57)}-${stableSuffix(value)}`

/** Deep equality for JSON, ignoring key order (the API server may store keys in another order). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false
    return a.every((item, i) => sameJson(item, b[i]))
  }
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  const left = Object.entries(a).filter(([, v]) => v !== undefined)
  const right = Object.entries(b).filter(([, v]) => v !== undefined)
  if (left.length !== right.length) return false
  return left.every(([k, v]) => sameJson(v, (b as Json)[k]))
}

/** Whether every field of `wanted` is already in `live` (fields only `live` has, e.g. defaults, are fine). */
export function alreadyHas(live: unknown, wanted: unknown): boolean {
  if (wanted === undefined) return true
  if (Array.isArray(wanted)) return sameJson(live, wanted)
  if (typeof wanted !== 'object' || wanted === null) return live === wanted
  if (typeof live !== 'object' || live === null || Array.isArray(live)) return false
  return Object.entries(wanted).every(([k, v]) => alreadyHas((live as Json)[k], v))
}

/** Drops empty arrays and undefined fields: optional lists in Cluster API's schemas have minItems 1. */
export function compact<T>(value: T): T {
  if (Array.isArray(value)) return value.map(compact) as T
  if (typeof value !== 'object' || value === null) return value
  const result: Json = {}
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) continue
    result[k] = compact(v)
  }
  return result as T
}

export function matchesSelector(
  labels: Record<string, string> | undefined,
  selector: MachineHealthCheckSpec['selector'],
): boolean {
  const have = labels ?? {}
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (have[k] !== v) return false
  for (const e of selector.matchExpressions ?? []) {
    const value = have[e.key]
    const inValues = value !== undefined && (e.values ?? []).includes(value)
    if (e.operator === 'In' && !inValues) return false
    if (e.operator === 'NotIn' && inValues) return false
    if (e.operator === 'Exists' && value === undefined) return false
    if (e.operator === 'DoesNotExist' && value !== undefined) return false
  }
  return true
}
