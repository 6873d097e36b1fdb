/** A metav1.Condition, as Cluster API v1beta2 objects carry them. */
export interface Condition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
  lastTransitionTime: string
  observedGeneration?: number
}

export type WantedCondition = Omit<Condition, 'lastTransitionTime' | 'observedGeneration'>

export const isTrue = (conditions: Condition[] | undefined, type: string) =>
  (conditions ?? []).some((c) => c.type === type && c.status === 'True')

export const conditionOf = (conditions: Condition[] | undefined, type: string) =>
  (conditions ?? []).find((c) => c.type === type)

export const rfc3339 = (date: Date) => `${date.toISOString().slice(0, 19)}Z`

/**
 * The conditions after setting `wanted`: a condition whose status did not change keeps its
 * lastTransitionTime (so an unchanged object is written identically), others are kept as they are.
 */
export function withConditions(
  existing: Condition[] | undefined,
  wanted: WantedCondition[],
  observedGeneration: number | undefined,
  now: Date,
): Condition[] {
  const result = [...(existing ?? [])]
  for (const want of wanted) {
    const index = result.findIndex((c) => c.type === want.type)
    const previous = index >= 0 ? result[index] : undefined
    const next: Condition = {
      ...want,
      lastTransitionTime:
        previous && previous.status === want.status ? previous.lastTransitionTime : rfc3339(now),
      ...(observedGeneration ? { observedGeneration } : {}),
    }
    if (index >= 0) result[index] = next
    else result.push(next)
  }
  return result
}

export const condition = (
  type: string,
  status: boolean | 'Unknown',
  reason: string,
  message = '',
): WantedCondition => ({
  type,
  status: status === 'Unknown' ? 'Unknown' : status ? 'True' : 'False',
  reason,
  message,
})

/** A Cluster API v1beta1 condition, as CAPO v0.14 objects still carry them. */
export interface LegacyCondition {
  type: string
  status: 'True' | 'False' | 'Unknown'
  severity?: string
  reason?: string
  message?: string
  lastTransitionTime: string
}

export function withLegacyConditions(
  existing: LegacyCondition[] | undefined,
  wanted: Omit<LegacyCondition, 'lastTransitionTime'>[],
  now: Date,
): LegacyCondition[] {
  return wanted
    .map((want) => {
      const previous = (existing ?? []).find((c) => c.type === want.type)
      return {
        ...want,
        // v1beta1 messages and reasons have a minimum length of one: absent rather than empty.
        ...(want.message ? {} : { message: undefined }),
        lastTransitionTime:
          previous && previous.status === want.status ? previous.lastTransitionTime : rfc3339(now),
      }
    })
    .map((c) => JSON.parse(JSON.stringify(c)) as LegacyCondition)
}

/** CAPI's summary message: one bullet per condition that is not as it should be. */
export const summary = (conditions: WantedCondition[]) =>
  conditions.map((c) => `* ${c.type}: ${c.message || c.reason}`).join('\n')
