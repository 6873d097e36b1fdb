import { type AuditEvent, findProject, listAuditEvents } from '@kiln/db'
import { StringEnum } from '@kiln/domain'
import Type from 'typebox'
import { AuditEventListSchema, type AuditEventSchema } from '../access.schemas.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { ListQuery, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { ProjectParams } from './projects.routes.ts'

function auditEventView(e: AuditEvent, project: string): Type.Static<typeof AuditEventSchema> {
  return {
    id: e.id.toString(),
    project,
    actor: e.actor,
    action: e.action,
    targetKind: e.targetKind,
    targetId: e.targetId,
    requestId: e.requestId,
    data: (e.data ?? {}) as Record<string, unknown>,
    createdAt: e.createdAt.toISOString(),
  }
}

const Filter = (description: string, examples: string[]) =>
  Type.Optional(Type.String({ minLength: 1, maxLength: 255, description, examples }))

export function registerAuditRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/projects/:project/audit',
    {
      config: { permission: 'audit:read' },
      schema: {
        operationId: 'listAuditEvents',
        summary: 'Read a project’s audit log (project admins)',
        description:
          'Every mutation and every credential issued in the project: who (a user or a token), what, on which target, in which request. Oldest first unless `order=desc`; page with `cursor` as elsewhere.',
        tags: ['audit'],
        params: ProjectParams,
        querystring: Type.Object(
          {
            ...ListQuery,
            action: Filter('Exact, or a prefix ending in `.*`.', ['cluster.create', 'credential.*']),
            actor: Filter('`user:<subject>` or `token:<id>`.', ['user:alice']),
            targetKind: Filter('What was acted on.', ['cluster']),
            targetId: Filter('Its id.', ['6f1e2d3c-4b5a-4978-8f6e-5d4c3b2a1908']),
            since: Type.Optional(
              Type.String({ format: 'date-time', description: 'Events at or after this time.' }),
            ),
            until: Type.Optional(
              Type.String({ format: 'date-time', description: 'Events before this time.' }),
            ),
            order: Type.Optional(
              StringEnum(['asc', 'desc'], {
                default: 'asc',
                description: 'Oldest first (`asc`) or newest first.',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(AuditEventListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const q = request.query
      const page = await listAuditEvents(db, {
        projectId: project.id,
        action: q.action,
        actor: q.actor,
        targetKind: q.targetKind,
        targetId: q.targetId,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
        order: q.order ?? 'asc',
        limit: q.limit ?? 50,
        cursor: q.cursor,
      })
      return { items: page.items.map((e) => auditEventView(e, project.name)), nextCursor: page.nextCursor }
    },
  )
}
