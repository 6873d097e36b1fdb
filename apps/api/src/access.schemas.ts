import { ProjectRoleSchema, StringEnum } from '@kiln/domain'
import Type from 'typebox'
import { named, Page, ref } from './schemas.ts'

// Schemas of who may do what: members, API tokens, the caller, the audit log. Named like those in
// schemas.ts (one component each in the OpenAPI document).

const Timestamp = Type.String({ format: 'date-time', examples: ['2026-11-21T10:00:00.000Z'] })
const Id = Type.String({ format: 'uuid', examples: ['0b7c2a3e-9d44-4d1a-9a43-52f0f3c2a1b0'] })

export const ProjectRoleRef = ref(named('ProjectRole', ProjectRoleSchema))
export const MemberKindRef = ref(
  named(
    'MemberKind',
    StringEnum(['user', 'group'], {
      description:
        'user: one person, named by the OIDC subject (`sub`) the issuer gives them (GET /v1/me shows yours). group: everyone whose token carries the group in its groups claim.',
    }),
  ),
)

const memberExample = {
  id: '5d0c1f8e-3b7a-4c2e-9f1d-8a6b4e2c0d9f',
  project: 'demo',
  kind: 'group',
  name: 'atlas-developers',
  role: 'member',
  createdBy: 'user:alice',
  createdAt: '2026-11-21T10:00:00.000Z',
}

export const ProjectMemberSchema = named(
  'ProjectMember',
  Type.Object(
    {
      id: Id,
      project: Type.String({ description: 'Project name.' }),
      kind: MemberKindRef,
      name: Type.String(),
      role: ProjectRoleRef,
      createdBy: Type.String({ description: 'Who added it: `user:<subject>` or `token:<id>`.' }),
      createdAt: Timestamp,
    },
    {
      additionalProperties: false,
      description:
        'A user or an OIDC group with a role in a project. A person’s role is the highest of their own and their groups’.',
      examples: [memberExample],
    },
  ),
)

export const ProjectMemberCreateSchema = named(
  'ProjectMemberCreate',
  Type.Object(
    {
      kind: MemberKindRef,
      name: Type.String({ minLength: 1, maxLength: 255, pattern: '^\\S(.*\\S)?$' }),
      role: ProjectRoleRef,
    },
    {
      additionalProperties: false,
      description: 'Who to add, and with which role.',
      examples: [
        { kind: 'group', name: 'atlas-developers', role: 'member' },
        { kind: 'user', name: '248289761001', role: 'admin' },
      ],
    },
  ),
)

export const ProjectMemberUpdateSchema = named(
  'ProjectMemberUpdate',
  Type.Object(
    { role: ProjectRoleRef },
    { additionalProperties: false, description: 'The member’s new role.', examples: [{ role: 'admin' }] },
  ),
)

const tokenExample = {
  id: '9e4a7c2b-1d3f-4e5a-8b6c-0f2d4e6a8c1b',
  project: 'demo',
  name: 'ci-pipeline',
  role: 'member',
  prefix: 'kiln_3f9a1c7e',
  state: 'active',
  createdBy: 'user:alice',
  createdAt: '2026-11-21T10:00:00.000Z',
  expiresAt: '2027-02-19T10:00:00.000Z',
  lastUsedAt: '2026-11-21T10:05:00.000Z',
  revokedAt: null,
}

const tokenFields = {
  id: Id,
  project: Type.String({ description: 'Project name.' }),
  name: Type.String(),
  role: ProjectRoleRef,
  prefix: Type.String({
    description:
      'The token’s public beginning (`kiln_` and 8 hex digits), to recognise it; never the secret.',
  }),
  state: StringEnum(['active', 'expired', 'revoked']),
  createdBy: Type.String({ description: 'Who created it: `user:<subject>` or `token:<id>`.' }),
  createdAt: Timestamp,
  expiresAt: Timestamp,
  lastUsedAt: Type.Union([Timestamp, Type.Null()], {
    description: 'When it last authenticated a request (to the minute).',
  }),
  revokedAt: Type.Union([Timestamp, Type.Null()]),
}

export const ApiTokenSchema = named(
  'ApiToken',
  Type.Object(tokenFields, {
    additionalProperties: false,
    description:
      'A project-scoped credential for CI, sent as `Authorization: Bearer kiln_…`. Kiln keeps only a hash of its secret.',
    examples: [tokenExample],
  }),
)

/** At most a year: a token that lives longer should be re-issued, not forgotten. */
export const maxTokenLifetimeDays = 365

export const ApiTokenCreateSchema = named(
  'ApiTokenCreate',
  Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$' }),
      role: ProjectRoleRef,
      expiresAt: Type.String({
        format: 'date-time',
        description: `Required: when the token stops working; in the future, at most ${maxTokenLifetimeDays} days away (and, for a token created with a token, no later than that one).`,
      }),
    },
    {
      additionalProperties: false,
      description: 'A new token: its role may not exceed yours.',
      examples: [{ name: 'ci-pipeline', role: 'member', expiresAt: '2027-02-19T10:00:00.000Z' }],
    },
  ),
)

export const ApiTokenCreatedSchema = named(
  'ApiTokenCreated',
  Type.Object(
    {
      ...tokenFields,
      token: Type.String({
        description: 'The token. Shown this once: Kiln keeps only a hash and cannot show it again.',
        examples: ['kiln_3f9a1c7e_5b2d8f4a1c9e7b3d6f0a2c4e8b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a0c2e4b6d8f1a'],
      }),
    },
    {
      additionalProperties: false,
      description: 'A token just created, with its secret.',
      examples: [
        {
          ...tokenExample,
          lastUsedAt: null,
          token: 'kiln_3f9a1c7e_5b2d8f4a1c9e7b3d6f0a2c4e8b1d3f5a7c9e0b2d4f6a8c1e3b5d7f9a0c2e4b6d8f1a',
        },
      ],
    },
  ),
)

export const CallerSchema = named(
  'Caller',
  Type.Object(
    {
      subject: Type.String({
        description:
          '`user:<OIDC subject>` (add people as members by the part after `user:`), `token:<id>`, or `user:local-operator` in the single-user mode.',
      }),
      kind: StringEnum(['user', 'token', 'local']),
      platformAdmin: Type.Boolean(),
      groups: Type.Array(Type.String(), { description: 'OIDC groups (users).' }),
      projects: Type.Array(
        Type.Object({ project: Type.String(), role: ProjectRoleRef }, { additionalProperties: false }),
        { description: 'Projects you have a role in (platform admins are admin in every project).' },
      ),
    },
    {
      additionalProperties: false,
      description: 'Who the API takes you for, and your roles.',
      examples: [
        {
          subject: 'user:248289761001',
          kind: 'user',
          platformAdmin: false,
          groups: ['atlas-developers'],
          projects: [{ project: 'demo', role: 'member' }],
        },
      ],
    },
  ),
)

export const AuditEventSchema = named(
  'AuditEvent',
  Type.Object(
    {
      id: Type.String({ pattern: '^[0-9]+$', description: 'Increasing with time.' }),
      project: Type.String({ description: 'Project name.' }),
      actor: Type.String({
        description: '`user:<subject>`, `token:<id>`, `user:local-operator` or `system:worker`.',
      }),
      action: Type.String({ examples: ['cluster.create'] }),
      targetKind: Type.String({ examples: ['cluster'] }),
      targetId: Type.String(),
      requestId: Type.String(),
      data: Type.Record(Type.String(), Type.Unknown(), { description: 'Details of the action.' }),
      createdAt: Timestamp,
    },
    {
      additionalProperties: false,
      description:
        'One mutation or credential issuance: who (user or token), what, on which target, in which request.',
      examples: [
        {
          id: '4711',
          project: 'demo',
          actor: 'token:9e4a7c2b-1d3f-4e5a-8b6c-0f2d4e6a8c1b',
          action: 'cluster.create',
          targetKind: 'cluster',
          targetId: '6f1e2d3c-4b5a-4978-8f6e-5d4c3b2a1908',
          requestId: '2b0f7c6e-8d1a-4e3b-9c5f-7a6d4e2b1c0f',
          data: { name: 'ci-run-4711', template: 'k8s-1.31@1' },
          createdAt: '2026-11-21T10:00:00.000Z',
        },
      ],
    },
  ),
)

export const ProjectMemberListSchema = Page(
  'ProjectMemberList',
  ref(ProjectMemberSchema),
  'A page of a project’s members, oldest first.',
)
export const ApiTokenListSchema = Page(
  'ApiTokenList',
  ref(ApiTokenSchema),
  'A page of a project’s API tokens (never their secrets), oldest first.',
)
export const AuditEventListSchema = Page(
  'AuditEventList',
  ref(AuditEventSchema),
  'A page of a project’s audit events, oldest first unless order=desc.',
)
