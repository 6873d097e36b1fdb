import { createHash } from 'node:crypto'
import type { KubeObject } from './store.ts'

// What the controllers and kubelets of a real cluster would make of the stored workloads: pods
// for Deployments, ReplicaSets, StatefulSets, DaemonSets and Jobs (whose pods run to completion at
// once, so a Job is Complete as soon as its pods are scheduled), scheduled onto the nodes that admit
// them (node selector, required node affinity, taints and tolerations), reported Running, and the
// workloads' status to match. Computed on read from the stored objects and the nodes, so there is
// no controller loop to fall behind and nothing to clean up when a workload goes.

type Labels = Record<string, string>

export interface SchedulableNode {
  name: string
  labels: Labels
  taints: { key: string; value?: string; effect: string }[]
  ready: boolean
}

interface Toleration {
  key?: string
  operator?: string
  value?: string
  effect?: string
}

interface NodeSelectorRequirement {
  key: string
  operator: string
  values?: string[]
}

interface PodSpec {
  nodeSelector?: Labels
  tolerations?: Toleration[]
  affinity?: {
    nodeAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: {
        nodeSelectorTerms?: { matchExpressions?: NodeSelectorRequirement[] }[]
      }
    }
  }
  containers?: { name: string; image?: string }[]
  initContainers?: unknown[]
  nodeName?: string
}

interface PodTemplate {
  metadata?: { labels?: Labels; annotations?: Record<string, string> }
  spec?: PodSpec
}

const record = (value: unknown): Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {}

const specOf = (o: KubeObject) =>
  record(o.spec) as {
    replicas?: number
    template?: PodTemplate
    selector?: unknown
    completions?: number
    suspend?: boolean
  }

const hashAlphabet = 'bcdfghjklmnpqrstvwxz2456789'

/** Kubernetes-looking random-but-stable suffixes (the alphabet of its name generator). */
function suffix(input: string, length: number): string {
  const digest = createHash('sha256').update(input).digest()
  let out = ''
  for (let i = 0; i < length; i++) out += hashAlphabet[digest[i]! % hashAlphabet.length]
  return out
}

const uidOf = (input: string) => {
  const h = createHash('sha256').update(input).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
}

function tolerates(tolerations: Toleration[], taint: SchedulableNode['taints'][number]): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false
    if (t.operator === 'Exists') return !t.key || t.key === taint.key
    return t.key === taint.key && (t.value ?? '') === (taint.value ?? '')
  })
}

function requirementHolds(labels: Labels, r: NodeSelectorRequirement): boolean {
  const value = labels[r.key]
  const values = r.values ?? []
  switch (r.operator) {
    case 'In':
      return value !== undefined && values.includes(value)
    case 'NotIn':
      return value === undefined || !values.includes(value)
    case 'Exists':
      return value !== undefined
    case 'DoesNotExist':
      return value === undefined
    case 'Gt':
      return value !== undefined && Number(value) > Number(values[0])
    case 'Lt':
      return value !== undefined && Number(value) < Number(values[0])
    default:
      return false
  }
}

/** Whether the scheduler would place a pod with this spec on this node. */
export function admits(node: SchedulableNode, spec: PodSpec): boolean {
  for (const [key, value] of Object.entries(spec.nodeSelector ?? {}))
    if (node.labels[key] !== value) return false
  const terms = spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms
  if (terms && terms.length > 0) {
    const anyTerm = terms.some((term) =>
      (term.matchExpressions ?? []).every((r) => requirementHolds(node.labels, r)),
    )
    if (!anyTerm) return false
  }
  return node.taints
    .filter((t) => t.effect === 'NoSchedule' || t.effect === 'NoExecute')
    .every((t) => tolerates(spec.tolerations ?? [], t))
}

function templateHash(template: PodTemplate | undefined): string {
  return suffix(JSON.stringify(template ?? {}), 10)
}

function podStatus(
  name: string,
  namespace: string,
  spec: PodSpec,
  node: SchedulableNode | undefined,
  created: string,
  completed = false,
): Record<string, unknown> {
  const ready = node?.ready === true
  const ip = createHash('sha256').update(`${namespace}/${name}`).digest()
  const podIP = `10.244.${ip[0]}.${(ip[1]! % 254) + 1}`
  if (!node)
    return {
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: '0 nodes are available: no node matches the pod’s node selector, affinity or tolerations.',
          lastTransitionTime: created,
        },
      ],
      qosClass: 'BestEffort',
    }
  // A Job's pod has run to completion; every other pod runs (ready or not yet).
  const containerId = (container: string) =>
    `containerd://${createHash('sha256').update(`${namespace}/${name}/${container}`).digest('hex')}`
  return {
    phase: completed ? 'Succeeded' : 'Running',
    conditions: ['Initialized', 'Ready', 'ContainersReady', 'PodScheduled'].map((type) => {
      const always = type === 'Initialized' || type === 'PodScheduled'
      return {
        type,
        status: always || (!completed && ready) ? 'True' : 'False',
        ...(completed && !always ? { reason: 'PodCompleted' } : {}),
        lastTransitionTime: created,
      }
    }),
    hostIP: '192.168.0.1',
    podIP,
    podIPs: [{ ip: podIP }],
    startTime: created,
    containerStatuses: (spec.containers ?? []).map((c) => ({
      name: c.name,
      image: c.image ?? '',
      imageID: `${c.image ?? ''}@sha256:${suffix(c.image ?? '', 16)}`,
      ...(completed ? {} : { containerID: containerId(c.name) }),
      ready: !completed && ready,
      started: !completed && ready,
      restartCount: 0,
      state: completed
        ? { terminated: { exitCode: 0, reason: 'Completed', startedAt: created, finishedAt: created } }
        : { running: { startedAt: created } },
    })),
    qosClass: 'BestEffort',
  }
}

function pod(
  owner: KubeObject,
  name: string,
  template: PodTemplate,
  node: SchedulableNode | undefined,
  extraLabels: Labels,
  completed = false,
): KubeObject {
  const namespace = String(owner.metadata.namespace ?? 'default')
  const spec = template.spec ?? {}
  const created = String(owner.metadata.creationTimestamp ?? new Date(0).toISOString())
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      uid: uidOf(`${String(owner.metadata.uid)}/${name}`),
      creationTimestamp: created,
      labels: { ...(template.metadata?.labels ?? {}), ...extraLabels },
      ...(template.metadata?.annotations ? { annotations: template.metadata.annotations } : {}),
      ownerReferences: [
        {
          apiVersion: String(owner.apiVersion),
          kind: String(owner.kind),
          name: owner.metadata.name,
          uid: String(owner.metadata.uid),
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: { ...spec, ...(node ? { nodeName: node.name } : {}) },
    status: podStatus(name, namespace, spec, node, created, completed && node !== undefined),
  }
}

/** A pod created directly: the scheduler binds it (unless it names its node) and the kubelet runs it. */
export function scheduledPod(stored: KubeObject, nodes: SchedulableNode[]): KubeObject {
  const spec = (stored.spec ?? {}) as PodSpec
  const node = spec.nodeName
    ? nodes.find((n) => n.name === spec.nodeName)
    : placeAll(nodes, spec, 1, stored.metadata.name)[0]
  const namespace = String(stored.metadata.namespace ?? 'default')
  const created = String(stored.metadata.creationTimestamp ?? new Date(0).toISOString())
  return {
    ...stored,
    spec: { ...spec, ...(node ? { nodeName: node.name } : {}) },
    status: podStatus(stored.metadata.name, namespace, spec, node, created),
  }
}

/** Round-robin over the admitting nodes, ready ones first, the way a spreading scheduler would. */
function placeAll(nodes: SchedulableNode[], spec: PodSpec, count: number, seed: string) {
  const candidates = nodes
    .filter((n) => admits(n, spec))
    .sort((a, b) => Number(b.ready) - Number(a.ready) || a.name.localeCompare(b.name))
  const offset = candidates.length === 0 ? 0 : (createHash('sha256').update(seed).digest()[0] ?? 0)
  return Array.from({ length: count }, (_, i) =>
    candidates.length === 0 ? undefined : candidates[(i + offset) % candidates.length],
  )
}

/** The pods the controllers would run for one workload. */
export function podsOf(workload: KubeObject, nodes: SchedulableNode[]): KubeObject[] {
  const spec = specOf(workload)
  const template = spec.template ?? {}
  const podSpec = template.spec ?? {}
  const base = workload.metadata.name
  switch (workload.kind) {
    case 'DaemonSet':
      return nodes
        .filter((n) => admits(n, podSpec))
        .map((n) =>
          pod(workload, `${base}-${suffix(`${base}/${n.name}`, 5)}`, template, n, {
            'controller-revision-hash': templateHash(template),
            'pod-template-generation': String(workload.metadata.generation ?? 1),
          }),
        )
    case 'StatefulSet': {
      const replicas = spec.replicas ?? 1
      return placeAll(nodes, podSpec, replicas, base).map((n, i) =>
        pod(workload, `${base}-${i}`, template, n, {
          'controller-revision-hash': `${base}-${templateHash(template)}`,
          'apps.kubernetes.io/pod-index': String(i),
          'statefulset.kubernetes.io/pod-name': `${base}-${i}`,
        }),
      )
    }
    case 'Deployment':
    case 'ReplicaSet': {
      const replicas = spec.replicas ?? 1
      const hash = templateHash(template)
      const prefix = workload.kind === 'Deployment' ? `${base}-${hash}` : base
      return placeAll(nodes, podSpec, replicas, base).map((n, i) =>
        pod(workload, `${prefix}-${suffix(`${prefix}/${i}`, 5)}`, template, n, {
          'pod-template-hash': hash,
        }),
      )
    }
    case 'Job': {
      if (spec.suspend === true) return []
      const uid = String(workload.metadata.uid)
      return placeAll(nodes, podSpec, spec.completions ?? 1, base).map((n, i) =>
        pod(
          workload,
          `${base}-${suffix(`${base}/${i}`, 5)}`,
          template,
          n,
          {
            'batch.kubernetes.io/controller-uid': uid,
            'batch.kubernetes.io/job-name': base,
            'controller-uid': uid,
            'job-name': base,
          },
          true,
        ),
      )
    }
    default:
      return []
  }
}

/** The status the job controller reports: Complete once every pod it needs has Succeeded. */
export function jobStatus(job: KubeObject, pods: KubeObject[]): Record<string, unknown> {
  if (specOf(job).suspend === true) return {}
  const created = String(job.metadata.creationTimestamp ?? new Date(0).toISOString())
  const succeeded = pods.filter((p) => (p.status as { phase?: string }).phase === 'Succeeded').length
  const wanted = specOf(job).completions ?? 1
  if (succeeded < wanted)
    return { startTime: created, active: pods.length - succeeded, succeeded, ready: 0, terminating: 0 }
  const condition = (type: string, reason: string, message: string) => ({
    type,
    status: 'True',
    reason,
    message,
    lastProbeTime: created,
    lastTransitionTime: created,
  })
  return {
    startTime: created,
    completionTime: created,
    succeeded,
    ready: 0,
    terminating: 0,
    uncountedTerminatedPods: {},
    conditions: [
      condition('SuccessCriteriaMet', 'CompletionsReached', 'Reached expected number of succeeded pods'),
      condition('Complete', 'CompletionsReached', 'Reached expected number of succeeded pods'),
    ],
  }
}

const readyCount = (pods: KubeObject[]) =>
  pods
    .filter((p) =>
      (p.status as { containerStatuses?: { ready: boolean }[] }).containerStatuses?.every((c) => c.ready),
    )
    .filter((p) => (p.status as { phase: string }).phase === 'Running').length

/** The status a workload's controller would report, given the pods it runs. */
export function workloadStatus(workload: KubeObject, pods: KubeObject[]): Record<string, unknown> {
  const generation = Number(workload.metadata.generation ?? 1)
  const ready = readyCount(pods)
  const desired = workload.kind === 'DaemonSet' ? pods.length : (specOf(workload).replicas ?? 1)
  const created = String(workload.metadata.creationTimestamp ?? new Date(0).toISOString())
  switch (workload.kind) {
    case 'DaemonSet':
      return {
        currentNumberScheduled: pods.length,
        desiredNumberScheduled: desired,
        numberMisscheduled: 0,
        numberReady: ready,
        numberAvailable: ready,
        ...(desired - ready > 0 ? { numberUnavailable: desired - ready } : {}),
        updatedNumberScheduled: pods.length,
        observedGeneration: generation,
      }
    case 'StatefulSet': {
      const revision = `${workload.metadata.name}-${templateHash(specOf(workload).template)}`
      return {
        replicas: pods.length,
        readyReplicas: ready,
        currentReplicas: pods.length,
        updatedReplicas: pods.length,
        availableReplicas: ready,
        currentRevision: revision,
        updateRevision: revision,
        collisionCount: 0,
        observedGeneration: generation,
      }
    }
    case 'ReplicaSet':
      return {
        replicas: pods.length,
        fullyLabeledReplicas: pods.length,
        readyReplicas: ready,
        availableReplicas: ready,
        observedGeneration: generation,
      }
    default: {
      const available = ready >= desired
      const hash = templateHash(specOf(workload).template)
      return {
        observedGeneration: generation,
        replicas: pods.length,
        updatedReplicas: pods.length,
        readyReplicas: ready,
        availableReplicas: ready,
        ...(desired - ready > 0 ? { unavailableReplicas: desired - ready } : {}),
        conditions: [
          {
            type: 'Available',
            status: available ? 'True' : 'False',
            reason: available ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable',
            message: available
              ? 'Deployment has minimum availability.'
              : 'Deployment does not have minimum availability.',
            lastUpdateTime: created,
            lastTransitionTime: created,
          },
          {
            type: 'Progressing',
            status: 'True',
            reason: 'NewReplicaSetAvailable',
            message: `ReplicaSet "${workload.metadata.name}-${hash}" has successfully progressed.`,
            lastUpdateTime: created,
            lastTransitionTime: created,
          },
        ],
      }
    }
  }
}

export const workloadKinds = new Set(['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet'])
