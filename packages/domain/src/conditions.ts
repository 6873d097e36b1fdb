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
 * The phase people see, derived from conditions. `deleting` and `ready` come from the
 * `Deleting` and `Ready` conditions; an operation in flight shows as Provisioning or Updating.
 */
export function derivePhase(conditions: Condition[], observedGeneration: number): ClusterPhase {
  const is = (type: string, status: Condition['status']) =>
    conditions.some((c) => c.type === type && c.status === status)
  if (is('Deleting', 'True')) return 'Deleting'
  if (is('Ready', 'True')) return 'Ready'
  if (observedGeneration === 0) return conditions.length === 0 ? 'Pending' : 'Provisioning'
  if (is('Ready', 'False') && !is('Progressing', 'True')) return 'Degraded'
  return 'Updating'
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
