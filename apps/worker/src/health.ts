import {
  type Database,
  lockCluster,
  nodePhases,
  type Prisma,
  startClusterOperation,
  transitionCluster,
} from '@kiln/db'
import {
  type ClusterStatus,
  type Condition,
  conditionsDiffer,
  derivePhase,
  setCondition,
  setReady,
} from '@kiln/domain'
import { type ObservedMachine, type ObservedState, reportedBroken, unobservable } from '@kiln/drivers'
import { clockOf, type JobProducer } from '@kiln/jobs'
import type { DriverCache } from './driver-cache.ts'

export interface HealthOptions {
  /** Machines allowed unhealthy (fraction of the cluster) before repair stops and asks for people. */
  maxUnhealthyFraction: number
  /**
   * How long a machine must stay unhealthy without the backend calling it failed (not joined, powered
   * off, still provisioning) before repair replaces it: a reboot or a slow join is no reason to.
   */
  repairGraceMs: number
}

interface HealthDeps {
  db: Database
  drivers: DriverCache
  producer: JobProducer
  workerId: string
  log: (event: Record<string, unknown>) => void
  options: HealthOptions
}

interface MachineRow {
  id: string
  name: string
  phase: string
  health: string | null
  healthReason: string | null
  unhealthySince: Date | null
}

/**
 * The health checker's view of one machine. A machine the backend could not report on keeps the
 * evidence it had: "unknown" neither starts nor ends a grace period.
 */
function evidenceFor(row: MachineRow, seen: ObservedMachine | undefined, now: Date) {
  const observed: ObservedMachine = seen ?? {
    name: row.name,
    health: 'Unknown',
    reason: 'Unobservable: the backend did not report this machine',
  }
  const unhealthySince =
    observed.health === 'Healthy'
      ? null
      : observed.health === 'Unknown'
        ? row.unhealthySince
        : (row.unhealthySince ?? now)
  const changed =
    row.health !== observed.health ||
    row.healthReason !== observed.reason ||
    row.unhealthySince?.getTime() !== unhealthySince?.getTime()
  return { row, observed, unhealthySince, changed }
}

/**
 * Observes every idle, built cluster and repairs what is positively broken. The rules (issue 20):
 * a machine the backend cannot report on is unknown, never unhealthy; while a backend does not
 * answer, health and repair of its clusters pause and the cluster says so (BackendReachable=False);
 * repair acts on what the backend reports failed at once, on anything else only once it has lasted
 * the grace period; a release that did not finish is finished by a repair, and until then the
 * cluster is not Ready.
 */
export function healthChecker(deps: HealthDeps) {
  const { db, drivers, producer, workerId, log, options } = deps
  const actor = { subject: 'system:health', requestId: workerId }

  return async function observeOnce(): Promise<number> {
    const clusters = await db.cluster.findMany({
      where: {
        activeOperationId: null,
        deletionRequested: false,
        status: { path: ['observedGeneration'], gt: 0 },
      },
      include: { template: { include: { backend: true } } },
    })
    let repairs = 0
    for (const cluster of clusters) {
      const rows: MachineRow[] = await db.machine.findMany({
        where: { clusterId: cluster.id, phase: { in: [...nodePhases, 'Releasing'] } },
        select: { id: true, name: true, phase: true, health: true, healthReason: true, unhealthySince: true },
        orderBy: { name: 'asc' },
      })
      const live = rows.filter((m) => nodePhases.includes(m.phase))
      // A release that did not finish (the backend failed mid-way): the machine is neither a node nor gone.
      const unreleased = rows.filter((m) => m.phase === 'Releasing')
      const backend = cluster.template.backend
      let observed: ObservedState
      // Backends that replace broken machines themselves (a MachineHealthCheck) are left to it.
      let remediates = false
      try {
        observed = await drivers.use(backend, (driver) => {
          remediates = driver.remediatesMachines === true
          return driver.observe(
            { id: cluster.id, name: cluster.name },
            live.map((m) => m.name),
          )
        })
      } catch (error) {
        // A driver that breaks its promise not to throw has told us nothing about the machines either.
        const why = error instanceof Error ? error.message : String(error)
        observed = unobservable(
          live.map((m) => m.name),
          why,
        )
      }
      const now = new Date()
      const seen = new Map(observed.machines.map((m) => [m.name, m]))
      const evidence = live.map((row) => evidenceFor(row, seen.get(row.name), now))
      const unknown = evidence.filter((e) => e.observed.health === 'Unknown')
      const sick = evidence.filter((e) => reportedBroken(e.observed))
      const due = sick.filter(
        (e) =>
          e.observed.health === 'Missing' ||
          e.observed.definite === true ||
          now.getTime() - (e.unhealthySince ?? now).getTime() >= options.repairGraceMs,
      )
      const budget = Math.max(1, Math.floor(live.length * options.maxUnhealthyFraction))
      const reachable = unknown.length === 0 && observed.backendReachable !== false

      const opened = await db.$transaction(async (tx) => {
        const locked = await lockCluster(tx, cluster.projectId, cluster.id)
        if (locked.activeOperationId || locked.deletionRequested) return null
        for (const e of evidence.filter((x) => x.changed))
          await tx.machine.updateMany({
            where: { id: e.row.id },
            data: {
              health: e.observed.health,
              healthReason: e.observed.reason,
              unhealthySince: e.unhealthySince,
              observedAt: now,
            },
          })
        const status = locked.status as unknown as ClusterStatus
        let next: Condition[]
        if (!reachable) {
          // What runs keeps running: no verdict, no repair, until the backend can say how it is.
          const why = observed.unreachableReason ?? unknown[0]?.observed.reason ?? 'no answer'
          const message = `Backend ${backend.name} did not answer for ${unknown.length} of ${live.length} machines (${why}); health checks and repairs of this cluster wait until it answers.`
          next = setCondition(
            setCondition(
              status.conditions,
              { type: 'BackendReachable', status: 'False', reason: 'BackendUnreachable', message },
              now,
            ),
            { type: 'MachinesReady', status: 'Unknown', reason: 'BackendUnreachable', message },
            now,
          )
        } else {
          next = status.conditions.some((c) => c.type === 'BackendReachable')
            ? setCondition(
                status.conditions,
                { type: 'BackendReachable', status: 'True', reason: 'BackendAnswered', message: '' },
                now,
              )
            : status.conditions
          const healthy = sick.length === 0 && unreleased.length === 0 && observed.controlPlaneReachable
          if (healthy) {
            next = setReady(
              setCondition(
                next,
                { type: 'MachinesReady', status: 'True', reason: 'AllMachinesHealthy', message: '' },
                now,
              ),
              { status: 'True', reason: 'ClusterReady', message: '' },
              now,
            )
          } else {
            const describe = (e: (typeof sick)[number]) =>
              due.includes(e) || remediates
                ? `${e.row.name}: ${e.observed.reason}`
                : `${e.row.name}: ${e.observed.reason} (replaced at ${clockOf(new Date((e.unhealthySince ?? now).getTime() + options.repairGraceMs).toISOString())} unless it recovers)`
            const parts = [
              ...sick.map(describe),
              ...unreleased.map((m) => `${m.name}: a release that did not finish`),
            ]
            // Nothing broken, only a release to finish.
            const releasePending = sick.length === 0 && unreleased.length > 0
            const reason =
              sick.length > budget ? 'RepairBlocked' : releasePending ? 'ReleasePending' : 'MachinesUnhealthy'
            next = setReady(
              setCondition(
                next,
                { type: 'MachinesReady', status: 'False', reason, message: parts.join(', ') },
                now,
              ),
              {
                status: 'False',
                reason: releasePending ? 'ReleasePending' : 'MachinesUnhealthy',
                message:
                  sick.length > 0
                    ? `${sick.length} unhealthy`
                    : releasePending
                      ? `${unreleased.length} machines half released`
                      : 'The control plane is not reachable',
              },
              now,
            )
          }
        }
        const lastSeen = status.lastObservedAt ? Date.parse(status.lastObservedAt) : 0
        const changed = conditionsDiffer(next, status.conditions)
        // Write only on change, or to refresh "last seen" every 30 s: observing costs no write storm.
        if (changed || now.getTime() - lastSeen > 30_000) {
          const action = !changed
            ? undefined
            : !reachable
              ? 'cluster.backend-unreachable'
              : next.some((c) => c.type === 'Ready' && c.status === 'True')
                ? 'cluster.healthy'
                : 'cluster.unhealthy'
          await transitionCluster(tx, actor, cluster.projectId, cluster.id, {
            apply: () => ({
              data: {
                status: {
                  ...status,
                  // Unchanged conditions keep their messages and transition times.
                  conditions: changed ? next : status.conditions,
                  phase: derivePhase(changed ? next : status.conditions, status.observedGeneration),
                  lastObservedAt: now.toISOString(),
                } as unknown as Prisma.InputJsonValue,
              },
              ...(action ? { audit: { action } } : {}),
            }),
          })
        }
        if (!reachable || sick.length > budget) return null
        if ((due.length === 0 || remediates) && unreleased.length === 0) return null
        // Still under the row lock taken above: the row read then is the one to start from.
        return startClusterOperation(tx, actor, locked, 'cluster.repair', {
          unhealthy: remediates ? [] : due.map((e) => e.row.name),
          ...(unreleased.length > 0 ? { unreleased: unreleased.map((m) => m.name) } : {}),
        })
      })
      if (opened) {
        repairs++
        await producer.enqueue('run-operation', { operationId: opened.id }).catch(() => undefined)
        log({ msg: 'repair opened', cluster: cluster.name, operationId: opened.id, unhealthy: due.length })
      }
    }
    return repairs
  }
}
