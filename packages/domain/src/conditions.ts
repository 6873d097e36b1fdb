import Type from 'typebox'
import { StringEnum } from './names.ts'

export const ConditionStatus = StringEnum(['True', 'False', 'Unknown'], {})

export const Condition = Type.Object(
  {
    type: Type.String({ examples: ['Ready'] }),
    status: ConditionStatus,
    reason: Type.String({ description: 'A CamelCase, machine-readable reason.', examples: ['Provisioning'] }),
    message: Type.String(),
    lastTransitionTime: Type.String({ format: 'date-time' }),
  },
  { additionalProperties: false },
)
export type Condition = Type.Static<typeof Condition>

export const ClusterPhase = StringEnum(
  ['Pending', 'Provisioning', 'Ready', 'Updating', 'Degraded', 'Deleting'],
  {
    description: 'A summary for people, derived from the conditions; code reads the conditions.',
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
 * The phase people see, derived from conditions (code reads the conditions). There is no terminal
 * "Failed": a failure is `Ready=False` with a reason, and a retry or repair moves the cluster on.
 * `observedGeneration` 0 means the cluster was never built.
 */
export function derivePhase(conditions: Condition[], observedGeneration: number): ClusterPhase {
  const is = (type: string, status: Condition['status']) =>
    conditions.some((c) => c.type === type && c.status === status)
  if (is('Deleting', 'True')) return 'Deleting'
  if (is('Progressing', 'True')) return observedGeneration === 0 ? 'Provisioning' : 'Updating'
  if (is('Ready', 'True')) return 'Ready'
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
