import {
  type Actor,
  type Database,
  deleteClusterSecrets,
  holdsMachines,
  loadBuiltParts,
  type Machine,
  type NodeGroup,
  type Operation,
  type Prisma,
  type Tx,
  transitionCluster,
} from '@kiln/db'
import {
  type ClusterStatus,
  type Condition,
  derivePhase,
  type OperationEnd,
  type ResolvedClusterSpec,
  setCondition,
  setReady,
  settleOperation,
  type Taint,
} from '@kiln/domain'
import {
  type ClusterEndpoint,
  type ClusterRef,
  type Driver,
  DriverError,
  reportedBroken,
} from '@kiln/drivers'
import type { OperationDefinition, OperationDefinitions, Outcome, StepHandler } from '@kiln/jobs'
import type { MasterKeyring } from '@kiln/pki'
import { installAddons } from './addons.ts'
import { bootstrapMaterialFor } from './bootstrap-material.ts'
import {
  clusterSecretStore,
  distributeClusterCaBundle,
  ensureClusterAuthorities,
  finishCaRotation,
  issueNextClusterCa,
  retirePreviousClusterCas,
} from './cluster-pki.ts'
import type { DriverCache } from './driver-cache.ts'
import {
  allocateReservedMachines,
  type CapacityScope,
  checkCapacity,
  type GroupPlan,
  refOf,
  releaseMachines,
  reserveAndAllocate,
  reserveMachines,
} from './machines.ts'
import type { WorkerMetrics } from './metrics.ts'

export interface EngineDeps {
  db: Database
  drivers: DriverCache
  /** Seals every private key the engine generates before it is written. */
  masterKey: MasterKeyring
  metrics?: WorkerMetrics | undefined
}

interface OperationScope {
  cluster: NonNullable<Awaited<ReturnType<typeof loadCluster>>>
  ref: ClusterRef
  driver: Driver
  spec: ResolvedClusterSpec
  plans: GroupPlan[]
}

const loadCluster = (db: Database, id: string) =>
  db.cluster.findUnique({
    where: { id },
    include: { nodeGroups: { orderBy: { createdAt: 'asc' } }, template: { include: { backend: true } } },
  })

async function scopeOf(deps: EngineDeps, op: Operation): Promise<Omit<OperationScope, 'driver'>> {
  if (!op.clusterId) throw new DriverError('ERR_INVALID_REQUEST', `Operation ${op.id} has no cluster.`)
  const cluster = await loadCluster(deps.db, op.clusterId)
  if (!cluster)
    throw new DriverError('ERR_INVALID_REQUEST', `The cluster of operation ${op.id} no longer exists.`)
  const spec = cluster.spec as unknown as ResolvedClusterSpec
  const cpClass = await deps.db.machineClass.findUnique({ where: { name: spec.controlPlane.machineClass } })
  const plans: GroupPlan[] = [
    {
      nodeGroup: null,
      machineClass: spec.controlPlane.machineClass,
      count: spec.controlPlane.count,
      zones: cpClass?.zones ?? [],
      labels: { 'node-role.kubernetes.io/control-plane': '' },
      taints: [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }],
    },
    ...cluster.nodeGroups.map((ng) => groupPlan(ng)),
  ]
  return {
    cluster,
    ref: {
      id: cluster.id,
      name: cluster.name,
      bootstrapMaterial: bootstrapMaterialFor(deps.db, deps.masterKey, cluster.id),
    },
    spec,
    plans,
  }
}

function groupPlan(ng: NodeGroup): GroupPlan {
  return {
    nodeGroup: ng,
    machineClass: ng.machineClass,
    count: ng.count,
    zones: ng.zones,
    labels: {
      ...(ng.labels as Record<string, string>),
      'kiln.dev/node-group': ng.name,
      'kiln.dev/role': ng.role,
    },
    taints: ng.taints as Taint[],
  }
}

const systemActor = (op: Operation): Actor => ({ subject: 'system:worker', requestId: op.id })

/** The one way the worker changes a cluster's status: through transitionCluster, with conditions. */
async function updateClusterStatus(
  tx: Tx,
  op: Operation,
  change: (status: ClusterStatus, now: Date, cluster: { generation: number }) => Partial<ClusterStatus>,
  extra: Prisma.ClusterUpdateInput = {},
  action = `${op.kind}.${op.status}`,
  /** Only when the operation ends: free the cluster for the next one. */
  releaseCluster = false,
) {
  // A cluster that is gone (a finished delete) has no status left to change.
  if (!op.clusterId) return
  const held = await holdsMachines(tx, op.clusterId)
  await transitionCluster(tx, systemActor(op), op.projectId, op.clusterId, {
    apply: (cluster) => {
      const now = new Date()
      const current = cluster.status as unknown as ClusterStatus
      const next = { ...current, ...change(current, now, cluster) }
      next.phase = derivePhase(next.conditions, next.observedGeneration, held || Boolean(next.endpoint))
      // Free the cluster only if this operation still holds it (a delete may have taken over).
      const release = releaseCluster && cluster.activeOperationId === op.id ? { activeOperationId: null } : {}
      return {
        data: { status: next as unknown as Prisma.InputJsonValue, ...release, ...extra },
        audit: { action },
      }
    },
  })
}

const condition = (
  conditions: Condition[],
  now: Date,
  type: string,
  status: Condition['status'],
  reason: string,
  message = '',
) => setCondition(conditions, { type, status, reason, message }, now)

const reasonOf = (outcome: Outcome) =>
  outcome.status === 'failed'
    ? outcome.error.code
    : outcome.status === 'cancelled'
      ? 'Cancelled'
      : 'Succeeded'

const endOf = (op: Operation, outcome: Outcome): OperationEnd => ({
  operationId: op.id,
  status: outcome.status,
  reason: reasonOf(outcome),
})

/**
 * The status an operation that changes the cluster leaves as it ends: not Progressing, SpecApplied
 * from what is built now (see `settleOperation`), then Ready from what it achieved (`ready`).
 */
async function finishWithConvergence(
  tx: Tx,
  op: Operation,
  outcome: Outcome,
  ready: (conditions: Condition[], now: Date) => Condition[],
  message: string,
) {
  if (!op.clusterId) return
  const parts = await loadBuiltParts(tx, op.clusterId)
  if (!parts) return
  await updateClusterStatus(
    tx,
    op,
    (status, now, cluster) => {
      const observedGeneration =
        outcome.status === 'succeeded' ? cluster.generation : status.observedGeneration
      const settled = settleOperation(
        status.conditions,
        endOf(op, outcome),
        { ...parts, generation: cluster.generation, observedGeneration },
        now,
      )
      return { conditions: ready(settled, now), observedGeneration, message }
    },
    {},
    `${op.kind}.${outcome.status}`,
    true,
  )
}

/** What a successful change leaves: every machine healthy, and Ready unless the spec is not built. */
const allWell = (conditions: Condition[], now: Date, message: string) =>
  condition(
    setReady(conditions, { status: 'True', reason: 'ClusterReady', message }, now),
    now,
    'MachinesReady',
    'True',
    'AllMachinesHealthy',
  )

/** Ends any operation that changes a live cluster: Ready from what it achieved, not Progressing. */
function finishClusterChange(successMessage: string) {
  return (tx: Tx, op: Operation, outcome: Outcome) =>
    finishWithConvergence(
      tx,
      op,
      outcome,
      (conditions, now) => {
        if (outcome.status === 'succeeded') return allWell(conditions, now, successMessage)
        if (outcome.status === 'failed')
          return setReady(
            conditions,
            { status: 'False', reason: outcome.error.code, message: outcome.error.detail },
            now,
          )
        return conditions
      },
      outcome.status === 'failed'
        ? `${op.kind} failed: ${outcome.error.detail}`
        : `${op.kind} ${outcome.status}`,
    )
}

export function buildOperationDefinitions(deps: EngineDeps): OperationDefinitions {
  const { db } = deps
  const scopes = new WeakMap<Operation, Promise<Omit<OperationScope, 'driver'>>>()
  const scoped =
    (
      fn: (
        scope: OperationScope,
        op: Operation,
      ) => Promise<{ message?: string; skipped?: boolean } | undefined>,
    ): StepHandler =>
    async ({ operation }) => {
      // One load per run of an operation: the runner hands every step the same operation object.
      let scope = scopes.get(operation)
      if (!scope) {
        scope = scopeOf(deps, operation)
        scopes.set(operation, scope)
      }
      const loaded = await scope
      // Borrowed per step: a driver replaced meanwhile is closed once no step holds it any more.
      return deps.drivers.use(loaded.cluster.template.backend, (driver) =>
        fn({ ...loaded, driver }, operation),
      )
    }

  const skipped =
    (why: string): StepHandler =>
    async () => ({ skipped: true, message: why })
  const installClusterAddons = scoped((s, op) =>
    installAddons(db, deps.masterKey, s.cluster.id, {
      firstInstall: op.kind === 'cluster.create',
      metrics: deps.metrics,
    }),
  )
  const installAddonsWithoutTarget = scoped((s, op) =>
    installAddons(db, deps.masterKey, s.cluster.id, {
      withoutNodeGroup: (op.resource as { id?: string }).id,
      metrics: deps.metrics,
    }),
  )

  /** The cluster's side of its backend's capacity (see `reserveMachines`). */
  const capacityOf = (s: OperationScope): CapacityScope => ({
    db,
    driver: s.driver,
    backendId: s.cluster.template.backend.id,
    cluster: s.ref,
  })

  const reserveCapacity = scoped(async (s, op) => {
    const total = await reserveMachines(capacityOf(s), s.plans, s.spec.kubernetesVersion, op.id)
    return {
      message: total === 0 ? 'Nothing new to allocate.' : `${total} machines reserved.`,
    }
  })

  // Reserves again first: a retry after a failed allocation (which kept nothing) starts here.
  const allocateMachines = scoped(async (s, op) => {
    const n = await reserveAndAllocate(capacityOf(s), s.plans, s.spec.kubernetesVersion, op.id)
    return { message: `${n} machines allocated.` }
  })

  /**
   * Brings machines up: `bootstrap` for control-plane machines, `joinMachines` for workers. Machines
   * the driver names as failed are released (it keeps their hardware out of the pool) and replaced by
   * new allocations, up to `maxReplacementRounds` times in one attempt; then the step's retries decide.
   * With nothing to start, the driver is not called.
   */
  const maxReplacementRounds = 3
  async function startMachines(
    s: OperationScope,
    operationId: string,
    role: 'control-plane' | 'worker',
    load: () => Promise<Machine[]>,
  ): Promise<{ endpoint?: ClusterEndpoint; started: number }> {
    for (let round = 0; ; round++) {
      const machines = await load()
      if (machines.length === 0) return { started: 0 }
      try {
        let endpoint: ClusterEndpoint | undefined
        if (role === 'control-plane') endpoint = await s.driver.bootstrap(s.ref, machines.map(refOf))
        else await s.driver.joinMachines(s.ref, machines.map(refOf))
        await db.machine.updateMany({
          where: { id: { in: machines.map((m) => m.id) } },
          data: { phase: 'Running' },
        })
        return { ...(endpoint ? { endpoint } : {}), started: machines.length }
      } catch (error) {
        if (!(error instanceof DriverError) || error.failedMachines.length === 0) throw error
        if (round >= maxReplacementRounds) throw error
        const failed = machines.filter((m) => error.failedMachines.includes(m.name))
        if (failed.length === 0) throw error
        await releaseMachines(db, s.driver, s.ref, failed)
        await reserveAndAllocate(capacityOf(s), s.plans, s.spec.kubernetesVersion, operationId)
      }
    }
  }

  const bootstrapControlPlane = scoped(async (s, op) => {
    const { endpoint } = await startMachines(s, op.id, 'control-plane', () =>
      db.machine.findMany({
        where: { clusterId: s.cluster.id, role: 'control-plane' },
        orderBy: { ordinal: 'asc' },
      }),
    )
    if (!endpoint) throw new DriverError('ERR_INVALID_REQUEST', 'A control plane needs machines.')
    await db.$transaction((tx) =>
      updateClusterStatus(
        tx,
        op,
        (status, now) => ({
          endpoint: endpoint.server,
          tlsServerName: endpoint.tlsServerName ?? null,
          conditions: condition(
            status.conditions,
            now,
            'ControlPlaneAvailable',
            'True',
            'Bootstrapped',
            endpoint.server,
          ),
        }),
        {},
        'cluster.control-plane-available',
      ),
    )
    return {
      message: `Control plane up at ${endpoint.server}${endpoint.tlsServerName ? ` (${endpoint.tlsServerName})` : ''}.`,
    }
  })

  const joinWorkers = scoped(async (s, op) => {
    const { started } = await startMachines(s, op.id, 'worker', () =>
      db.machine.findMany({ where: { clusterId: s.cluster.id, role: 'worker', phase: 'Allocated' } }),
    )
    return { message: `${started} workers joined.` }
  })

  const waitHealthy = scoped(async (s) => {
    const machines = await db.machine.findMany({ where: { clusterId: s.cluster.id } })
    const observed = await s.driver.observe(
      s.ref,
      machines.map((m) => m.name),
    )
    const sick = observed.machines.filter((m) => m.health !== 'Healthy')
    if (!observed.controlPlaneReachable || sick.length > 0) {
      // Not an exception in the driver's eyes, but this step cannot finish yet: retry with backoff.
      throw new DriverError(
        sick.some((m) => m.health === 'Unknown') ? 'ERR_UNAVAILABLE' : 'ERR_TRANSIENT',
        `Waiting for ${sick.length} machines (${sick
          .slice(0, 3)
          .map((m) => `${m.name}: ${m.reason}`)
          .join(', ')}).`,
      )
    }
    return { message: `${machines.length} machines healthy.` }
  })

  /** Machines beyond a group's desired count: named ones first, then the newest. */
  const excessMachines = async (ng: NodeGroup, named: string[]): Promise<Machine[]> => {
    const machines = await db.machine.findMany({
      where: { nodeGroupId: ng.id },
      orderBy: { ordinal: 'desc' },
    })
    const excess = machines.length - ng.count
    if (excess <= 0) return []
    const rank = (m: Machine) => (m.phase === 'Draining' ? 0 : named.includes(m.name) ? 1 : 2)
    return [...machines].sort((a, b) => rank(a) - rank(b) || b.ordinal - a.ordinal).slice(0, excess)
  }

  const targetGroup = (s: OperationScope, op: Operation) => {
    const id = (op.resource as { id: string }).id
    const ng = s.cluster.nodeGroups.find((n) => n.id === id)
    if (!ng) throw new DriverError('ERR_INVALID_REQUEST', `Node group ${id} no longer exists.`)
    return ng
  }

  const create: OperationDefinition = {
    steps: {
      'reserve-capacity': reserveCapacity,
      'allocate-machines': allocateMachines,
      'issue-certificates': scoped(async (s) => {
        const issued = await ensureClusterAuthorities(clusterSecretStore(db), s.cluster.id, deps.masterKey)
        return { message: `${issued.join(', ')} ready; private keys sealed.` }
      }),
      'bootstrap-control-plane': bootstrapControlPlane,
      'join-workers': joinWorkers,
      'install-addons': installClusterAddons,
      'wait-healthy': waitHealthy,
    },
    finish: (tx, op, outcome) =>
      finishWithConvergence(
        tx,
        op,
        outcome,
        (conditions, now) => {
          if (outcome.status === 'succeeded') return allWell(conditions, now, 'All machines are healthy.')
          const message =
            outcome.status === 'failed'
              ? outcome.error.detail
              : 'The create was cancelled; allocated machines are kept and recorded. Retry or delete.'
          return setReady(conditions, { status: 'False', reason: reasonOf(outcome), message }, now)
        },
        outcome.status === 'succeeded' ? 'Ready' : `create ${outcome.status}`,
      ),
  }

  const deleteCluster: OperationDefinition = {
    steps: {
      'uninstall-addons': skipped(
        'Add-ons go with the machines they run on; nothing outside the cluster depends on them.',
      ),
      'drain-workers': scoped(async (s) => {
        const { count } = await db.machine.updateMany({
          where: { clusterId: s.cluster.id, role: 'worker' },
          data: { phase: 'Draining' },
        })
        return { message: `${count} workers cordoned and drained.` }
      }),
      'release-machines': scoped(async (s) => {
        const machines = await db.machine.findMany({ where: { clusterId: s.cluster.id } })
        await releaseMachines(db, s.driver, s.ref, machines)
        return { message: `${machines.length} machines released.` }
      }),
      'revoke-certificates': scoped(async (s) => {
        const count = await deleteClusterSecrets(db, s.cluster.id)
        return { message: `${count} authorities and keys destroyed.` }
      }),
      'forget-cluster': async () => ({ message: 'The cluster record is removed when this operation ends.' }),
    },
    async finish(tx, op, outcome) {
      if (outcome.status === 'succeeded' && op.clusterId) {
        // Machines were released and forgotten by release-machines; now the cluster itself goes.
        const remaining = await tx.machine.count({ where: { clusterId: op.clusterId } })
        if (remaining > 0)
          throw new Error(`Refusing to forget cluster ${op.clusterId}: ${remaining} machines remain.`)
        await tx.cluster.deleteMany({ where: { id: op.clusterId } })
        await tx.auditEvent.create({
          data: {
            projectId: op.projectId,
            actor: 'system:worker',
            action: 'cluster.deleted',
            targetKind: 'cluster',
            targetId: op.clusterId,
            requestId: op.id,
          },
        })
        return
      }
      await updateClusterStatus(
        tx,
        op,
        (status, now) => ({
          conditions: condition(
            status.conditions,
            now,
            'Ready',
            'False',
            reasonOf(outcome),
            outcome.status === 'failed'
              ? outcome.error.detail
              : 'Deletion was cancelled; delete again to finish.',
          ),
          message: `delete ${outcome.status}; DELETE the cluster again to retry`,
        }),
        {},
        `cluster.delete.${outcome.status}`,
        true,
      )
    },
  }

  const updateFeatures: OperationDefinition = {
    steps: { 'install-addons': installClusterAddons, 'wait-healthy': waitHealthy },
    finish: finishClusterChange('Features applied.'),
  }

  const resize: OperationDefinition = {
    steps: {
      'reserve-capacity': reserveCapacity,
      'allocate-machines': allocateMachines,
      'join-workers': joinWorkers,
      'drain-workers': scoped(async (s, op) => {
        const named = ((op.params as { machinesToRemove?: string[] }).machinesToRemove ?? []) as string[]
        const excess = await excessMachines(targetGroup(s, op), named)
        await db.machine.updateMany({
          where: { id: { in: excess.map((m) => m.id) } },
          data: { phase: 'Draining' },
        })
        return excess.length
          ? { message: `Drained ${excess.map((m) => m.name).join(', ')}.` }
          : { skipped: true, message: 'Nothing to remove.' }
      }),
      'release-machines': scoped(async (s, op) => {
        const named = ((op.params as { machinesToRemove?: string[] }).machinesToRemove ?? []) as string[]
        const excess = await excessMachines(targetGroup(s, op), named)
        await releaseMachines(db, s.driver, s.ref, excess)
        return excess.length
          ? { message: `Released ${excess.length} machines.` }
          : { skipped: true, message: 'Nothing to remove.' }
      }),
      'install-addons': installClusterAddons,
      'wait-healthy': waitHealthy,
    },
    finish: finishClusterChange('Node group resized.'),
  }

  const createNodeGroup: OperationDefinition = {
    steps: {
      'reserve-capacity': reserveCapacity,
      'allocate-machines': allocateMachines,
      'join-workers': joinWorkers,
      'install-addons': installClusterAddons,
      'wait-healthy': waitHealthy,
    },
    finish: finishClusterChange('Node group added.'),
  }

  const deleteNodeGroup: OperationDefinition = {
    steps: {
      'drain-workers': scoped(async (s, op) => {
        const ng = targetGroup(s, op)
        const { count } = await db.machine.updateMany({
          where: { nodeGroupId: ng.id },
          data: { phase: 'Draining' },
        })
        return { message: `${count} machines drained.` }
      }),
      'release-machines': scoped(async (s, op) => {
        const ng = targetGroup(s, op)
        const machines = await db.machine.findMany({ where: { nodeGroupId: ng.id } })
        await releaseMachines(db, s.driver, s.ref, machines)
        return { message: `${machines.length} machines released.` }
      }),
      'install-addons': installAddonsWithoutTarget,
    },
    async finish(tx, op, outcome) {
      if (outcome.status === 'succeeded') {
        const id = (op.resource as { id: string }).id
        await tx.nodeGroup.deleteMany({ where: { id } })
      }
      await finishClusterChange('Node group removed.')(tx, op, outcome)
    },
  }

  /**
   * Rolling replace of one group onto `target`. Every pass reads the machines afresh, so a crash
   * anywhere resumes where it stopped: recorded replacements are brought up first, then old machines
   * beyond the desired count go, then the next batch starts (maxSurge new first; with no surge,
   * up to maxUnavailable old ones go before their replacements).
   */
  const upgradeGroup = async (
    s: OperationScope,
    operationId: string,
    plan: GroupPlan,
    target: string,
    surge: number,
    unavailable: number,
  ) => {
    const where = {
      clusterId: s.cluster.id,
      nodeGroupId: plan.nodeGroup?.id ?? null,
      role: plan.nodeGroup ? 'worker' : 'control-plane',
    }
    for (;;) {
      await allocateReservedMachines(capacityOf(s), [plan])
      await startMachines(s, operationId, plan.nodeGroup ? 'worker' : 'control-plane', () =>
        db.machine.findMany({ where: { ...where, phase: 'Allocated' } }),
      )
      const machines = await db.machine.findMany({ where, orderBy: { ordinal: 'asc' } })
      const outdated = machines.filter((m) => m.kubernetesVersion !== target)
      if (outdated.length === 0) return
      const excess = machines.length - plan.count
      if (excess > 0) {
        await releaseMachines(db, s.driver, s.ref, outdated.slice(0, excess))
        continue
      }
      const batch = Math.min(outdated.length, Math.max(1, surge > 0 ? surge : unavailable))
      if (surge === 0) await releaseMachines(db, s.driver, s.ref, outdated.slice(0, batch))
      await reserveMachines(
        capacityOf(s),
        [{ ...plan, count: plan.count + (surge > 0 ? batch : 0) }],
        target,
        operationId,
      )
    }
  }

  /**
   * Backends that roll machines themselves (Cluster API: the control plane first, then each
   * MachineDeployment): Kiln sets the version and follows the rollout, showing its progress in the
   * cluster's Progressing condition, until every machine of `part` runs the version. A cancel stops
   * the following (the backend finishes what it started: a half-rolled group is still a working one).
   */
  const rollOut = async (s: OperationScope, op: Operation, part: 'control-plane' | 'workers') => {
    const target = s.spec.kubernetesVersion
    let shown = ''
    for (;;) {
      const progress = await s.driver.rollOut!(s.ref, target, part)
      if (progress.done) break
      if (progress.message !== shown) {
        shown = progress.message
        await db.$transaction((tx) =>
          updateClusterStatus(
            tx,
            op,
            (status, now) => ({
              conditions: condition(
                status.conditions,
                now,
                'Progressing',
                'True',
                'RollingOut',
                progress.message,
              ),
            }),
            {},
            'cluster.rolling-out',
          ),
        )
      }
      const current = await db.operation.findUnique({
        where: { id: op.id },
        select: { cancelRequested: true },
      })
      if (current?.cancelRequested) return { message: `Cancelled while rolling out: ${progress.message}.` }
    }
    await db.machine.updateMany({
      where: { clusterId: s.cluster.id, role: part === 'control-plane' ? 'control-plane' : 'worker' },
      data: { kubernetesVersion: target },
    })
    return {
      message:
        part === 'control-plane'
          ? `Control plane on ${target}; the backend rolled it.`
          : `${s.plans.length - 1} node groups on ${target}; the backend rolled them.`,
    }
  }

  const upgrade: OperationDefinition = {
    steps: {
      'reserve-capacity': scoped(async (s) => {
        // Such a backend surges within its own capacity; Kiln's count of machines does not change.
        if (s.driver.rollOut)
          return { skipped: true, message: 'The backend rolls machines within its own capacity.' }
        const needs = s.plans.map((p) => ({
          machineClass: p.machineClass,
          zone: p.zones[0] ?? 'default',
          count: p.nodeGroup ? Math.min(p.nodeGroup.maxSurge, p.count) : 1,
        }))
        await checkCapacity(
          capacityOf(s),
          needs.filter((n) => n.count > 0),
        )
        return { message: 'Capacity for surge machines is available.' }
      }),
      'upgrade-control-plane': scoped(async (s, op) => {
        if (s.driver.rollOut) return rollOut(s, op, 'control-plane')
        await upgradeGroup(s, op.id, s.plans[0]!, s.spec.kubernetesVersion, 1, 0)
        return { message: `Control plane on ${s.spec.kubernetesVersion}.` }
      }),
      'upgrade-node-groups': scoped(async (s, op) => {
        if (s.driver.rollOut) return rollOut(s, op, 'workers')
        for (const plan of s.plans.slice(1)) {
          await upgradeGroup(
            s,
            op.id,
            plan,
            s.spec.kubernetesVersion,
            plan.nodeGroup!.maxSurge,
            plan.nodeGroup!.maxUnavailable,
          )
        }
        return { message: `${s.plans.length - 1} node groups on ${s.spec.kubernetesVersion}.` }
      }),
      'install-addons': installClusterAddons,
      'wait-healthy': waitHealthy,
    },
    finish: finishClusterChange('Upgraded.'),
  }

  const repair: OperationDefinition = {
    steps: {
      'replace-unhealthy-machines': scoped(async (s, op) => {
        // First finish any release that did not (the backend failed mid-way): it is no node any more.
        const unreleased = await db.machine.findMany({
          where: { clusterId: s.cluster.id, phase: 'Releasing' },
        })
        await releaseMachines(db, s.driver, s.ref, unreleased)
        const named = new Set((op.params as { unhealthy?: string[] }).unhealthy ?? [])
        const machines = await db.machine.findMany({
          where: { clusterId: s.cluster.id, phase: 'Running', name: { in: [...named] } },
        })
        // Look again before destroying anything: only what the backend still reports broken goes.
        // A machine it cannot report on now is no evidence; the step waits for an answer instead.
        const observed = await s.driver.observe(
          s.ref,
          machines.map((m) => m.name),
        )
        const unknown = observed.machines.filter((m) => m.health === 'Unknown')
        if (unknown.length > 0)
          throw new DriverError(
            'ERR_UNAVAILABLE',
            `The backend cannot report on ${unknown.map((m) => `${m.name} (${m.reason})`).join(', ')}; nothing is replaced until it can.`,
          )
        const broken = new Set(observed.machines.filter(reportedBroken).map((m) => m.name))
        const replaced = machines.filter((m) => broken.has(m.name))
        const recovered = machines.filter((m) => !broken.has(m.name))
        await releaseMachines(db, s.driver, s.ref, replaced)
        await reserveAndAllocate(capacityOf(s), s.plans, s.spec.kubernetesVersion, op.id)
        const allocated = (role: 'control-plane' | 'worker') => () =>
          db.machine.findMany({ where: { clusterId: s.cluster.id, phase: 'Allocated', role } })
        await startMachines(s, op.id, 'control-plane', allocated('control-plane'))
        await startMachines(s, op.id, 'worker', allocated('worker'))
        const said = [
          replaced.length ? `Replaced ${replaced.map((m) => m.name).join(', ')}.` : '',
          unreleased.length ? `Finished releasing ${unreleased.map((m) => m.name).join(', ')}.` : '',
          recovered.length ? `${recovered.map((m) => m.name).join(', ')} recovered; kept.` : '',
        ].filter(Boolean)
        return { message: said.length ? said.join(' ') : 'Nothing to replace.' }
      }),
      'wait-healthy': waitHealthy,
    },
    finish: finishClusterChange('Repaired.'),
  }

  const distributeCaBundle: StepHandler = ({ operation }) =>
    distributeClusterCaBundle(db, deps.masterKey, operation)

  const rotateCaStart: OperationDefinition = {
    steps: {
      'issue-next-ca': ({ operation }) => issueNextClusterCa(db, deps.masterKey, operation),
      'distribute-ca-bundle': distributeCaBundle,
    },
    finish: finishCaRotation,
  }

  const rotateCaComplete: OperationDefinition = {
    steps: {
      'retire-previous-ca': ({ operation }) => retirePreviousClusterCas(db, operation),
      'distribute-ca-bundle': distributeCaBundle,
    },
    finish: finishCaRotation,
  }

  return {
    'cluster.create': create,
    'cluster.delete': deleteCluster,
    'cluster.update-features': updateFeatures,
    'cluster.upgrade': upgrade,
    'cluster.repair': repair,
    'cluster.rotate-ca-start': rotateCaStart,
    'cluster.rotate-ca-complete': rotateCaComplete,
    'nodegroup.create': createNodeGroup,
    'nodegroup.resize': resize,
    'nodegroup.delete': deleteNodeGroup,
  }
}

/** Marks a cluster as being worked on when an operation (re)starts. */
export async function markProgressing(db: Database, op: Operation) {
  await db.$transaction((tx) =>
    updateClusterStatus(
      tx,
      op,
      (status, now) => ({
        conditions: condition(status.conditions, now, 'Progressing', 'True', op.kind, `Operation ${op.id}`),
        message: `${op.kind} running`,
      }),
      {},
      `${op.kind}.started`,
    ),
  )
}
