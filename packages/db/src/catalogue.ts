import {
  type FeatureName,
  type MachineClassInfo,
  type NodeGroupInput,
  namedUsersLimit,
  notFound,
  type PartialFeatureValues,
  type ResolutionContext,
  stillInUse,
  type TemplateInfo,
  type VersionLifecycle,
} from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import type { Queryable, Tx } from './client.ts'
import type { Backend, ClusterTemplate, MachineClass } from './generated/prisma/client.ts'

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
/** Paths take a name or an id; an id is a UUID, a name never is (names are DNS labels without…). */
export const isUuid = (value: string) => uuidPattern.test(value)

export function toMachineClassInfo(mc: MachineClass & { backend: Backend }): MachineClassInfo {
  return {
    name: mc.name,
    backend: mc.backend.name,
    cpu: mc.cpu,
    memoryMiB: mc.memoryMiB,
    gpuModel: mc.gpuModel,
    gpuCount: mc.gpuCount,
    zones: mc.zones,
  }
}

export async function loadMachineClasses(db: Queryable): Promise<Map<string, MachineClassInfo>> {
  const rows = await db.machineClass.findMany({ include: { backend: true } })
  return new Map(rows.map((mc) => [mc.name, toMachineClassInfo(mc)]))
}

export type TemplateRow = ClusterTemplate & { backend: Backend }

export function toTemplateInfo(row: TemplateRow): TemplateInfo {
  return {
    name: row.name,
    version: row.version,
    kubernetesVersion: row.kubernetesVersion,
    backend: { name: row.backend.name, kind: row.backend.kind },
    controlPlane: row.controlPlane as TemplateInfo['controlPlane'],
    nodeGroups: row.nodeGroups as NodeGroupInput[],
    features: row.features as PartialFeatureValues,
    lockedFeatures: row.lockedFeatures as FeatureName[],
  }
}

/** Public templates and the project's own. */
export const visibleTemplates = (projectId: string | null) => ({
  OR: [{ projectId: null }, ...(projectId ? [{ projectId }] : [])],
})

/**
 * A template by name (latest non-deprecated version unless `version` is given; if every version is
 * deprecated, the latest) or by id.
 */
export async function findTemplate(
  db: Queryable,
  projectId: string | null,
  ref: string,
  version?: number,
): Promise<TemplateRow> {
  const where = isUuid(ref) ? { id: ref } : { name: ref, ...(version !== undefined ? { version } : {}) }
  const rows = await db.clusterTemplate.findMany({
    where: { AND: [where, visibleTemplates(projectId)] },
    include: { backend: true },
    orderBy: [{ deprecated: 'asc' }, { version: 'desc' }],
    take: 1,
  })
  const row = rows[0]
  if (!row) throw notFound('template', version !== undefined ? `${ref}@${version}` : ref)
  return row
}

/** Everything resolution needs, read from the catalogue tables. */
export async function loadResolutionContext(
  db: Queryable,
  template: TemplateRow,
  templatePointer: ResolutionContext['templatePointer'],
): Promise<ResolutionContext> {
  const [version, machineClasses] = await Promise.all([
    db.kubernetesVersion.findUnique({ where: { version: template.kubernetesVersion } }),
    loadMachineClasses(db),
  ])
  return {
    template: toTemplateInfo(template),
    kubernetesVersionLifecycle: (version?.lifecycle ?? 'expired') as VersionLifecycle,
    machineClasses,
    templatePointer,
  }
}

/**
 * Deletes every version of a template (named, or by the id of one version) that no cluster uses; a
 * template a cluster still uses is a 409 naming those clusters (`project/cluster`).
 */
export async function deleteTemplate(tx: Tx, actor: Actor, ref: string): Promise<void> {
  const named = isUuid(ref)
    ? (await tx.clusterTemplate.findUnique({ where: { id: ref }, select: { name: true } }))?.name
    : ref
  // Locks every version: a cluster created meanwhile waits for this to commit, then finds no template.
  const versions = named
    ? await tx.$queryRaw<{ id: string; version: number; projectId: string | null }[]>`
        SELECT id, version, "projectId" FROM "ClusterTemplate" WHERE name = ${named}
        ORDER BY version FOR UPDATE`
    : []
  if (!named || versions.length === 0) throw notFound('template', ref)
  const usedBy = { templateId: { in: versions.map((v) => v.id) } }
  const count = await tx.cluster.count({ where: usedBy })
  if (count > 0) {
    const clusters = await tx.cluster.findMany({
      where: usedBy,
      select: { name: true, project: { select: { name: true } } },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      take: namedUsersLimit,
    })
    throw stillInUse(
      `Template '${named}'`,
      { kind: 'cluster', count, names: clusters.map((c) => `${c.project.name}/${c.name}`) },
      'Delete them or upgrade them to another template first; deprecate it to stop new clusters meanwhile.',
    )
  }
  await tx.clusterTemplate.deleteMany({ where: { name: named } })
  await recordAudit(tx, actor, {
    projectId: versions[0]!.projectId,
    action: 'template.delete',
    targetKind: 'template',
    targetId: versions[0]!.id,
    data: { name: named, versions: versions.map((v) => v.version) },
  })
}
