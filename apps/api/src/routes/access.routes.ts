import {
  type ApiToken,
  addProjectMember,
  changeProjectMemberRole,
  createApiToken,
  findProject,
  listApiTokens,
  listProjectMembers,
  type ProjectMember,
  removeProjectMember,
  revokeApiToken,
  runTransaction,
} from '@kiln/db'
import { invalidSpec, roleAtLeast, type Violation } from '@kiln/domain'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import {
  ApiTokenCreatedSchema,
  ApiTokenCreateSchema,
  ApiTokenListSchema,
  type ApiTokenSchema,
  CallerSchema,
  maxTokenLifetimeDays,
  ProjectMemberCreateSchema,
  ProjectMemberListSchema,
  ProjectMemberSchema,
  ProjectMemberUpdateSchema,
} from '../access.schemas.ts'
import { actorOf, type ProjectAccess } from '../auth.ts'
import { refuseReplay, respondOnce } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { ListQuery, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { ProjectParams } from './projects.routes.ts'

const dayMs = 24 * 3600 * 1000

function memberView(m: ProjectMember, project: string): Type.Static<typeof ProjectMemberSchema> {
  return {
    id: m.id,
    project,
    kind: m.kind,
    name: m.name,
    role: m.role,
    createdBy: m.createdBy,
    createdAt: m.createdAt.toISOString(),
  }
}

/** Picks the public fields of a token: never its hash. */
function tokenView(t: ApiToken, project: string, now = new Date()): Type.Static<typeof ApiTokenSchema> {
  return {
    id: t.id,
    project,
    name: t.name,
    role: t.role,
    prefix: t.prefix,
    state: t.revokedAt ? 'revoked' : t.expiresAt <= now ? 'expired' : 'active',
    createdBy: t.createdBy,
    createdAt: t.createdAt.toISOString(),
    expiresAt: t.expiresAt.toISOString(),
    lastUsedAt: t.lastUsedAt?.toISOString() ?? null,
    revokedAt: t.revokedAt?.toISOString() ?? null,
  }
}

/** Set by authorization for every route in a project. */
function accessOf(request: FastifyRequest): ProjectAccess {
  if (!request.projectAccess) throw new Error(`No project access resolved for ${request.routeOptions.url}`)
  return request.projectAccess
}

/** What a new token may be: no stronger than its creator, and (when a token creates it) no longer-lived. */
function tokenViolations(
  request: FastifyRequest,
  body: { role: string; expiresAt: string },
  now: Date,
): Violation[] {
  const violations: Violation[] = []
  const { role } = accessOf(request)
  if (!roleAtLeast(role, body.role as typeof role)) {
    violations.push({ pointer: '/role', message: `may not exceed your own role (${role})` })
  }
  const expiresAt = new Date(body.expiresAt)
  if (expiresAt <= now) violations.push({ pointer: '/expiresAt', message: 'must be in the future' })
  else if (expiresAt.getTime() > now.getTime() + maxTokenLifetimeDays * dayMs) {
    violations.push({ pointer: '/expiresAt', message: `must be at most ${maxTokenLifetimeDays} days away` })
  }
  const creatorExpiry = request.principal.expiresAt
  if (creatorExpiry && expiresAt > creatorExpiry) {
    violations.push({
      pointer: '/expiresAt',
      message: `may not be later than the token you are using (${creatorExpiry.toISOString()})`,
    })
  }
  return violations
}

const TokenParams = Type.Object({
  project: Type.String({ maxLength: 63, description: 'Project name or id.' }),
  token: Type.String({ maxLength: 63, description: 'Token name or id.' }),
})
const MemberParams = Type.Object({
  project: Type.String({ maxLength: 63, description: 'Project name or id.' }),
  member: Type.String({ format: 'uuid', description: 'Member id.' }),
})
const noContent = { 204: Type.Null({ description: 'Done.' }) }

export function registerAccessRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/me',
    {
      config: { permission: 'self:read' },
      schema: {
        operationId: 'getCaller',
        summary: 'Who the API takes you for, and your roles',
        description:
          'Who your credentials make you (a user, an API token or the local operator), whether you are a platform admin, and your role in each project.',
        tags: ['access'],
        response: { 200: ref(CallerSchema) },
      },
    },
    async (request) => {
      const p = request.principal
      const projects = await db.project.findMany({
        where: { id: { in: [...p.roles.keys()] } },
        orderBy: { name: 'asc' },
      })
      return {
        subject: p.subject,
        kind: p.kind === 'anonymous' ? 'user' : p.kind,
        platformAdmin: p.platformAdmin,
        groups: [...p.groups],
        projects: projects.map((project) => ({ project: project.name, role: p.roles.get(project.id)! })),
      }
    },
  )

  app.get(
    '/v1/projects/:project/members',
    {
      config: { permission: 'members:read' },
      schema: {
        operationId: 'listProjectMembers',
        summary: 'List a project’s members',
        description:
          'Everyone with a role in the project (users and OIDC groups) and their role. Any member of the project may list them.',
        tags: ['access'],
        params: ProjectParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(ProjectMemberListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const page = await listProjectMembers(db, project.id, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
      })
      return { items: page.items.map((m) => memberView(m, project.name)), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/v1/projects/:project/members',
    {
      config: { permission: 'members:write' },
      schema: {
        operationId: 'addProjectMember',
        summary: 'Give a user or an OIDC group a role in a project (project admins)',
        description:
          'A user is named by their OIDC subject; a group by its name in the groups claim. To change a role, PATCH the member.',
        tags: ['access'],
        params: ProjectParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(ProjectMemberCreateSchema),
        response: { 201: ref(ProjectMemberSchema), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      return respondOnce(db, request, reply, async (tx) => {
        const member = await addProjectMember(tx, actorOf(request), {
          projectId: project.id,
          ...request.body,
        })
        return {
          statusCode: 201,
          body: memberView(member, project.name),
          headers: { location: `/v1/projects/${project.name}/members/${member.id}` },
        }
      })
    },
  )

  app.patch(
    '/v1/projects/:project/members/:member',
    {
      config: { permission: 'members:write' },
      schema: {
        operationId: 'updateProjectMember',
        summary: 'Change a member’s role (project admins)',
        description:
          'Taking the admin role from the project’s last admin is refused with 409: make another member admin first.',
        tags: ['access'],
        params: MemberParams,
        body: ref(ProjectMemberUpdateSchema),
        response: { 200: ref(ProjectMemberSchema), ...problemResponses(404, 409) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const member = await db.$transaction((tx) =>
        changeProjectMemberRole(tx, actorOf(request), project.id, request.params.member, request.body.role),
      )
      return memberView(member, project.name)
    },
  )

  app.delete(
    '/v1/projects/:project/members/:member',
    {
      config: { permission: 'members:write' },
      schema: {
        operationId: 'removeProjectMember',
        summary: 'Remove a member from a project (project admins)',
        tags: ['access'],
        params: MemberParams,
        description:
          'Removing the project’s last admin is refused with 409: make another member admin first.',
        response: { ...noContent, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      await db.$transaction((tx) =>
        removeProjectMember(tx, actorOf(request), project.id, request.params.member),
      )
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/v1/projects/:project/tokens',
    {
      config: { permission: 'tokens:read' },
      schema: {
        operationId: 'listApiTokens',
        summary: 'List a project’s API tokens (project admins)',
        description: 'Revoked and expired tokens included, with when each was last used; never a secret.',
        tags: ['access'],
        params: ProjectParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(ApiTokenListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const page = await listApiTokens(db, project.id, {
        limit: request.query.limit ?? 50,
        cursor: request.query.cursor,
      })
      const now = new Date()
      return { items: page.items.map((t) => tokenView(t, project.name, now)), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/v1/projects/:project/tokens',
    {
      config: { permission: 'tokens:write' },
      schema: {
        operationId: 'createApiToken',
        summary: 'Create an API token for CI (project admins)',
        description:
          'Answers the token once: Kiln stores only a SHA-256 of its secret. Send it as `Authorization: Bearer kiln_…`. An expiry is required (at most a year); the role may not exceed yours. Nothing is stored that could replay the answer, so an Idempotency-Key is refused: retrying creates another token (or 409 on the same name).',
        tags: ['access'],
        params: ProjectParams,
        body: ref(ApiTokenCreateSchema),
        response: { 201: ref(ApiTokenCreatedSchema), ...problemResponses(404, 409, 422) },
      },
    },
    async (request, reply) => {
      refuseReplay(request, 'token')
      const project = await findProject(db, request.params.project)
      const now = new Date()
      const violations = tokenViolations(request, request.body, now)
      if (violations.length > 0) throw invalidSpec(violations)
      const { token, plaintext } = await runTransaction(db, (tx) =>
        createApiToken(tx, actorOf(request), {
          projectId: project.id,
          name: request.body.name,
          role: request.body.role,
          expiresAt: new Date(request.body.expiresAt),
        }),
      )
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .header('location', `/v1/projects/${project.name}/tokens/${token.id}`)
        .send({ ...tokenView(token, project.name, now), token: plaintext })
    },
  )

  app.delete(
    '/v1/projects/:project/tokens/:token',
    {
      config: { permission: 'tokens:write' },
      schema: {
        operationId: 'revokeApiToken',
        summary: 'Revoke an API token (project admins)',
        description:
          'From now on the token is refused (401). Revoking a revoked token answers 204 again; the token stays listed as revoked.',
        tags: ['access'],
        params: TokenParams,
        response: { ...noContent, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      await db.$transaction((tx) => revokeApiToken(tx, actorOf(request), project.id, request.params.token))
      return reply.code(204).send(null)
    },
  )
}
