import { type Actor, checkApiToken, type Database, findProject, isUuid, projectRolesOf } from '@kiln/db'
import { DomainError, ErrorCode, notFound, type ProjectRole, roleAtLeast } from '@kiln/domain'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AuthenticationError, type AuthenticationFailure, type VerifiedIdentity } from './oidc.ts'
import { schemaProblem } from './problems.ts'
import { requestTraceparent } from './request-telemetry.ts'

/** What a route needs; declared next to every route and enforced here, in one place (see `requirements`). */
export type Permission =
  | 'public'
  | 'self:read'
  | 'catalogue:read'
  | 'catalogue:write'
  | 'projects:read'
  | 'projects:write'
  | 'projects:delete'
  | 'clusters:read'
  | 'clusters:write'
  | 'quotas:read'
  | 'quotas:write'
  | 'members:read'
  | 'members:write'
  | 'tokens:read'
  | 'tokens:write'
  | 'audit:read'
  | 'master-keys:rotate'

/**
 * What a permission asks of the caller:
 * - `public`: nothing; no credentials are read.
 * - `authenticated`: any caller (catalogue reads; lists filter what they show).
 * - `platform`: a platform admin.
 * - `project`: at least `role` in the project the path names (`/v1/projects/{project}/…`, or the
 *   project of `/v1/operations/{operation}`). A caller without any role there gets 404, as if the
 *   project did not exist; one with a lesser role gets 403. `platformOnly` also needs a platform admin
 *   (still 404 first for a project the caller cannot see). `listable`: on a path without a project it
 *   only needs authentication (the list shows visible projects); any other project permission on
 *   such a path needs a platform admin.
 */
export type Requirement =
  | { scope: 'public' }
  | { scope: 'authenticated' }
  | { scope: 'platform' }
  | { scope: 'project'; role: ProjectRole; platformOnly?: boolean; listable?: boolean }

export const requirements: Record<Permission, Requirement> = {
  public: { scope: 'public' },
  'self:read': { scope: 'authenticated' },
  'catalogue:read': { scope: 'authenticated' },
  'catalogue:write': { scope: 'platform' },
  'projects:read': { scope: 'project', role: 'viewer', listable: true },
  'projects:write': { scope: 'platform' },
  // Like a GCP project's owner or a Gardener project's owner, the project's admins may delete it.
  'projects:delete': { scope: 'project', role: 'admin' },
  'clusters:read': { scope: 'project', role: 'viewer' },
  'clusters:write': { scope: 'project', role: 'member' },
  'quotas:read': { scope: 'project', role: 'admin' },
  'quotas:write': { scope: 'project', role: 'admin', platformOnly: true },
  'members:read': { scope: 'project', role: 'viewer' },
  'members:write': { scope: 'project', role: 'admin' },
  'tokens:read': { scope: 'project', role: 'admin' },
  'tokens:write': { scope: 'project', role: 'admin' },
  'audit:read': { scope: 'project', role: 'admin' },
  'master-keys:rotate': { scope: 'platform' },
}

/** A route that declares no permission is for platform admins only (and fails the authorization matrix test). */
const undeclared: Requirement = { scope: 'platform' }

export interface Principal {
  /** `user:<OIDC subject>`, `token:<id>`, `user:local-operator`, or `anonymous` on public routes. */
  subject: string
  kind: 'user' | 'token' | 'local' | 'anonymous'
  platformAdmin: boolean
  /** Role per project id (a token has one; a platform admin is admin everywhere without entries here). */
  roles: ReadonlyMap<string, ProjectRole>
  /** OIDC groups (users only). */
  groups: readonly string[]
  /** When the credential stops working (tokens): what it creates may not outlive it. */
  expiresAt?: Date
}

/** What authorization established about the project a request is in. */
export interface ProjectAccess {
  projectId: string
  role: ProjectRole
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal
    /** Set for routes in a project: the caller's effective role there. */
    projectAccess: ProjectAccess | null
  }
  interface FastifyContextConfig {
    permission?: Permission
  }
}

/**
 * The embedded single-user mode's one caller (every permission). Only `authentication: 'local'` uses
 * it, for requests without credentials; the server binds to loopback by default for that reason.
 */
export const localOperator: Principal = {
  subject: 'user:local-operator',
  kind: 'local',
  platformAdmin: true,
  roles: new Map(),
  groups: [],
}

const anonymous: Principal = {
  subject: 'anonymous',
  kind: 'anonymous',
  platformAdmin: false,
  roles: new Map(),
  groups: [],
}

export interface AuthenticationOptions {
  /**
   * `local`: a request without credentials is the local operator (embedded single-user mode, the
   * default for `buildApp`). `required`: it is 401. Presented credentials are checked either way.
   */
  mode: 'local' | 'required'
  /** Checks a bearer JWT (throws AuthenticationError). Without it, only API tokens are bearer credentials. */
  verifyJwt?: (jwt: string) => Promise<VerifiedIdentity>
  /** The portal's session, from its cookie (throws AuthenticationError for a bad one, or a cross-site write). */
  sessionIdentity?: (request: FastifyRequest) => Promise<VerifiedIdentity | undefined>
  /** OIDC groups whose members are platform admins. */
  platformAdminGroups: readonly string[]
}

/** The role a principal acts with in a project; undefined when the project is not visible to it. */
export const roleIn = (principal: Principal, projectId: string): ProjectRole | undefined =>
  principal.platformAdmin ? 'admin' : principal.roles.get(projectId)

/** The projects a principal can see: every one (platform admins), or those it has a role in. */
export const visibleProjectIds = (principal: Principal): 'all' | string[] =>
  principal.platformAdmin ? 'all' : [...principal.roles.keys()]

/**
 * The Kubernetes groups a principal's credentials for a cluster of a project carry: what a kubeconfig
 * gets, and the most a signed CSR may ask for. Like GKE's and Magnum's defaults, whoever may change a
 * cluster (member, admin, platform admin) is its cluster-admin (`system:masters`); a viewer gets
 * `kiln:viewers`, which a cluster binds to read-only access (the credential routes need member today,
 * so viewers are not issued credentials yet); anyone else gets nothing.
 */
export function clusterGroupsOf(principal: Principal, projectId: string): string[] {
  const role = roleIn(principal, projectId)
  if (roleAtLeast(role, 'member')) return ['system:masters']
  if (role === 'viewer') return ['kiln:viewers']
  return []
}

/**
 * Whether a principal may be certified as a `system:` user (a control-plane component, a node, a
 * service account): only one who is cluster-admin anyway.
 */
export const mayActAsSystemUser = (principal: Principal, projectId: string): boolean =>
  clusterGroupsOf(principal, projectId).includes('system:masters')

const tokenRefusals = {
  malformed: ['malformed-token', 'The bearer token is not a Kiln API token or a JWT.'],
  unknown: ['token-unknown', 'The API token is not valid.'],
  revoked: ['token-revoked', 'The API token has been revoked.'],
  expired: ['token-expired', 'The API token has expired.'],
} as const satisfies Record<string, [AuthenticationFailure, string]>

/** A refused credential: 401 with its reason in the document, on every route. */
const refused = ([reason, detail]: readonly [AuthenticationFailure, string]) =>
  new AuthenticationError(reason, detail)

async function userPrincipal(
  db: Database,
  identity: VerifiedIdentity,
  platformAdminGroups: readonly string[],
): Promise<Principal> {
  return {
    subject: `user:${identity.subject}`,
    kind: 'user',
    platformAdmin: identity.groups.some((g) => platformAdminGroups.includes(g)),
    roles: await projectRolesOf(db, identity),
    groups: identity.groups,
  }
}

/** Who is calling: an API token, a bearer JWT, the portal's session, or (local mode) the local operator. */
async function authenticate(
  db: Database,
  options: AuthenticationOptions,
  request: FastifyRequest,
): Promise<Principal> {
  const header = request.headers.authorization
  if (header !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(header)
    if (!m) throw refused(['malformed-token', 'Send credentials as `Authorization: Bearer <token>`.'])
    const presented = m[1]!
    if (presented.startsWith('kiln_')) {
      const check = await checkApiToken(db, presented)
      if (!check.ok) throw refused(tokenRefusals[check.reason])
      const { token } = check
      return {
        subject: `token:${token.id}`,
        kind: 'token',
        platformAdmin: false,
        roles: new Map([[token.projectId, token.role]]),
        groups: [],
        expiresAt: token.expiresAt,
      }
    }
    if (!options.verifyJwt || presented.split('.').length !== 3) {
      throw refused(tokenRefusals.malformed)
    }
    // A refused JWT throws AuthenticationError: 401 (503 when the issuer's keys cannot be fetched).
    return userPrincipal(db, await options.verifyJwt(presented), options.platformAdminGroups)
  }
  const session = await options.sessionIdentity?.(request)
  if (session) return userPrincipal(db, session, options.platformAdminGroups)
  if (options.mode === 'local') return localOperator
  throw refused([
    'missing-token',
    'This API needs credentials: `Authorization: Bearer <API token or OIDC token>`.',
  ])
}

// Projects are looked up on every project-scoped request; names and ids do not change, so a lookup is
// reused for a few seconds (a project deleted meanwhile is then 404 from the route's own query).
const projectIdCaches = new WeakMap<Database, Map<string, { id: string; expires: number }>>()
const projectIdTtlMs = 5000

async function projectIdOf(db: Database, ref: string): Promise<string> {
  let projectIds = projectIdCaches.get(db)
  if (!projectIds) {
    projectIds = new Map()
    projectIdCaches.set(db, projectIds)
  }
  const cached = projectIds.get(ref)
  if (cached && cached.expires > Date.now()) return cached.id
  const project = await findProject(db, ref)
  if (projectIds.size > 10_000) projectIds.clear()
  projectIds.set(ref, { id: project.id, expires: Date.now() + projectIdTtlMs })
  return project.id
}

/**
 * The project a request acts in, from its path: `{project}` (name or id), or the project of
 * `{operation}`. Undefined when the path names neither; a project or operation that does not exist
 * is 404 here, exactly as one the caller cannot see.
 */
async function projectOfRequest(
  db: Database,
  request: FastifyRequest,
): Promise<{ id: string; notVisible: DomainError } | undefined> {
  const params = (request.params ?? {}) as Record<string, string | undefined>
  if (params['project'] !== undefined) {
    const ref = params['project']
    return { id: await projectIdOf(db, ref), notVisible: notFound('project', ref) }
  }
  const operation = params['operation']
  // A malformed id was refused with 400 before authorization; isUuid keeps the query safe anyway.
  if (operation !== undefined && isUuid(operation)) {
    const op = await db.operation.findUnique({ where: { id: operation }, select: { projectId: true } })
    if (!op) throw notFound('operation', operation)
    return { id: op.projectId, notVisible: notFound('operation', operation) }
  }
  return undefined
}

const forbidden = (detail: string) => new DomainError(ErrorCode.forbidden, detail)

async function authorize(db: Database, request: FastifyRequest, requirement: Requirement): Promise<void> {
  const principal = request.principal
  switch (requirement.scope) {
    case 'public':
    case 'authenticated':
      return
    case 'platform':
      if (!principal.platformAdmin) throw forbidden('This needs a platform admin.')
      return
    case 'project': {
      const project = await projectOfRequest(db, request)
      if (!project) {
        if (requirement.listable || principal.platformAdmin) return
        throw forbidden('This needs a platform admin.')
      }
      const role = roleIn(principal, project.id)
      if (!role) throw project.notVisible
      if (requirement.platformOnly && !principal.platformAdmin)
        throw forbidden('This needs a platform admin.')
      if (!roleAtLeast(role, requirement.role)) {
        throw forbidden(`This needs the ${requirement.role} role in the project; you have ${role}.`)
      }
      request.projectAccess = { projectId: project.id, role }
      return
    }
  }
}

/**
 * Authentication and authorization for every route, before anything else runs (body parsing,
 * validation, the handler): a refused request has no side effect, and what it is refused with does not
 * depend on its body. Each route's permission is also written into the OpenAPI document
 * (`x-kiln-permission`), with the bearer security requirement on every route that is not public.
 */
export function registerAuthentication(app: FastifyInstance, db: Database, options: AuthenticationOptions) {
  app.decorateRequest('principal', null as unknown as Principal)
  app.decorateRequest('projectAccess', null)
  app.addHook('onRoute', (route) => {
    // The docs page is public, like the document it shows.
    if (route.url.startsWith('/docs') && !route.config?.permission) {
      route.config = { ...route.config, permission: 'public' }
    }
    const permission = route.config?.permission
    if (!permission) return
    route.schema = {
      ...route.schema,
      'x-kiln-permission': permission,
      ...(permission === 'public' ? { security: [] } : {}),
    } as typeof route.schema
  })
  app.addHook('onRequest', async (request) => {
    request.principal = anonymous
    // No route: the 404 handler answers, and says nothing about any project.
    if (request.routeOptions.url === undefined) return
    const permission = request.routeOptions.config.permission
    if (permission === 'public') return
    request.principal = await authenticate(db, options, request)
    // Authorization reads the path (the project, the operation's project): a malformed one is the
    // caller's 400 naming it, not a guess at who may see it.
    const validateParams = request.getValidationFunction('params')
    if (validateParams && !validateParams(request.params)) {
      throw schemaProblem(validateParams.errors ?? [], 'params')
    }
    await authorize(db, request, permission ? requirements[permission] : undeclared)
  })
}

export const actorOf = (request: FastifyRequest): Actor => ({
  subject: request.principal.subject,
  requestId: request.id,
  traceparent: requestTraceparent(request),
})
