import { afterCursor, decodeCursor, deleteProject, findProject, recordAudit, toPage } from '@kiln/db'
import { DnsLabel, DomainError, ErrorCode, Labels } from '@kiln/domain'
import Type from 'typebox'
import { actorOf, visibleProjectIds } from '../auth.ts'
import { respondOnce } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { ListQuery, named, ProjectListSchema, ProjectSchema, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { projectView } from '../views.ts'

export const ProjectParams = Type.Object({
  project: Type.String({ maxLength: 63, description: 'Project name or id.' }),
})

const ProjectCreateBody = named('ProjectCreate', {
  ...Type.Object(
    {
      name: DnsLabel,
      displayName: Type.Optional(Type.String({ maxLength: 200 })),
      labels: Type.Optional(Labels),
    },
    { additionalProperties: false, examples: [{ name: 'atlas', displayName: 'ATLAS experiment' }] },
  ),
  description: 'A project to create.',
})

export function registerProjectRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/projects',
    {
      config: { permission: 'projects:read' },
      schema: {
        operationId: 'listProjects',
        summary: 'List the projects you can see',
        description: 'The projects you have a role in (platform admins see all), paged by cursor.',
        tags: ['projects'],
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(ProjectListSchema) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50
      // Only the projects the caller can see.
      const visible = visibleProjectIds(request.principal)
      const rows = await db.project.findMany({
        where: {
          ...(visible === 'all' ? {} : { id: { in: visible } }),
          ...afterCursor(decodeCursor(request.query.cursor)),
        },
        orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
        take: limit + 1,
      })
      const page = toPage(rows, limit)
      return { items: page.items.map(projectView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/projects/:project',
    {
      config: { permission: 'projects:read' },
      schema: {
        operationId: 'getProject',
        summary: 'Get a project by name or id',
        description:
          'One project, by name or id, if you have a role in it (404 otherwise, as if it did not exist).',
        tags: ['projects'],
        params: ProjectParams,
        response: { 200: ref(ProjectSchema), ...problemResponses(404) },
      },
    },
    async (request) => projectView(await findProject(db, request.params.project)),
  )

  app.post(
    '/v1/projects',
    {
      config: { permission: 'projects:write' },
      schema: {
        operationId: 'createProject',
        summary: 'Create a project (platform admins)',
        description:
          'Creates a project, a tenant with its own clusters, members, tokens and quota. Platform admins only; the name must be unique.',
        tags: ['projects'],
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(ProjectCreateBody),
        response: { 201: ref(ProjectSchema), ...problemResponses(409) },
      },
    },
    async (request, reply) =>
      respondOnce(db, request, reply, async (tx) => {
        const { name, displayName, labels } = request.body
        if (await tx.project.findUnique({ where: { name } })) {
          throw new DomainError(ErrorCode.conflict, `Project '${name}' already exists.`, {
            violations: [{ pointer: '/name', message: 'is taken' }],
          })
        }
        const project = await tx.project.create({
          data: { name, displayName: displayName ?? name, labels: labels ?? {} },
        })
        await recordAudit(tx, actorOf(request), {
          projectId: project.id,
          action: 'project.create',
          targetKind: 'project',
          targetId: project.id,
        })
        return {
          statusCode: 201,
          body: projectView(project),
          headers: { location: `/v1/projects/${project.name}` },
        }
      }),
  )

  app.delete(
    '/v1/projects/:project',
    {
      config: { permission: 'projects:delete' },
      schema: {
        operationId: 'deleteProject',
        summary: 'Delete a project with no clusters (project admins)',
        description:
          'Its members, API tokens, quota and private templates go with it, at once; the audit log keeps its entries. A project that still has clusters (deleting ones included) or unfinished operations is refused with 409 naming them: delete the clusters first.',
        tags: ['projects'],
        params: ProjectParams,
        response: { 204: Type.Null({ description: 'Deleted.' }), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await db.$transaction((tx) => deleteProject(tx, actorOf(request), request.params.project))
      return reply.code(204).send(null)
    },
  )
}
