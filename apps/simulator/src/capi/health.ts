import { type Condition, condition, type WantedCondition, withConditions } from './conditions.ts'
import { named, type Snapshot, type StandInContext, writeStatus } from './context.ts'
import { isDeleting, type Machine, type MachineHealthCheck, matchesSelector } from './model.ts'

// The MachineHealthCheck controller: Machines its selector matches that are unhealthy are marked, and
// their owners remediate them when the check's budget allows.

function unhealthyReason(
  ctx: StandInContext,
  machine: Machine,
  mhc: MachineHealthCheck,
): WantedCondition | undefined {
  const checks = mhc.spec?.checks
  const since = ctx.unhealthy.get(machine.metadata.name)
  if (since !== undefined && machine.status?.nodeRef) {
    const rule = checks?.unhealthyNodeConditions?.find((c) => c.type === 'Ready' && c.status === 'False')
    if (rule) {
      if (ctx.now - since >= rule.timeoutSeconds * 1000)
        return condition(
          'HealthCheckSucceeded',
          false,
          'UnhealthyNode',
          `Health check failed: Condition Ready on Node is reported as False for more than ${rule.timeoutSeconds}s`,
        )
      ctx.wake(since + rule.timeoutSeconds * 1000)
    }
  }
  const startup = checks?.nodeStartupTimeoutSeconds
  if (startup && !machine.status?.nodeRef && machine.metadata.creationTimestamp) {
    const deadline = Date.parse(machine.metadata.creationTimestamp) + startup * 1000
    if (ctx.now >= deadline)
      return condition(
        'HealthCheckSucceeded',
        false,
        'NodeStartupTimeout',
        `Health check failed: Node failed to report startup in ${startup}s`,
      )
  }
  return undefined
}

export async function reconcileHealthCheck(
  ctx: StandInContext,
  mhc: MachineHealthCheck,
  s: Snapshot,
  health: Map<string, WantedCondition[]>,
) {
  const spec = mhc.spec!
  const namespace = mhc.metadata.namespace!
  const cluster = named(s.clusters, namespace, spec.clusterName)
  if (!cluster || isDeleting(cluster)) return
  const targets = s.machines.filter(
    (m) =>
      m.metadata.namespace === namespace &&
      m.spec?.clusterName === spec.clusterName &&
      !isDeleting(m) &&
      matchesSelector(m.metadata.labels, spec.selector),
  )
  const verdicts = targets.map((m) => ({ machine: m, problem: unhealthyReason(ctx, m, mhc) }))
  const sick = verdicts.filter((v) => v.problem)
  const limit = spec.remediation?.triggerIf?.unhealthyLessThanOrEqualTo ?? '100%'
  const max =
    typeof limit === 'number'
      ? limit
      : limit.endsWith('%')
        ? Math.floor((Number(limit.slice(0, -1)) * targets.length) / 100)
        : Number(limit)
  const allowed = sick.length <= max
  for (const { machine, problem } of verdicts) {
    const wanted = [problem ?? condition('HealthCheckSucceeded', true, 'HealthCheckSucceeded')]
    if (problem && allowed) wanted.push(condition('OwnerRemediated', false, 'WaitingForRemediation'))
    health.set(machine.metadata.uid!, [...(health.get(machine.metadata.uid!) ?? []), ...wanted])
  }
  await writeStatus(ctx, 'MachineHealthCheck', mhc, {
    expectedMachines: targets.length,
    currentHealthy: targets.length - sick.length,
    remediationsAllowed: Math.max(0, max - sick.length),
    observedGeneration: mhc.metadata.generation ?? 1,
    ...(targets.length ? { targets: targets.map((m) => m.metadata.name).sort() } : {}),
    conditions: withConditions(
      (mhc.status as { conditions?: Condition[] } | undefined)?.conditions,
      [
        allowed
          ? condition('RemediationAllowed', true, 'RemediationAllowed')
          : condition(
              'RemediationAllowed',
              false,
              'TooManyUnhealthy',
              `Remediation is not allowed, the number of not started or unhealthy machines exceeds maxUnhealthy (total: ${targets.length}, unhealthy: ${sick.length}, maxUnhealthy: ${String(limit)})`,
            ),
      ],
      mhc.metadata.generation,
      new Date(ctx.now),
    ),
  })
}
