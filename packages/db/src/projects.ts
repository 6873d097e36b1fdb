import { namedUsersLimit, notFound, stillInUse } from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import { isUuid } from './catalogue.ts'
import type { Queryable, Tx } from './client.ts'
import type { Project } from './generated/prisma/client.ts'

/** A project by id or name. */
export async function findProject(db: Queryable, ref: string): Promise<Project> {
  const project = await db.project.findUnique({ where: isUuid(ref) ? { id: ref } : { name: ref } })
  if (!project) throw notFound('project', ref)
  return project
}

/**
 * Deletes a project with nothing in it, and everything that only exists for it: members, API tokens
 * (and their idempotency records), quota, private templates, and the finished operations of clusters
 * already deleted. The audit log keeps its rows. A project with clusters (deleting ones included) or
 * unfinished operations is a 409 naming them.
 */
export async function deleteProject(tx: Tx, actor: Actor, ref: string): Promise<void> {
  const project = await findProject(tx, ref)
  // Locks out cluster creation until this commits: an insert referencing the row waits for the lock,
  // so no cluster can appear between the checks below and the delete.
  const locked = await tx.$queryRaw<
    unknown[]
  >`SELECT 1 FROM "Project" WHERE id = ${project.id}::uuid FOR UPDATE`
  if (locked.length === 0) throw notFound('project', ref)
  const subject = `Project '${project.name}'`
  const inProject = { projectId: project.id }
  const clusterCount = await tx.cluster.count({ where: inProject })
  if (clusterCount > 0) {
    const clusters = await tx.cluster.findMany({
      where: inProject,
      select: { name: true },
      orderBy: { name: 'asc' },
      take: namedUsersLimit,
    })
    throw stillInUse(
      subject,
      { kind: 'cluster', count: clusterCount, names: clusters.map((c) => c.name) },
      'Delete them first.',
    )
  }
  const unfinished = await tx.operation.findMany({
    where: { ...inProject, status: { in: ['pending', 'running'] } },
    select: { id: true },
  })
  if (unfinished.length > 0) {
    throw stillInUse(
      subject,
      { kind: 'unfinished operation', count: unfinished.length, names: unfinished.map((o) => o.id) },
      'Wait for them to end.',
    )
  }
  const templates = await tx.clusterTemplate.findMany({ where: inProject, select: { id: true } })
  const tokens = await tx.apiToken.findMany({ where: inProject, select: { id: true } })
  await tx.idempotencyRecord.deleteMany({ where: { principal: { in: tokens.map((t) => `token:${t.id}`) } } })
  // Members, tokens and the quota cascade with the row; templates and operations do not. A private
  // template is only used in its own project, which has no clusters left.
  await tx.operation.deleteMany({ where: inProject })
  await tx.clusterTemplate.deleteMany({ where: inProject })
  await tx.project.delete({ where: { id: project.id } })
  await recordAudit(tx, actor, {
    projectId: project.id,
    action: 'project.delete',
    targetKind: 'project',
    targetId: project.id,
    data: { name: project.name, templates: templates.length, tokens: tokens.length },
  })
}
