import {
  addConsumption,
  type Consumption,
  clusterClaim,
  DomainError,
  ErrorCode,
  emptyConsumption,
  type GroupClaim,
  isUnlimited,
  type MachineClassInfo,
  notFound,
  type QuotaLimits,
  type QuotaLine,
  quotaExceeded,
  quotaLines,
  scalarQuotaResources,
  unlimitedQuota,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import { loadMachineClasses } from './catalogue.ts'
import type { Queryable, Tx } from './client.ts'
import type { Prisma, ProjectQuota } from './generated/prisma/client.ts'

// Quotas per project.
//
// Usage is never stored: it is computed from what the project's clusters claim now, so nothing can
// drift and releasing a machine (the worker deletes its row) releases its share at once. The rule,
// per group (a cluster's control plane, each node group), per resource:
//
//   claim = max(desired, held)
//
// desired: the group's count × its machine class (cpu, memory, GPUs by model), as the spec says
//          now. A create or resize writes it in the transaction that accepts the request, so the
//          request's share is reserved before any machine exists.
// held:    the Machine rows the group has now, by their own class. A group that shrinks, or a
//          rolling upgrade's surge machines, count until the worker has released them. An upgrade
//          is accepted only when the quota has room for its largest surge (upgradeCluster).
//
// A cluster claims the sum of its groups plus itself (clusters: 1). A cluster being deleted wants
// nothing any more (it can only go), so it claims only the machines it still holds, and counts as a
// cluster until the last one is released. A node group being deleted counts until its row goes at
// the end of its delete operation, right after its machines are released.

export interface ProjectQuotaState {
  limits: QuotaLimits
  /** Who last changed the quota; null when it was never set. */
  updatedBy: string | null
  updatedAt: Date | null
}

function limitsOf(row: ProjectQuota | null): QuotaLimits {
  if (!row) return unlimitedQuota()
  return {
    clusters: row.clusters,
    nodes: row.nodes,
    vcpus: row.vcpus,
    memoryMiB: row.memoryMiB,
    gpus: row.gpus,
    gpusByModel: { ...(row.gpusByModel as Record<string, number>) },
  }
}

const stateOf = (row: ProjectQuota | null): ProjectQuotaState => ({
  limits: limitsOf(row),
  updatedBy: row?.updatedBy ?? null,
  updatedAt: row?.updatedAt ?? null,
})

/** A project's quota; a project that never had one is unlimited. */
export async function findProjectQuota(db: Queryable, projectId: string): Promise<ProjectQuotaState> {
  return stateOf(await db.projectQuota.findUnique({ where: { projectId } }))
}

/** The version a quota's ETag carries: the time of its last change in ms, 0 before any. */
export const quotaVersion = (quota: ProjectQuotaState) => quota.updatedAt?.getTime() ?? 0

/**
 * Serialises the quota decisions of one project: every transaction that checks a request against the
 * quota (or changes the quota) takes this lock first, so the usage it reads already includes what
 * the previous holder reserved, and two requests cannot both take the last GPU. The transaction must
 * run at READ COMMITTED (the default), so that statements after the lock see that commit.
 *
 * FOR NO KEY UPDATE rather than FOR UPDATE: it conflicts with itself, but not with the KEY SHARE lock
 * that inserting a row referencing the project takes, so other writes in the project (operations,
 * deletes) never wait behind a quota check.
 */
export async function lockProjectQuota(tx: Tx, projectId: string): Promise<void> {
  const rows = await tx.$queryRaw<{ id: string }[]>`
    SELECT id FROM "Project" WHERE id = ${projectId}::uuid FOR NO KEY UPDATE`
  if (!rows[0]) throw notFound('project', projectId)
}

/**
 * Replaces a project's quota (absent limits become unlimited) and records the change in the audit
 * log. A stale `expectedVersion` (from If-Match) is 412. Limits may be set below the current usage:
 * that refuses growth, it takes nothing away.
 */
export async function setProjectQuota(
  tx: Tx,
  actor: Actor,
  projectId: string,
  limits: QuotaLimits,
  expectedVersion?: number,
): Promise<ProjectQuotaState> {
  await lockProjectQuota(tx, projectId)
  const before = await findProjectQuota(tx, projectId)
  const version = quotaVersion(before)
  if (expectedVersion !== undefined && expectedVersion !== version) {
    throw new DomainError(
      ErrorCode.preconditionFailed,
      `The quota changed since you read it (ETag "${version}", If-Match had "${expectedVersion}").`,
      { extensions: { currentETag: `"${version}"` } },
    )
  }
  // Strictly later than the previous change, so the ETag changes with every write.
  const updatedAt = new Date(Math.max(Date.now(), version + 1))
  const data = {
    clusters: limits.clusters,
    nodes: limits.nodes,
    vcpus: limits.vcpus,
    memoryMiB: limits.memoryMiB,
    gpus: limits.gpus,
    gpusByModel: limits.gpusByModel,
    updatedBy: actor.subject,
    updatedAt,
  }
  const row = await tx.projectQuota.upsert({
    where: { projectId },
    create: { projectId, ...data },
    update: data,
  })
  const after = stateOf(row)
  await recordAudit(tx, actor, {
    projectId,
    action: 'quota.update',
    targetKind: 'project',
    targetId: projectId,
    data: { before: before.limits, after: after.limits } as unknown as Prisma.InputJsonValue,
  })
  return after
}

interface ClaimRow {
  id: string
  deletionRequested: boolean
  controlPlane: { count: number; machineClass: string } | null
  groups: { id: string; machineClass: string; count: number }[]
  held: { group: string | null; machineClass: string; count: number }[]
}

/** Every cluster of a project with its groups' desired sizes and the machines it holds, in one statement. */
async function claimRows(db: Queryable, projectId: string): Promise<ClaimRow[]> {
  return db.$queryRaw<ClaimRow[]>`
    SELECT c.id, c."deletionRequested", c.spec->'controlPlane' AS "controlPlane",
           COALESCE((
             SELECT json_agg(json_build_object('id', g.id, 'machineClass', g."machineClass", 'count', g.count))
             FROM "NodeGroup" g WHERE g."clusterId" = c.id), '[]'::json) AS groups,
           COALESCE((
             SELECT json_agg(json_build_object('group', m."nodeGroupId", 'machineClass', m."machineClass", 'count', m.n))
             FROM (SELECT "nodeGroupId", "machineClass", count(*)::int AS n FROM "Machine"
                   WHERE "clusterId" = c.id GROUP BY "nodeGroupId", "machineClass") m), '[]'::json) AS held
    FROM "Cluster" c WHERE c."projectId" = ${projectId}::uuid`
}

/** A cluster's groups as the quota sees them (see the rule at the top of this file). */
function groupsOf(row: ClaimRow): GroupClaim[] {
  const deleting = row.deletionRequested
  const heldBy = (group: string | null) =>
    row.held.filter((h) => h.group === group).map(({ machineClass, count }) => ({ machineClass, count }))
  const known = new Set(row.groups.map((g) => g.id))
  return [
    {
      desired: deleting || !row.controlPlane ? null : row.controlPlane,
      held: heldBy(null),
    },
    ...row.groups.map((g) => ({
      desired: deleting ? null : { machineClass: g.machineClass, count: g.count },
      held: heldBy(g.id),
    })),
    // Machines of a group whose row is already gone still count until they are released.
    ...row.held
      .filter((h) => h.group !== null && !known.has(h.group))
      .map((h) => ({ desired: null, held: [{ machineClass: h.machineClass, count: h.count }] })),
  ]
}

/** What a project's clusters claim now. */
export async function projectUsage(
  db: Queryable,
  projectId: string,
  machineClasses?: ReadonlyMap<string, MachineClassInfo>,
): Promise<Consumption> {
  const [rows, classes] = await Promise.all([
    claimRows(db, projectId),
    machineClasses ? Promise.resolve(machineClasses) : loadMachineClasses(db),
  ])
  return rows.reduce(
    (sum, row) =>
      addConsumption(sum, clusterClaim({ deleting: row.deletionRequested, groups: groupsOf(row) }, classes)),
    emptyConsumption(),
  )
}

/** The machines one node group holds now, by class. */
export async function heldMachines(db: Queryable, nodeGroupId: string) {
  const rows = await db.machine.groupBy({
    by: ['machineClass'],
    where: { nodeGroupId },
    _count: { _all: true },
  })
  return rows.map((r) => ({ machineClass: r.machineClass, count: r._count._all }))
}

const grows = (request: Consumption) =>
  scalarQuotaResources.some((r) => request[r] > 0) || Object.values(request.gpusByModel).some((n) => n > 0)

export interface QuotaCheck {
  /** Whether the request fits (every line not exceeded). */
  accepted: boolean
  lines: QuotaLine[]
}

/** How a request compares with the project's quota now, without locking or writing (for dry runs). */
export async function checkProjectQuota(
  db: Queryable,
  projectId: string,
  request: Consumption,
): Promise<QuotaCheck> {
  const [quota, usage] = await Promise.all([findProjectQuota(db, projectId), projectUsage(db, projectId)])
  const lines = quotaLines(quota.limits, usage, request)
  return { accepted: !lines.some((l) => l.exceeded), lines }
}

/**
 * Checks a request against the project's quota and reserves it, in the transaction that accepts the
 * request: under the project's quota lock (see lockProjectQuota), usage is computed afresh and the
 * request refused with `quota-exceeded` if it would take any resource beyond its limit. The request
 * is reserved by the caller's own writes (the cluster, node-group count) committing with the lock
 * held, so the next transaction in line counts them.
 *
 * A project without limits takes no lock: concurrent creates there run in parallel. A quota set
 * meanwhile orders after them, as if they had committed first.
 *
 * `pointersOf` names what in the request asks for a resource, for the problem's `errors`.
 */
export async function reserveQuota(
  tx: Tx,
  projectId: string,
  request: Consumption,
  pointersOf: (line: QuotaLine, machineClasses: ReadonlyMap<string, MachineClassInfo>) => string[],
): Promise<void> {
  if (!grows(request)) return
  if (isUnlimited((await findProjectQuota(tx, projectId)).limits)) return
  await lockProjectQuota(tx, projectId)
  // Read again under the lock: the quota may have changed while this transaction waited for it.
  const quota = await findProjectQuota(tx, projectId)
  const machineClasses = await loadMachineClasses(tx)
  const usage = await projectUsage(tx, projectId, machineClasses)
  const lines = quotaLines(quota.limits, usage, request)
  if (lines.some((l) => l.exceeded)) throw quotaExceeded(lines, (line) => pointersOf(line, machineClasses))
}
