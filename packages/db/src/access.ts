import { createHash, randomBytes } from 'node:crypto'
import { DomainError, ErrorCode, highestRole, notFound, type ProjectRole } from '@kiln/domain'
import { type Actor, recordAudit } from './audit.ts'
import { isUuid } from './catalogue.ts'
import type { Queryable, Tx } from './client.ts'
import type { ApiToken, MemberKind, ProjectMember } from './generated/prisma/client.ts'
import { afterCursor, decodeCursor, type Page, toPage } from './pagination.ts'

// Who may do what in a project: members (OIDC users and groups, with a role) and API tokens (a
// project, a role and an expiry). Both are written with their audit row in the caller's transaction.

/**
 * An API token as presented: `kiln_<8 hex: public id>_<64 hex: secret>`. The public part is stored
 * (as `prefix`) so lists can show which token is which; the secret is stored only as its SHA-256.
 * Underscores are word characters, so a double-click selects the whole token.
 */
export const apiTokenPattern = /^kiln_([0-9a-f]{8})_([0-9a-f]{64})$/

/** SHA-256 (hex) of a token's secret part: what the database holds and looks tokens up by. */
export const hashTokenSecret = (secret: string) => createHash('sha256').update(secret).digest('hex')

/** How often a token's `lastUsedAt` is written at most: using a token is not a write per request. */
export const tokenUseGranularityMs = 60_000

export type ApiTokenCheck =
  | { ok: true; token: ApiToken }
  | { ok: false; reason: 'malformed' | 'unknown' | 'revoked' | 'expired' }

/**
 * Checks a presented API token. A hit is a unique-index lookup by the secret's hash, so there is no
 * secret comparison to time. Records the use at most once a minute per token (the condition is in
 * the UPDATE, so concurrent requests and several API processes write it once).
 */
export async function checkApiToken(
  db: Queryable,
  presented: string,
  now = new Date(),
): Promise<ApiTokenCheck> {
  const m = apiTokenPattern.exec(presented)
  if (!m) return { ok: false, reason: 'malformed' }
  const token = await db.apiToken.findUnique({ where: { secretHash: hashTokenSecret(m[2]!) } })
  if (!token || token.prefix !== `kiln_${m[1]}`) return { ok: false, reason: 'unknown' }
  if (token.revokedAt) return { ok: false, reason: 'revoked' }
  if (token.expiresAt <= now) return { ok: false, reason: 'expired' }
  const staleBefore = new Date(now.getTime() - tokenUseGranularityMs)
  if (!token.lastUsedAt || token.lastUsedAt < staleBefore) {
    await db.apiToken.updateMany({
      where: { id: token.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: staleBefore } }] },
      data: { lastUsedAt: now },
    })
  }
  return { ok: true, token }
}

export interface NewApiToken {
  projectId: string
  name: string
  role: ProjectRole
  expiresAt: Date
}

/** Creates a token; the plaintext is returned here once and never stored. */
export async function createApiToken(
  tx: Tx,
  actor: Actor,
  input: NewApiToken,
): Promise<{ token: ApiToken; plaintext: string }> {
  const taken = await tx.apiToken.findUnique({
    where: { projectId_name: { projectId: input.projectId, name: input.name } },
  })
  if (taken) {
    throw new DomainError(
      ErrorCode.conflict,
      `A token named '${input.name}' already exists in this project.`,
      {
        violations: [{ pointer: '/name', message: 'is taken (revoked tokens keep their names)' }],
      },
    )
  }
  const publicId = randomBytes(4).toString('hex')
  const secret = randomBytes(32).toString('hex')
  const token = await tx.apiToken.create({
    data: {
      projectId: input.projectId,
      name: input.name,
      role: input.role,
      secretHash: hashTokenSecret(secret),
      prefix: `kiln_${publicId}`,
      createdBy: actor.subject,
      expiresAt: input.expiresAt,
    },
  })
  await recordAudit(tx, actor, {
    projectId: input.projectId,
    action: 'token.create',
    targetKind: 'token',
    targetId: token.id,
    data: {
      name: token.name,
      role: token.role,
      prefix: token.prefix,
      expiresAt: token.expiresAt.toISOString(),
    },
  })
  return { token, plaintext: `kiln_${publicId}_${secret}` }
}

/** A project's token by id or name. */
export async function findApiToken(db: Queryable, projectId: string, ref: string): Promise<ApiToken> {
  const token = await db.apiToken.findFirst({
    where: isUuid(ref) ? { id: ref, projectId } : { name: ref, projectId },
  })
  if (!token) throw notFound('token', ref)
  return token
}

export async function listApiTokens(
  db: Queryable,
  projectId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<ApiToken>> {
  const rows = await db.apiToken.findMany({
    where: { projectId, ...afterCursor(decodeCursor(page.cursor)) },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    take: page.limit + 1,
  })
  return toPage(rows, page.limit)
}

/** Revokes a token; revoking a revoked token changes nothing (and is not audited again). */
export async function revokeApiToken(
  tx: Tx,
  actor: Actor,
  projectId: string,
  ref: string,
): Promise<ApiToken> {
  const token = await findApiToken(tx, projectId, ref)
  if (token.revokedAt) return token
  const revoked = await tx.apiToken.update({ where: { id: token.id }, data: { revokedAt: new Date() } })
  await recordAudit(tx, actor, {
    projectId,
    action: 'token.revoke',
    targetKind: 'token',
    targetId: token.id,
    data: { name: token.name, prefix: token.prefix },
  })
  return revoked
}

/** Every project an OIDC identity has a role in, through its subject or any of its groups; the highest role wins. */
export async function projectRolesOf(
  db: Queryable,
  identity: { subject: string; groups: readonly string[] },
): Promise<Map<string, ProjectRole>> {
  const rows = await db.projectMember.findMany({
    where: {
      OR: [
        { kind: 'user', name: identity.subject },
        ...(identity.groups.length > 0
          ? [{ kind: 'group' as const, name: { in: [...identity.groups] } }]
          : []),
      ],
    },
    select: { projectId: true, role: true },
  })
  const byProject = new Map<string, ProjectRole[]>()
  for (const row of rows) byProject.set(row.projectId, [...(byProject.get(row.projectId) ?? []), row.role])
  const out = new Map<string, ProjectRole>()
  for (const [projectId, roles] of byProject) out.set(projectId, highestRole(roles)!)
  return out
}

export interface NewMember {
  projectId: string
  kind: MemberKind
  name: string
  role: ProjectRole
}

export async function addProjectMember(tx: Tx, actor: Actor, input: NewMember): Promise<ProjectMember> {
  const taken = await tx.projectMember.findUnique({
    where: { projectId_kind_name: { projectId: input.projectId, kind: input.kind, name: input.name } },
  })
  if (taken) {
    throw new DomainError(
      ErrorCode.conflict,
      `The ${input.kind} '${input.name}' is already a member (${taken.role}); PATCH the member to change its role.`,
      {
        violations: [{ pointer: '/name', message: 'is already a member' }],
        extensions: { memberId: taken.id },
      },
    )
  }
  const member = await tx.projectMember.create({ data: { ...input, createdBy: actor.subject } })
  await recordAudit(tx, actor, {
    projectId: input.projectId,
    action: 'member.add',
    targetKind: 'member',
    targetId: member.id,
    data: { kind: member.kind, name: member.name, role: member.role },
  })
  return member
}

export async function listProjectMembers(
  db: Queryable,
  projectId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<Page<ProjectMember>> {
  const rows = await db.projectMember.findMany({
    where: { projectId, ...afterCursor(decodeCursor(page.cursor)) },
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
    take: page.limit + 1,
  })
  return toPage(rows, page.limit)
}

/** A member of the project, by id; 404 otherwise. */
async function findMember(tx: Tx, projectId: string, id: string): Promise<ProjectMember> {
  const member = isUuid(id) ? await tx.projectMember.findFirst({ where: { id, projectId } }) : null
  if (!member) throw notFound('member', id)
  return member
}

/**
 * Locks the project's membership for the rest of the transaction, so two admins removing each other
 * at the same moment cannot both succeed.
 */
async function lockMembership(tx: Tx, projectId: string) {
  await tx.$queryRaw`SELECT id FROM "Project" WHERE id = ${projectId}::uuid FOR UPDATE`
}

/** Refuses a change that would leave the project with no admin member: only platform admins could then manage it. */
async function keepAnAdmin(tx: Tx, projectId: string, changing: ProjectMember, pointer: string) {
  if (changing.role !== 'admin') return
  const others = await tx.projectMember.count({
    where: { projectId, role: 'admin', id: { not: changing.id } },
  })
  if (others === 0) {
    throw new DomainError(
      ErrorCode.conflict,
      `The ${changing.kind} '${changing.name}' is the project's last admin; make another member admin first.`,
      { violations: [{ pointer, message: 'would leave the project without an admin' }] },
    )
  }
}

export async function removeProjectMember(
  tx: Tx,
  actor: Actor,
  projectId: string,
  id: string,
): Promise<void> {
  await lockMembership(tx, projectId)
  const member = await findMember(tx, projectId, id)
  await keepAnAdmin(tx, projectId, member, '/member')
  await tx.projectMember.delete({ where: { id: member.id } })
  await recordAudit(tx, actor, {
    projectId,
    action: 'member.remove',
    targetKind: 'member',
    targetId: member.id,
    data: { kind: member.kind, name: member.name, role: member.role },
  })
}

/** Changes a member's role; the same role again changes nothing and records nothing. */
export async function changeProjectMemberRole(
  tx: Tx,
  actor: Actor,
  projectId: string,
  id: string,
  role: ProjectRole,
): Promise<ProjectMember> {
  await lockMembership(tx, projectId)
  const member = await findMember(tx, projectId, id)
  if (member.role === role) return member
  if (role !== 'admin') await keepAnAdmin(tx, projectId, member, '/role')
  const updated = await tx.projectMember.update({ where: { id: member.id }, data: { role } })
  await recordAudit(tx, actor, {
    projectId,
    action: 'member.update',
    targetKind: 'member',
    targetId: member.id,
    data: { kind: member.kind, name: member.name, from: member.role, to: role },
  })
  return updated
}
