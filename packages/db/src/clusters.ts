import {
  amountOf,
  type ClusterOverrides,
  type ClusterStatus,
  type Consumption,
  checkFeatureChange,
  clusterConsumption,
  compareKubernetesVersions,
  DomainError,
  derivePhase,
  ErrorCode,
  type FeatureValues,
  initialClusterStatus,
  invalidSpec,
  type Labels,
  type MachineClassInfo,
  machinesConsumption,
  type NodeGroupInput,
  notFound,
  type OperationKind,
  type PartialFeatureValues,
  type Provenance,
  parseKubernetesVersion,
  peakConsumption,
  type QuotaLine,
  type ResolvedCluster,
  type ResolvedClusterSpec,
  type ResolvedNodeGroup,
  resolveCluster,
  sameJson,
  setCondition,
  type Violation,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import {
  findTemplate,
  isUuid,
  loadMachineClasses,
  loadResolutionContext,
  type TemplateRow,
  visibleTemplates,
} from './catalogue.ts'
import { poolOf, type Queryable, type Tx } from './client.ts'
import { assertRevision, transitionCluster } from './cluster-transitions.ts'
import type { Cluster, NodeGroup, Operation, Prisma } from './generated/prisma/client.ts'
import { assertNotDeleting, createOperation, finishPendingAsCancelled } from './operations.ts'
import { afterCursorSql, decodeCursor, type Page, toPage } from './pagination.ts'
import { reserveQuota } from './quotas.ts'

export type ClusterRow = Cluster & {
  template: { name: string; version: number }
  nodeGroups: NodeGroup[]
}

const clusterInclude = {
  template: { select: { name: true, version: true } },
  nodeGroups: { orderBy: [{ createdAt: 'asc' as const }, { name: 'asc' as const }] },
}

const byRef = (projectId: string, ref: string) =>
  isUuid(ref) ? { id: ref, projectId } : { projectId_name: { projectId, name: ref } }

/** A cluster by id or name within a project; another project's cluster is simply not found. */
export async function findCluster(db: Queryable, projectId: string, ref: string): Promise<ClusterRow> {
  const cluster = await db.cluster.findUnique({
    where: byRef(projectId, ref),
    include: clusterInclude,
    relationLoadStrategy: 'join',
  })
  if (!cluster) throw notFound('cluster', ref)
  return cluster
}

/** A cluster as the API shows it: everything but the stored request. */
export type ClusterReadRow = Omit<ClusterRow, 'request' | 'nodeGroups'> & {
  nodeGroups: Omit<NodeGroup, 'status' | 'revision' | 'clusterId'>[]
  project: { name: string }
}

interface ClusterReadSqlRow extends Omit<ClusterReadRow, 'template' | 'project' | 'nodeGroups'> {
  projectName: string
  templateName: string
  templateVersion: number
  nodeGroups: (Omit<ClusterReadRow['nodeGroups'][number], 'createdAt' | 'updatedAt'> & {
    createdAt: string
    updatedAt: string
  })[]
}

/**
 * The hottest read, GET …/clusters/{cluster}: project and cluster (each by name or id), template
 * and node groups in one hand-written statement reading only the columns the API shows. Measured
 * by bench/api.ts (P2) against the same query through raw `pg`.
 */
export async function findClusterInProject(
  db: Queryable,
  projectRef: string,
  ref: string,
): Promise<ClusterReadRow> {
  // Four statement shapes, not a CASE on a parameter: a generic plan could then use no index.
  const byProjectId = isUuid(projectRef)
  const byClusterId = isUuid(ref)
  const text = `
    SELECT c.id, c."projectId", c.name, c."templateId", c.spec, c.status, c.labels, c.generation, c.revision,
           c."activeOperationId", c."deletionRequested", c."expiresAt", c."createdAt", c."updatedAt",
           p.name AS "projectName", t.name AS "templateName", t.version AS "templateVersion",
           COALESCE((
             SELECT json_agg(g ORDER BY g."createdAt", g.name) FROM (
               SELECT id, name, role, "machineClass", count, "minCount", "maxCount", zones, labels, taints,
                      "maxSurge", "maxUnavailable", features, provenance, generation, "createdAt", "updatedAt"
               FROM "NodeGroup" WHERE "clusterId" = c.id) g), '[]'::json) AS "nodeGroups"
    FROM "Cluster" c
    JOIN "Project" p ON p.id = c."projectId"
    JOIN "ClusterTemplate" t ON t.id = c."templateId"
    WHERE ${byProjectId ? 'p.id = $1::uuid' : 'p.name = $1'} AND ${byClusterId ? 'c.id = $2::uuid' : 'c.name = $2'}`
  // Straight on the pool when there is one: for this read Prisma's row mapping cost more than the
  // query itself (≈ 370 µs of ≈ 510 µs per call, measured). Inside a transaction, through Prisma.
  const pool = poolOf(db)
  const rows = pool
    ? (
        await pool.query<ClusterReadSqlRow>({
          name: `find-cluster-${byProjectId ? 'pid' : 'pname'}-${byClusterId ? 'cid' : 'cname'}`,
          text,
          values: [projectRef, ref],
        })
      ).rows
    : await db.$queryRawUnsafe<ClusterReadSqlRow[]>(text, projectRef, ref)
  const row = rows[0]
  if (!row) throw notFound('cluster', ref)
  const { projectName, templateName, templateVersion, nodeGroups, ...cluster } = row
  return {
    ...cluster,
    project: { name: projectName },
    template: { name: templateName, version: templateVersion },
    nodeGroups: nodeGroups.map((ng) => ({
      ...ng,
      createdAt: new Date(ng.createdAt),
      updatedAt: new Date(ng.updatedAt),
    })),
  }
}

export interface ClusterListQuery {
  projectId: string
  limit: number
  cursor?: string
  labels?: Labels
  phase?: string
  template?: string
}

/**
 * The statement that picks a page of cluster ids, in list order. Hand-written because a label
 * selector must be a containment (`labels @> '{"k":"v"}'`), which the GIN index on labels answers;
 * Prisma can only compare one path (`labels #> '{k}' = '"v"'`), which scans every row of the project.
 * Without a selector, (projectId, createdAt, id) serves both filter and order.
 */
export function clusterListStatement(q: ClusterListQuery): { text: string; values: unknown[] } {
  const values: unknown[] = [q.projectId]
  const param = (value: unknown, cast = '') => `$${values.push(value)}${cast}`
  const where = [`c."projectId" = $1::uuid`]
  if (q.labels && Object.keys(q.labels).length > 0)
    where.push(`c.labels @> ${param(JSON.stringify(q.labels), '::jsonb')}`)
  if (q.phase) where.push(`c.status->>'phase' = ${param(q.phase)}`)
  if (q.template) {
    where.push(
      `EXISTS (SELECT 1 FROM "ClusterTemplate" t WHERE t.id = c."templateId" AND t.name = ${param(q.template)})`,
    )
  }
  const cursor = decodeCursor(q.cursor)
  if (cursor) where.push(afterCursorSql(cursor, 'c', param))
  const text = `SELECT c.id FROM "Cluster" c WHERE ${where.join(' AND ')} ORDER BY c."createdAt", c.id LIMIT ${param(q.limit + 1, '::int')}`
  return { text, values }
}

export async function listClusters(db: Queryable, q: ClusterListQuery): Promise<Page<ClusterRow>> {
  const { text, values } = clusterListStatement(q)
  const ids = (await db.$queryRawUnsafe<{ id: string }[]>(text, ...values)).map((r) => r.id)
  const rows = await db.cluster.findMany({
    where: { id: { in: ids } },
    include: clusterInclude,
    relationLoadStrategy: 'join',
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  })
  return toPage(rows, q.limit)
}

export interface ClusterRequest {
  name: string
  template: string
  templateVersion?: number
  labels?: Labels
  expiresAt?: string
  overrides: ClusterOverrides
}

export interface ClusterPlan {
  template: TemplateRow
  resolved: ResolvedCluster
  consumption: Consumption
}

/** Resolves and checks a create request without writing anything (also the `dryRun` answer). */
export async function planCluster(
  db: Queryable,
  projectId: string,
  request: ClusterRequest,
): Promise<ClusterPlan> {
  let template: TemplateRow
  try {
    template = await findTemplate(db, projectId, request.template, request.templateVersion)
  } catch (e) {
    if (e instanceof DomainError && e.code === ErrorCode.notFound) {
      throw invalidSpec([{ pointer: '/template', message: e.message }])
    }
    throw e
  }
  if (request.expiresAt) parseExpiry(request.expiresAt)
  const ctx = await loadResolutionContext(db, template, () => '/template')
  const resolved = resolveCluster(ctx, request.overrides)
  const consumption = clusterConsumption(
    [resolved.spec.controlPlane, ...resolved.nodeGroups],
    ctx.machineClasses,
  )
  return { template, resolved, consumption }
}

const json = (value: unknown) => value as Prisma.InputJsonValue

function nodeGroupData(ng: ResolvedNodeGroup) {
  return {
    name: ng.name,
    role: ng.role,
    machineClass: ng.machineClass,
    count: ng.count,
    minCount: ng.minCount,
    maxCount: ng.maxCount,
    zones: ng.zones,
    labels: ng.labels,
    taints: json(ng.taints),
    maxSurge: ng.maxSurge,
    maxUnavailable: ng.maxUnavailable,
    features: json(ng.features),
    provenance: ng.provenance,
  }
}

/** An expiry must be a real instant in the future (and one PostgreSQL can store). */
function parseExpiry(value: string, now = new Date()): Date {
  const date = new Date(value)
  if (Number.isNaN(date.getTime()) || date.getUTCFullYear() > 9999) {
    throw invalidSpec([{ pointer: '/expiresAt', message: `'${value}' is not a time that can be stored.` }])
  }
  if (date.getTime() <= now.getTime()) {
    throw invalidSpec([{ pointer: '/expiresAt', message: 'must be in the future.' }])
  }
  return date
}

/**
 * What in a create request asks for a quota resource: the control plane and each node group that
 * takes some of it, as the request's own member when it has one, else the template that sized it.
 */
function createQuotaPointers(request: ClusterRequest, plan: ClusterPlan) {
  return (line: QuotaLine, machineClasses: ReadonlyMap<string, MachineClassInfo>): string[] => {
    if (line.resource === 'clusters') return ['/']
    const takes = (g: { machineClass: string; count: number }) =>
      amountOf(machinesConsumption(g.machineClass, g.count, machineClasses), line.resource) > 0
    const pointers = new Set<string>()
    if (takes(plan.resolved.spec.controlPlane))
      pointers.add(request.overrides.controlPlane ? '/controlPlane' : '/template')
    for (const ng of plan.resolved.nodeGroups) {
      if (!takes(ng)) continue
      const i = request.overrides.nodeGroups?.findIndex((g) => g.name === ng.name) ?? -1
      pointers.add(i >= 0 ? `/nodeGroups/${i}` : '/template')
    }
    return pointers.size > 0 ? [...pointers] : ['/']
  }
}

/**
 * Writes the desired state and its create operation in the caller's transaction, after checking
 * and reserving the project's quota for the whole cluster (refused: nothing is written).
 */
export async function createCluster(
  tx: Tx,
  actor: Actor,
  projectId: string,
  request: ClusterRequest,
  plan: ClusterPlan,
): Promise<{ cluster: ClusterRow; operation: Operation }> {
  const taken = await tx.cluster.findUnique({ where: { projectId_name: { projectId, name: request.name } } })
  if (taken) {
    throw new DomainError(
      ErrorCode.conflict,
      `A cluster named '${request.name}' already exists in this project.`,
      {
        violations: [
          { pointer: '/name', message: 'Choose another name, or delete the existing cluster first.' },
        ],
        extensions: { clusterId: taken.id },
      },
    )
  }
  await reserveQuota(tx, projectId, plan.consumption, createQuotaPointers(request, plan))
  const now = new Date()
  const cluster = await tx.cluster.create({
    data: {
      projectId,
      name: request.name,
      templateId: plan.template.id,
      request: json(request.overrides),
      spec: json(plan.resolved.spec),
      status: json(initialClusterStatus(now)),
      labels: request.labels ?? {},
      expiresAt: request.expiresAt ? parseExpiry(request.expiresAt) : null,
      nodeGroups: { create: plan.resolved.nodeGroups.map(nodeGroupData) },
    },
  })
  const operation = await createOperation(tx, actor, 'cluster.create', {
    projectId,
    clusterId: cluster.id,
    resource: { kind: 'cluster', id: cluster.id, name: cluster.name },
  })
  await tx.cluster.update({ where: { id: cluster.id }, data: { activeOperationId: operation.id } })
  await recordAudit(tx, actor, {
    projectId,
    action: 'cluster.create',
    targetKind: 'cluster',
    targetId: cluster.id,
    data: json({
      name: request.name,
      template: `${plan.template.name}@${plan.template.version}`,
      operationId: operation.id,
    }),
  })
  return { cluster: await findCluster(tx, projectId, cluster.id), operation }
}

/** Takes the row lock that serialises every change to one cluster, and re-reads under it. */
export async function lockCluster(tx: Tx, projectId: string, ref: string): Promise<ClusterRow> {
  const rows = isUuid(ref)
    ? await tx.$queryRaw<{ id: string }[]>`
        SELECT id FROM "Cluster" WHERE id = ${ref}::uuid AND "projectId" = ${projectId}::uuid FOR UPDATE`
    : await tx.$queryRaw<{ id: string }[]>`
        SELECT id FROM "Cluster" WHERE name = ${ref} AND "projectId" = ${projectId}::uuid FOR UPDATE`
  const id = rows[0]?.id
  if (!id) throw notFound('cluster', ref)
  return findCluster(tx, projectId, id)
}

/**
 * Locks a cluster for a change. One that is being deleted takes none, whatever else runs on it: it
 * answers 409 `cluster-deleting`, naming the delete.
 */
export async function lockLiveCluster(tx: Tx, projectId: string, ref: string): Promise<ClusterRow> {
  const cluster = await lockCluster(tx, projectId, ref)
  await assertNotDeleting(tx, cluster)
  return cluster
}

/**
 * Refuses a second mutating operation on a busy cluster, naming the one that runs. (A cluster being
 * deleted was refused when it was locked: see `lockLiveCluster`.)
 */
export function assertIdle(cluster: ClusterRow) {
  if (cluster.activeOperationId) {
    throw new DomainError(
      ErrorCode.operationInProgress,
      `Cluster '${cluster.name}' is busy with operation ${cluster.activeOperationId}; wait for it or cancel it.`,
      { extensions: { operationId: cluster.activeOperationId } },
    )
  }
}

/** Starts a mutating operation on a locked, idle cluster and marks it active. */
export async function startClusterOperation(
  tx: Tx,
  actor: Actor,
  cluster: ClusterRow,
  kind: OperationKind,
  params: unknown = {},
  resource: { kind: string; id: string; name: string } = {
    kind: 'cluster',
    id: cluster.id,
    name: cluster.name,
  },
): Promise<Operation> {
  assertIdle(cluster)
  const operation = await createOperation(
    tx,
    actor,
    kind,
    { projectId: cluster.projectId, clusterId: cluster.id, resource },
    json(params),
  )
  await tx.cluster.update({
    where: { id: cluster.id },
    data: { activeOperationId: operation.id, revision: { increment: 1 } },
  })
  return operation
}

export interface ClusterPatch {
  labels?: Labels | null
  expiresAt?: string | null
  features?: PartialFeatureValues
}

/** Reads a node group back as the overrides it carries, so the cluster can be re-resolved. */
function nodeGroupAsOverride(ng: NodeGroup): NodeGroupInput {
  const provenance = ng.provenance as Provenance
  const features: Record<string, Record<string, unknown>> = {}
  for (const [name, value] of Object.entries(ng.features as Record<string, Record<string, unknown>>)) {
    for (const [field, v] of Object.entries(value)) {
      const source = provenance[`/features/${name}/${field}`]
      if (source === 'nodeGroup' || source === 'template') {
        features[name] = { ...features[name], [field]: v }
      }
    }
  }
  return {
    name: ng.name,
    role: ng.role,
    machineClass: ng.machineClass,
    count: ng.count,
    minCount: ng.minCount,
    maxCount: ng.maxCount,
    zones: ng.zones,
    labels: ng.labels as Labels,
    taints: ng.taints as NodeGroupInput['taints'],
    maxSurge: ng.maxSurge,
    maxUnavailable: ng.maxUnavailable,
    features,
  }
}

/**
 * Applies a merge patch. Labels and expiry change at once; a feature change re-resolves the cluster,
 * refuses features that cannot change live, and starts an `update-features` operation.
 */
export async function patchCluster(
  tx: Tx,
  actor: Actor,
  projectId: string,
  ref: string,
  patch: ClusterPatch,
  expectedRevision?: number,
): Promise<{ cluster: ClusterRow; operation: Operation }> {
  const current = await lockLiveCluster(tx, projectId, ref)
  assertRevision(current, expectedRevision)
  let operation: Operation | null = null
  let specUpdate: Prisma.ClusterUpdateInput = {}
  if (patch.features && Object.keys(patch.features).length > 0) {
    const request = current.request as ClusterOverrides
    const features = mergeFeaturePatch(request.features ?? {}, patch.features)
    const template = await findTemplate(tx, projectId, current.templateId)
    const resolved = await reresolveCluster(tx, current, template, features, () => '/features')
    const before = (current.spec as unknown as ResolvedClusterSpec).features
    const violations = checkFeatureChange(before, resolved.spec.features)
    if (violations.length > 0) throw invalidSpec(violations)
    if (!sameFeatures(before, resolved.spec.features)) {
      operation = await startClusterOperation(tx, actor, current, 'cluster.update-features', {
        features: resolved.spec.features,
      })
      specUpdate = {
        request: json({ ...request, features }),
        spec: json({ ...resolved.spec, template: (current.spec as unknown as ResolvedClusterSpec).template }),
        generation: { increment: 1 },
      }
      await writeNodeGroupFeatures(tx, current, resolved)
    }
  }
  // Nothing to build: the change is applied below, and its operation says so at once. It takes no
  // part in the one-operation-at-a-time rule, so labels change even while a cluster is busy.
  operation ??= await createOperation(
    tx,
    actor,
    'cluster.update-labels',
    {
      projectId,
      clusterId: current.id,
      resource: { kind: 'cluster', id: current.id, name: current.name },
    },
    json({ labels: patch.labels, expiresAt: patch.expiresAt }),
  )
  await transitionCluster(tx, actor, projectId, current.id, {
    apply: () => ({
      data: {
        ...specUpdate,
        ...(patch.labels !== undefined
          ? { labels: mergeLabels(current.labels as Labels, patch.labels) }
          : {}),
        ...(patch.expiresAt !== undefined
          ? { expiresAt: patch.expiresAt === null ? null : parseExpiry(patch.expiresAt) }
          : {}),
      },
      audit: { action: 'cluster.update', data: { patch, operationId: operation.id } },
    }),
  })
  return { cluster: await findCluster(tx, projectId, current.id), operation }
}

/**
 * Resolves a live cluster again against a template (its own, or an upgrade target): the template's
 * defaults and rules with the cluster's own overrides and its node groups as they are now.
 */
async function reresolveCluster(
  tx: Queryable,
  cluster: ClusterRow,
  template: TemplateRow,
  features: PartialFeatureValues,
  templatePointer: (path: string) => string,
): Promise<ResolvedCluster> {
  const request = cluster.request as ClusterOverrides
  const ctx = await loadResolutionContext(tx, { ...template, nodeGroups: [] }, templatePointer)
  return resolveCluster(ctx, {
    controlPlane: request.controlPlane,
    features,
    nodeGroups: cluster.nodeGroups.map(nodeGroupAsOverride),
  })
}

/** Writes re-resolved node-group features back, keeping each group's own provenance for the rest. */
async function writeNodeGroupFeatures(tx: Tx, cluster: ClusterRow, resolved: ResolvedCluster) {
  for (const ng of resolved.nodeGroups) {
    const old = cluster.nodeGroups.find((n) => n.name === ng.name)!
    const provenance = { ...(old.provenance as Provenance) }
    for (const [k, v] of Object.entries(ng.provenance)) if (k.startsWith('/features/')) provenance[k] = v
    await tx.nodeGroup.update({
      where: { id: old.id },
      data: { features: json(ng.features), provenance, generation: { increment: 1 } },
    })
  }
}

/**
 * What keeps a cluster from moving to `template` as far as versions go: another backend, the
 * template it runs, a downgrade, a skipped minor version. (Resolution adds an expired target.)
 */
function upgradeStepViolations(current: ClusterRow, template: TemplateRow, pointer: string): Violation[] {
  const spec = current.spec as unknown as ResolvedClusterSpec
  const from = parseKubernetesVersion(spec.kubernetesVersion)
  const to = parseKubernetesVersion(template.kubernetesVersion)
  if (template.backend.name !== spec.backend.name) {
    return [
      {
        pointer: '/template',
        message: `Template ${template.name}@${template.version} uses backend '${template.backend.name}'; the cluster runs on '${spec.backend.name}'.`,
      },
    ]
  }
  if (template.id === current.templateId)
    return [{ pointer, message: `The cluster already uses ${template.name}@${template.version}.` }]
  if (compareKubernetesVersions(template.kubernetesVersion, spec.kubernetesVersion) < 0) {
    return [
      {
        pointer,
        message: `Kubernetes cannot be downgraded (${spec.kubernetesVersion} → ${template.kubernetesVersion}).`,
      },
    ]
  }
  if (to[0] !== from[0] || to[1] - from[1] > 1) {
    return [
      {
        pointer,
        message: `Kubernetes upgrades one minor version at a time (${spec.kubernetesVersion} → ${template.kubernetesVersion}); upgrade to ${from[0]}.${from[1] + 1} first.`,
      },
    ]
  }
  return []
}

/**
 * Every template version the cluster could be upgraded to now: those `upgradeCluster` would accept
 * that bring a newer Kubernetes or a newer version of the cluster's own template, newest Kubernetes
 * first. The portal and the CLI offer these instead of repeating the rules.
 */
export async function listUpgradeTargets(db: Queryable, projectId: string, ref: string) {
  const current = await findCluster(db, projectId, ref)
  const spec = current.spec as unknown as ResolvedClusterSpec
  const features = (current.request as ClusterOverrides).features ?? {}
  const candidates = await db.clusterTemplate.findMany({
    where: { AND: [visibleTemplates(projectId), { backend: { name: spec.backend.name } }] },
    include: { backend: true, project: true, k8sVersion: true },
    orderBy: [{ name: 'asc' }, { version: 'desc' }],
  })
  const targets: typeof candidates = []
  for (const template of candidates) {
    if (upgradeStepViolations(current, template, '/template').length > 0) continue
    // At the same Kubernetes version only a newer version of its own template is an upgrade; another
    // template there is a change of template, which POST …/upgrade allows but nobody looks for here.
    const sameKubernetes = compareKubernetesVersions(template.kubernetesVersion, spec.kubernetesVersion) === 0
    const newerOwn = template.name === current.template.name && template.version > current.template.version
    if (sameKubernetes && !newerOwn) continue
    try {
      await reresolveCluster(db, current, template, features, () => '/template')
    } catch (e) {
      // Expired, or the cluster's overrides no longer fit the template: not a target.
      if (e instanceof DomainError && e.code === ErrorCode.invalidSpec) continue
      throw e
    }
    targets.push(template)
  }
  return targets.sort((a, b) => compareKubernetesVersions(b.kubernetesVersion, a.kubernetesVersion))
}

/**
 * Why the cluster as it is cannot move to `template`, in the upgrade request's terms. The body names
 * only a template, so a rule the cluster's own node groups or features break under it points at that
 * template (never into a body that has no node groups); a GPU node group under a template with GPU
 * support off is named, with the templates at that Kubernetes version that could host it.
 */
async function upgradeRefusal(
  tx: Queryable,
  projectId: string,
  cluster: ClusterRow,
  template: TemplateRow,
  pointer: string,
  error: unknown,
): Promise<unknown> {
  if (!(error instanceof DomainError) || error.code !== ErrorCode.invalidSpec) return error
  const target = `${template.name}@${template.version}`
  const gpuGroups: string[] = []
  const violations: Violation[] = []
  for (const v of error.violations) {
    // Re-resolution hands the cluster's node groups over in order, so /nodeGroups/<i> is the i-th.
    const m = /^\/nodeGroups\/(\d+)(\/.*)?$/.exec(v.pointer)
    const group = m ? cluster.nodeGroups[Number(m[1])] : undefined
    const field = m?.[2] ?? ''
    if (group && field === '/features/gpu/enabled') gpuGroups.push(group.name)
    else if (group)
      violations.push({
        pointer,
        message: `Template ${target} cannot host node group '${group.name}': ${v.message}`,
      })
    else if (/^\/(features|controlPlane)(\/|$)/.test(v.pointer))
      violations.push({
        pointer,
        message: `Template ${target} cannot host the cluster as it is: ${v.message}`,
      })
    else violations.push(v)
  }
  if (gpuGroups.length > 0) {
    const sameVersion = await tx.clusterTemplate.findMany({
      where: {
        AND: [
          visibleTemplates(projectId),
          { backendId: template.backendId, kubernetesVersion: template.kubernetesVersion, deprecated: false },
        ],
      },
      select: { name: true, version: true, features: true },
      orderBy: [{ name: 'asc' }, { version: 'desc' }],
    })
    const hosts = sameVersion
      .filter((t) => (t.features as { gpu?: { enabled?: boolean } }).gpu?.enabled === true)
      .map((t) => `${t.name}@${t.version}`)
    const groups = `node group${gpuGroups.length > 1 ? 's' : ''} ${gpuGroups.map((n) => `'${n}'`).join(', ')}`
    violations.unshift({
      pointer,
      message: `Template ${target} has GPU support off, so it cannot host the cluster's GPU ${groups}. ${
        hosts.length > 0
          ? `Templates on Kubernetes ${template.kubernetesVersion} that can: ${hosts.join(', ')}.`
          : `No template on Kubernetes ${template.kubernetesVersion} has GPU support; remove the GPU ${groups} first.`
      }`,
    })
  }
  return invalidSpec(violations)
}

export interface UpgradeRequest {
  template?: string
  templateVersion?: number
}

/**
 * Upgrades to another template version (and so Kubernetes version). Refuses what would dead-end:
 * another backend, a downgrade, skipping a minor version, an expired target.
 */
export async function upgradeCluster(
  tx: Tx,
  actor: Actor,
  projectId: string,
  ref: string,
  target: UpgradeRequest,
): Promise<{ cluster: ClusterRow; operation: Operation }> {
  const current = await lockLiveCluster(tx, projectId, ref)
  assertIdle(current)
  const spec = current.spec as unknown as ResolvedClusterSpec
  let template: TemplateRow
  try {
    template = await findTemplate(
      tx,
      projectId,
      target.template ?? current.template.name,
      target.templateVersion,
    )
  } catch (e) {
    if (e instanceof DomainError && e.code === ErrorCode.notFound)
      throw invalidSpec([{ pointer: '/template', message: e.message }])
    throw e
  }
  const pointer = target.templateVersion !== undefined ? '/templateVersion' : '/template'
  const violations = upgradeStepViolations(current, template, pointer)
  if (violations.length > 0) throw invalidSpec(violations)
  const request = current.request as ClusterOverrides
  const resolved = await reresolveCluster(tx, current, template, request.features ?? {}, () => pointer).catch(
    async (error: unknown) => {
      throw await upgradeRefusal(tx, projectId, current, template, pointer, error)
    },
  )
  // A rolling upgrade adds machines before it removes old ones: one control-plane machine, then each
  // node group's maxSurge, one group at a time. The project's quota must have room for the largest.
  const machineClasses = await loadMachineClasses(tx)
  const surges = [
    machinesConsumption(resolved.spec.controlPlane.machineClass, 1, machineClasses),
    ...resolved.nodeGroups.map((g) =>
      machinesConsumption(g.machineClass, Math.min(g.maxSurge, g.count), machineClasses),
    ),
  ]
  await reserveQuota(tx, projectId, peakConsumption(surges), () => [pointer])
  const operation = await startClusterOperation(tx, actor, current, 'cluster.upgrade', {
    from: {
      template: `${current.template.name}@${current.template.version}`,
      kubernetesVersion: spec.kubernetesVersion,
    },
    to: { template: `${template.name}@${template.version}`, kubernetesVersion: template.kubernetesVersion },
  })
  await writeNodeGroupFeatures(tx, current, resolved)
  await transitionCluster(tx, actor, projectId, current.id, {
    apply: () => ({
      data: {
        template: { connect: { id: template.id } },
        spec: json(resolved.spec),
        generation: { increment: 1 },
      },
      audit: {
        action: 'cluster.upgrade',
        data: { to: `${template.name}@${template.version}`, operationId: operation.id },
      },
    }),
  })
  return { cluster: await findCluster(tx, projectId, current.id), operation }
}

/** JSON merge patch (RFC 7386) on a label map: null removes a label, or all labels. */
function mergeLabels(current: Labels, patch: Labels | null | Record<string, string | null>): Labels {
  if (patch === null) return {}
  const out: Labels = { ...current }
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = v
  }
  return out
}

function mergeFeaturePatch(current: PartialFeatureValues, patch: PartialFeatureValues): PartialFeatureValues {
  const out: Record<string, Record<string, unknown>> = {}
  for (const [k, v] of Object.entries(current)) out[k] = { ...v }
  for (const [k, v] of Object.entries(patch)) out[k] = { ...(out[k] ?? {}), ...v }
  return out as PartialFeatureValues
}

const sameFeatures = (a: FeatureValues, b: FeatureValues) => sameJson(a, b)

/**
 * Requests deletion. Idempotent: while the cluster is going, the same delete operation is returned.
 * Otherwise `expectedRevision` (If-Match) must be the current revision.
 * A pending operation is superseded (cancelled); a running one is asked to stop at its next step,
 * and the delete waits for it.
 */
export async function requestClusterDeletion(
  tx: Tx,
  actor: Actor,
  projectId: string,
  ref: string,
  expectedRevision?: number,
): Promise<{ operation: Operation; created: boolean }> {
  const cluster = await lockCluster(tx, projectId, ref)
  if (cluster.deletionRequested) {
    const existing = await tx.operation.findFirst({
      where: { clusterId: cluster.id, kind: 'cluster.delete', status: { in: ['pending', 'running'] } },
      orderBy: { createdAt: 'desc' },
    })
    // Asked for already: a repeated DELETE (a CI retry) gets the same answer, whatever its If-Match.
    if (existing) return { operation: existing, created: false }
  }
  assertRevision(cluster, expectedRevision)
  if (cluster.activeOperationId) {
    const active = await tx.operation.findUnique({ where: { id: cluster.activeOperationId } })
    if (active?.status === 'pending') {
      await finishPendingAsCancelled(tx, active, {
        type: 'https://kiln.dev/problems/superseded',
        title: 'Superseded by a delete',
        status: 409,
        detail: 'The cluster is being deleted, so this operation will not run.',
        instance: `/v1/operations/${active.id}`,
        requestId: actor.requestId,
      })
    } else if (active?.status === 'running') {
      await tx.operation.update({ where: { id: active.id }, data: { cancelRequested: true } })
    }
  }
  const operation = await createOperation(tx, actor, 'cluster.delete', {
    projectId,
    clusterId: cluster.id,
    resource: { kind: 'cluster', id: cluster.id, name: cluster.name },
  })
  const status = cluster.status as unknown as ClusterStatus
  const conditions = setCondition(
    status.conditions,
    { type: 'Deleting', status: 'True', reason: 'DeletionRequested', message: `Operation ${operation.id}` },
    new Date(),
  )
  await transitionCluster(tx, actor, projectId, cluster.id, {
    apply: () => ({
      data: {
        deletionRequested: true,
        activeOperationId: operation.id,
        status: json({
          ...status,
          conditions,
          phase: derivePhase(conditions, status.observedGeneration),
          message: 'Deletion requested',
        }),
      },
      audit: { action: 'cluster.delete', data: { operationId: operation.id } },
    }),
  })
  return { operation, created: true }
}
