import { notFound } from '@kiln/domain'
import { isUuid } from './catalogue.ts'
import type { Queryable } from './client.ts'
import type { Project } from './generated/prisma/client.ts'

/** A project by id or name. */
export async function findProject(db: Queryable, ref: string): Promise<Project> {
  const project = await db.project.findUnique({ where: isUuid(ref) ? { id: ref } : { name: ref } })
  if (!project) throw notFound('project', ref)
  return project
}
