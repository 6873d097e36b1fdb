import { StringEnum } from './names.ts'

/**
 * Roles in a project, weakest first. viewer reads; member also creates, changes and deletes clusters
 * and issues cluster credentials; admin also manages members and API tokens and reads the audit log
 * and quotas. Platform admins (a separate, platform-wide flag) act as admin in every project.
 */
export const projectRoles = ['viewer', 'member', 'admin'] as const
export type ProjectRole = (typeof projectRoles)[number]

export const ProjectRoleSchema = StringEnum(projectRoles, {
  description:
    'viewer: read the project. member: also create, change and delete clusters and issue their credentials. admin: also manage members and API tokens, read quotas and the audit log.',
})

/** Whether `role` (none: not in the project) grants at least `required`. */
export const roleAtLeast = (role: ProjectRole | undefined, required: ProjectRole): boolean =>
  role !== undefined && projectRoles.indexOf(role) >= projectRoles.indexOf(required)

/** The strongest of some roles (a user may hold one directly and others through groups). */
export function highestRole(roles: Iterable<ProjectRole>): ProjectRole | undefined {
  let best: ProjectRole | undefined
  for (const role of roles) if (!best || roleAtLeast(role, best)) best = role
  return best
}
