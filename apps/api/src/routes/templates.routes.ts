import {
  afterCursor,
  DbNull,
  decodeCursor,
  deleteTemplate,
  findProject,
  isUuid,
  loadResolutionContext,
  recordAudit,
  type Tx,
  toPage,
} from '@kiln/db'
import {
  DomainError,
  ErrorCode,
  featureNames,
  invalidSpec,
  Labels,
  notFound,
  resolveCluster,
  TemplateName,
  type Violation,
} from '@kiln/domain'
import Type from 'typebox'
import { actorOf, roleIn, visibleProjectIds } from '../auth.ts'
import { expectedRevision, respondOnce } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  BootImageSchema,
  ControlPlaneInputSchema,
  FeatureOverridesSchema,
  ListQuery,
  NodeGroupInputSchema,
  named,
  ref,
  TemplateListSchema,
  TemplateSchema,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { type TemplateWithRelations, templateView } from '../views.ts'

const include = { backend: true, project: true, k8sVersion: true } as const

const TemplateCreate = Type.Object(
  {
    name: TemplateName,
    project: Type.Optional(
      Type.String({ maxLength: 63, description: 'Owning project; omit for a public template.' }),
    ),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    kubernetesVersion: Type.String({ maxLength: 32, examples: ['1.31.4'] }),
    backend: Type.String({ maxLength: 63, examples: ['sim'] }),
    controlPlane: Type.Intersect([ref(ControlPlaneInputSchema)], {
      description: 'count (1, 3 or 5) and machineClass; both required here.',
    }),
    nodeGroups: Type.Array(ref(NodeGroupInputSchema), { maxItems: 32 }),
    features: Type.Optional(ref(FeatureOverridesSchema)),
    lockedFeatures: Type.Optional(
      Type.Array(Type.String({ maxLength: 63 }), { uniqueItems: true, maxItems: 16 }),
    ),
    labels: Type.Optional(Labels),
    image: Type.Optional(ref(BootImageSchema)),
  },
  {
    additionalProperties: false,
    examples: [
      {
        name: 'k8s-standard',
        project: 'demo',
        description: 'Kubernetes 1.31 with traefik ingress; CPU workers.',
        kubernetesVersion: '1.31.4',
        backend: 'sim',
        controlPlane: { count: 3, machineClass: 'm1.large' },
        nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 20 }],
        features: { ingress: { controller: 'traefik' } },
        lockedFeatures: ['cni'],
      },
    ],
  },
)

async function templateRow(tx: Tx, name: string, version?: number): Promise<TemplateWithRelations> {
  const row = await tx.clusterTemplate.findFirst({
    where: isUuid(name) ? { id: name } : { name, ...(version ? { version } : {}) },
    include,
    orderBy: [{ deprecated: 'asc' }, { version: 'desc' }],
  })
  if (!row) throw notFound('template', version ? `${name}@${version}` : name)
  return row
}

const TemplateCreateBody = named('TemplateCreate', {
  ...TemplateCreate,
  description: 'The next version of a template to publish.',
})

const TemplateVersionUpdateBody = named('TemplateVersionUpdate', {
  ...Type.Object(
    { deprecated: Type.Optional(Type.Boolean()), labels: Type.Optional(Labels) },
    {
      additionalProperties: false,
      minProperties: 1,
      examples: [{ deprecated: true, labels: { 'superseded-by': 'k8s-1.32' } }],
    },
  ),
  description: 'What may change on a published template version: `deprecated` and `labels`.',
})

export function registerTemplateRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/templates',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'listTemplates',
        summary: 'List templates',
        description: 'Every version of every template, oldest first.',
        tags: ['templates'],
        querystring: Type.Object(
          {
            ...ListQuery,
            name: Type.Optional(
              Type.String({ maxLength: 63, description: 'Only versions of this template.' }),
            ),
            project: Type.Optional(
              Type.String({ maxLength: 63, description: 'Public templates and this project’s.' }),
            ),
            includeDeprecated: Type.Optional(
              Type.Boolean({ default: true, description: 'false leaves deprecated versions out.' }),
            ),
          },
          { additionalProperties: false },
        ),
        // An unknown or invisible ?project= is 404, as it is in a path.
        response: { 200: ref(TemplateListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const q = request.query
      const limit = q.limit ?? 50
      const project = q.project ? await findProject(db, q.project) : undefined
      // Public templates, and those of projects the caller can see.
      const visible = visibleProjectIds(request.principal)
      if (project && q.project && !roleIn(request.principal, project.id)) throw notFound('project', q.project)
      const rows = await db.clusterTemplate.findMany({
        where: {
          ...(q.name ? { name: q.name } : {}),
          ...(project
            ? { OR: [{ projectId: null }, { projectId: project.id }] }
            : visible === 'all'
              ? {}
              : { OR: [{ projectId: null }, { projectId: { in: visible } }] }),
          ...(q.includeDeprecated === false ? { deprecated: false } : {}),
          ...afterCursor(decodeCursor(q.cursor)),
        },
        include,
        orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
        take: limit + 1,
      })
      const page = toPage(rows, limit)
      return { items: page.items.map(templateView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/templates/:template',
    {
      config: { etag: true, permission: 'catalogue:read' },
      schema: {
        operationId: 'getTemplate',
        summary: 'Get a template: by id, or by name (its latest version that is not deprecated)',
        description:
          'A template by id, or by name: then its latest version that is not deprecated. Clusters are created from a template name and optional version.',
        tags: ['templates'],
        params: Type.Object({
          template: Type.String({ maxLength: 63, description: 'Template name or id.' }),
        }),
        response: { 200: ref(TemplateSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const row = await db.$transaction((tx) => templateRow(tx, request.params.template))
      if (row.projectId && !roleIn(request.principal, row.projectId))
        throw notFound('template', request.params.template)
      reply.header('etag', `"${row.revision}"`)
      return templateView(row)
    },
  )

  const VersionParams = Type.Object({
    template: Type.String({ maxLength: 63, description: 'Template name.' }),
    version: Type.Integer({ minimum: 1, maximum: 2_147_483_647, description: 'Template version.' }),
  })

  app.get(
    '/v1/templates/:template/versions/:version',
    {
      config: { etag: true, permission: 'catalogue:read' },
      schema: {
        operationId: 'getTemplateVersion',
        summary: 'Get one version of a template',
        description:
          'One published (immutable) version of a template, deprecated or not; its `ETag` is for `If-Match` when deprecating it.',
        tags: ['templates'],
        params: VersionParams,
        response: { 200: ref(TemplateSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const row = await db.$transaction((tx) =>
        templateRow(tx, request.params.template, request.params.version),
      )
      if (row.projectId && !roleIn(request.principal, row.projectId)) {
        throw notFound('template', `${request.params.template}@${request.params.version}`)
      }
      reply.header('etag', `"${row.revision}"`)
      return templateView(row)
    },
  )

  app.post(
    '/v1/templates',
    {
      config: { etag: true, permission: 'catalogue:write' },
      schema: {
        operationId: 'createTemplate',
        summary: 'Publish a template version (platform admins)',
        description:
          'Publishes the next version of the named template. Published versions are immutable; clusters keep the version they were created from.',
        tags: ['templates'],
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(TemplateCreateBody),
        response: { 201: ref(TemplateSchema), ...problemResponses(422) },
      },
    },
    async (request, reply) =>
      respondOnce(db, request, reply, async (tx) => {
        const body = request.body
        const violations: Violation[] = []
        const [backend, version, project] = await Promise.all([
          tx.backend.findUnique({ where: { name: body.backend } }),
          tx.kubernetesVersion.findUnique({ where: { version: body.kubernetesVersion } }),
          body.project ? tx.project.findUnique({ where: { name: body.project } }) : Promise.resolve(null),
        ])
        if (!backend)
          violations.push({ pointer: '/backend', message: `Backend '${body.backend}' does not exist.` })
        if (!version) {
          violations.push({
            pointer: '/kubernetesVersion',
            message: `Kubernetes ${body.kubernetesVersion} is not offered; see GET /v1/kubernetes-versions.`,
          })
        }
        if (body.project && !project) {
          violations.push({ pointer: '/project', message: `Project '${body.project}' does not exist.` })
        }
        for (const [i, name] of (body.lockedFeatures ?? []).entries()) {
          if (!(featureNames as string[]).includes(name)) {
            violations.push({ pointer: `/lockedFeatures/${i}`, message: `'${name}' is not a feature.` })
          }
        }
        const { count, machineClass } = body.controlPlane
        if (count === undefined) violations.push({ pointer: '/controlPlane/count', message: 'is required' })
        if (machineClass === undefined)
          violations.push({ pointer: '/controlPlane/machineClass', message: 'is required' })
        if (
          violations.length > 0 ||
          !backend ||
          !version ||
          count === undefined ||
          machineClass === undefined
        ) {
          throw invalidSpec(violations)
        }
        // Publications of one name queue here, so each takes the next version as if they came one by one.
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('template:' || ${body.name}))`
        const latest = await tx.clusterTemplate.findFirst({
          where: { name: body.name },
          orderBy: { version: 'desc' },
        })
        const data = {
          name: body.name,
          version: (latest?.version ?? 0) + 1,
          projectId: project?.id ?? null,
          description: body.description ?? '',
          kubernetesVersion: body.kubernetesVersion,
          backendId: backend.id,
          controlPlane: { count, machineClass },
          nodeGroups: body.nodeGroups,
          features: body.features ?? {},
          lockedFeatures: body.lockedFeatures ?? [],
          labels: body.labels ?? {},
          image: body.image ?? null,
        }
        // The template must itself resolve: every rule a cluster would meet is checked at publication.
        const ctx = await loadResolutionContext(
          tx,
          {
            ...data,
            id: '',
            deprecated: false,
            revision: 1,
            createdAt: new Date(),
            updatedAt: new Date(),
            backend,
          },
          (pointer) => pointer,
        )
        resolveCluster(ctx, {})
        // Prisma writes SQL NULL for a JSON column only when told so.
        const created: TemplateWithRelations = await tx.clusterTemplate.create({
          data: { ...data, image: data.image ?? DbNull },
          include,
        })
        await recordAudit(tx, actorOf(request), {
          projectId: created.projectId,
          action: 'template.publish',
          targetKind: 'template',
          targetId: created.id,
          data: { name: created.name, version: created.version },
        })
        return {
          statusCode: 201,
          body: templateView(created),
          headers: { location: `/v1/templates/${created.name}/versions/${created.version}`, etag: `"1"` },
        }
      }),
  )

  app.patch(
    '/v1/templates/:template/versions/:version',
    {
      config: { etag: true, permission: 'catalogue:write' },
      schema: {
        operationId: 'updateTemplateVersion',
        summary: 'Deprecate a template version or change its labels (platform admins)',
        description: 'Everything else in a published version is immutable: publish a new version instead.',
        tags: ['templates'],
        params: VersionParams,
        headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
        body: ref(TemplateVersionUpdateBody),
        response: { 200: ref(TemplateSchema), ...problemResponses(404, 412) },
      },
    },
    async (request, reply) => {
      const expected = expectedRevision(request)
      const updated = await db.$transaction(async (tx) => {
        const current = await templateRow(tx, request.params.template, request.params.version)
        const { count } = await tx.clusterTemplate.updateMany({
          where: { id: current.id, ...(expected !== undefined ? { revision: expected } : {}) },
          data: { ...request.body, revision: { increment: 1 } },
        })
        if (count === 0) {
          throw new DomainError(ErrorCode.preconditionFailed, 'The template changed since you read it.', {
            extensions: { currentETag: `"${current.revision}"` },
          })
        }
        await recordAudit(tx, actorOf(request), {
          projectId: current.projectId,
          action: 'template.update',
          targetKind: 'template',
          targetId: current.id,
          data: request.body,
        })
        return templateRow(tx, current.id)
      })
      reply.header('etag', `"${updated.revision}"`)
      return templateView(updated)
    },
  )

  app.delete(
    '/v1/templates/:template',
    {
      config: { permission: 'catalogue:write' },
      schema: {
        operationId: 'deleteTemplate',
        summary: 'Delete a template and all its versions (platform admins)',
        description:
          'By name, or by the id of any of its versions: every version goes. While any cluster uses any version it is refused with 409 naming them; deprecate the template to stop new clusters meanwhile.',
        tags: ['templates'],
        params: Type.Object({
          template: Type.String({
            maxLength: 63,
            description: 'The template’s name, or the id of any of its versions.',
          }),
        }),
        response: { 204: Type.Null({ description: 'Deleted.' }), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await db.$transaction((tx) => deleteTemplate(tx, actorOf(request), request.params.template))
      return reply.code(204).send(null)
    },
  )
}
