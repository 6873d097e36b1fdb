import Type from 'typebox'
import { StringEnum } from './names.ts'

export const ConditionStatus = StringEnum(['True', 'False', 'Unknown'], {})

export const Condition = Type.Object(
  {
    type: Type.String({
      description:
        'Ready, Progressing, SpecApplied (False, e.g. reason Cancelled, while what is built differs from the spec: the message names the difference), ControlPlaneAvailable, MachinesReady (Unknown while the backend does not answer), BackendReachable (False while the backend cannot report on the cluster’s machines: health checks and repairs wait), Deleting, CertificateAuthorityRotating. Clients should ignore types they do not know.',
      examples: ['Ready'],
    }),
    status: ConditionStatus,
    reason: Type.String({ description: 'A CamelCase, machine-readable reason.', examples: ['Provisioning'] }),
    message: Type.String(),
    lastTransitionTime: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
)
export type Condition = Type.Static<typeof Condition>

export const ClusterPhase = StringEnum(
  ['Pending', 'Provisioning', 'Ready', 'Updating', 'Degraded', 'Failed', 'Deleting'],
  {
    description:
      'A summary for people, derived from the conditions; code reads the conditions. `Pending`: accepted, the create has not started. `Provisioning`: the create is running. `Ready`: built as the spec asks and healthy. `Updating`: a change is running (or a built cluster waits for one). `Degraded`: built (or holding machines), but not ready: unhealthy machines, or a change that failed or was cancelled (see Ready and SpecApplied). `Failed`: the create failed or was cancelled before building anything; nothing is held (no machines, no endpoint): retry the create operation or delete the cluster. `Deleting`: a delete was asked for.',
  },
)
export type ClusterPhase = Type.Static<typeof ClusterPhase>

export interface ClusterStatus {
  phase: ClusterPhase
  conditions: Condition[]
  observedGeneration: number
  message: string
  /** The Kubernetes API server, once the control plane is up. */
  endpoint?: string | null
  /** The TLS server name to ask the endpoint for (one address serving many API servers). */
  tlsServerName?: string | null
  /** When the health checker last observed the cluster. */
  lastObservedAt?: string | null
}

export function setCondition(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: Date,
) {
  const existing = conditions.find((c) => c.type === next.type)
  const lastTransitionTime =
    existing && existing.status === next.status ? existing.lastTransitionTime : now.toISOString()
  return [...conditions.filter((c) => c.type !== next.type), { ...next, lastTransitionTime }]
}

/**
 * The phase people see, derived from conditions (code reads the conditions). A failure is
 * `Ready=False` with a reason, and a retry or repair moves the cluster on; none is terminal.
 * `observedGeneration` 0 means the cluster was never built. `holdsAnything` (machines, reserved or
 * allocated, or an endpoint) tells a create that ended before building anything (`Failed`) from a
 * broken or half-built cluster (`Degraded`); a caller that does not know leaves it out.
 */
export function derivePhase(
  conditions: Condition[],
  observedGeneration: number,
  holdsAnything = true,
): ClusterPhase {
  const is = (type: string, status: Condition['status']) =>
    conditions.some((c) => c.type === type && c.status === status)
  if (is('Deleting', 'True')) return 'Deleting'
  if (is('Progressing', 'True')) return observedGeneration === 0 ? 'Provisioning' : 'Updating'
  if (is('Ready', 'True')) return 'Ready'
  // Progressing=False at generation 0: a create ran (or was cancelled) and built nothing.
  if (observedGeneration === 0 && !holdsAnything && (is('Ready', 'False') || is('Progressing', 'False')))
    return 'Failed'
  if (is('Ready', 'False')) return 'Degraded'
  return observedGeneration === 0 ? 'Pending' : 'Updating'
}

/** The status of a cluster that was just accepted: nothing observed yet. */
export function initialClusterStatus(now: Date): ClusterStatus {
  const conditions = setCondition(
    [],
    {
      type: 'Ready',
      status: 'Unknown',
      reason: 'Pending',
      message: 'Waiting for the create operation to start.',
    },
    now,
  )
  return { phase: derivePhase([], 0), conditions, observedGeneration: 0, message: 'Accepted' }
}

/** Whether two condition lists say different things (type, status, reason); messages and times aside. */
export function conditionsDiffer(a: Condition[], b: Condition[]): boolean {
  const key = (list: Condition[]) =>
    list
      .map((c) => `${c.type}=${c.status}/${c.reason}`)
      .sort()
      .join(',')
  return key(a) !== key(b)
}

/** What is built of one part of a cluster (its control plane or a node group), against its spec. */
export interface BuiltPart {
  /** How people name it: `control plane`, `node group workers`. */
  name: string
  desired: number
  /** Kubernetes version of each machine that is a node of the cluster now (running, or draining out). */
  nodeVersions: string[]
}

export interface BuiltState {
  parts: BuiltPart[]
  kubernetesVersion: string
  /** The spec generation, and the one last built (a feature change bumps it; success catches up). */
  generation: number
  observedGeneration: number
}

/**
 * How what is built differs from the spec, one phrase per difference ("node group workers: 3
 * desired, 2 built"); empty when the cluster is converged.
 */
export function specDifferences(state: BuiltState): string[] {
  const out: string[] = []
  for (const part of state.parts) {
    if (part.nodeVersions.length !== part.desired)
      out.push(`${part.name}: ${part.desired} desired, ${part.nodeVersions.length} built`)
  }
  const behind = state.parts.flatMap((p) => p.nodeVersions).filter((v) => v !== state.kubernetesVersion)
  if (behind.length > 0)
    out.push(`${behind.length} machines not yet on Kubernetes ${state.kubernetesVersion}`)
  if (out.length === 0 && state.observedGeneration < state.generation)
    out.push(`spec generation ${state.generation} not applied (last applied: ${state.observedGeneration})`)
  return out
}

/**
 * Sets Ready, which never says all is well while SpecApplied is False: a cluster built differently
 * from its spec is not ready in the sense code relies on, however healthy its machines are.
 */
export function setReady(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime' | 'type'>,
  now: Date,
): Condition[] {
  const specApplied = conditions.find((c) => c.type === 'SpecApplied')
  if (next.status === 'True' && specApplied?.status === 'False') {
    return setCondition(
      conditions,
      { type: 'Ready', status: 'False', reason: 'SpecNotApplied', message: specApplied.message },
      now,
    )
  }
  return setCondition(conditions, { type: 'Ready', ...next }, now)
}

/** How an operation ended, for the conditions it leaves. */
export interface OperationEnd {
  operationId: string
  status: 'succeeded' | 'failed' | 'cancelled'
  /** `Succeeded`, `Cancelled`, or the failure's code. */
  reason: string
}

/**
 * The conditions any operation that changes a cluster leaves as it ends: `Progressing=False`, and
 * `SpecApplied` from what is built. True when nothing differs; else False with the reason (e.g.
 * `Cancelled`) and the differences, until a retry or a new change converges it, and a Ready that
 * claimed all is well is withdrawn. (The one rule for every cancelled operation: it leaves the
 * cluster visibly not converged, and the spec is never rolled back behind the user's back.)
 */
export function settleOperation(
  conditions: Condition[],
  end: OperationEnd,
  built: BuiltState,
  now: Date,
): Condition[] {
  const next = setCondition(
    conditions,
    { type: 'Progressing', status: 'False', reason: end.reason, message: '' },
    now,
  )
  const differences = specDifferences(built)
  if (differences.length === 0)
    return setCondition(next, { type: 'SpecApplied', status: 'True', reason: 'Applied', message: '' }, now)
  // A success that left differences did not cause them: they stay explained by what did.
  const earlier = next.find((c) => c.type === 'SpecApplied' && c.status === 'False')
  const reason = end.status === 'succeeded' ? (earlier?.reason ?? 'NotConverged') : end.reason
  const hint =
    end.status === 'succeeded'
      ? 'Retry the operation that stopped, or change the spec.'
      : `Retry operation ${end.operationId}, or change the spec.`
  const withdrawn = setCondition(
    next,
    { type: 'SpecApplied', status: 'False', reason, message: `${differences.join('; ')}. ${hint}` },
    now,
  )
  const ready = withdrawn.find((c) => c.type === 'Ready')
  return ready?.status === 'True' ? setReady(withdrawn, ready, now) : withdrawn
}
