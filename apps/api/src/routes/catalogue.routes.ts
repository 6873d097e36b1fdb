import { isUuid, pageInMemory, recordAudit } from '@kiln/db'
import {
  DomainError,
  ErrorCode,
  type FeatureName,
  featureCatalogue,
  featureDefinition,
  featureNames,
  newestVersionFirst,
  notFound,
} from '@kiln/domain'
import Type from 'typebox'
import { actorOf } from '../auth.ts'
import { expectedRevision } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  FeatureListSchema,
  FeatureSchema,
  KubernetesVersionListSchema,
  KubernetesVersionSchema,
  ListQuery,
  MachineClassListSchema,
  MachineClassSchema,
  named,
  ref,
  VersionLifecycleRef,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { kubernetesVersionView, machineClassView } from '../views.ts'

function featureView(name: FeatureName) {
  const def = featureDefinition(name)
  return {
    name: def.name,
    title: def.title,
    description: def.description,
    schema: def.schema as unknown as Record<string, unknown>,
    default: def.default as unknown as Record<string, unknown>,
    kubernetesVersions: def.kubernetesVersions,
    backends: def.backends,
    mutable: def.mutable,
    nodeGroupScoped: def.nodeGroupScoped,
    conflicts: def.conflicts,
  }
}

const KubernetesVersionUpdateBody = named('KubernetesVersionUpdate', {
  ...Type.Object(
    { lifecycle: VersionLifecycleRef },
    { additionalProperties: false, examples: [{ lifecycle: 'deprecated' }] },
  ),
  description: 'A change to a Kubernetes version’s lifecycle.',
})

export function registerCatalogueRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/features',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'listFeatures',
        summary: 'List the feature catalogue',
        description: 'Every typed switch a template or cluster may set, with its schema, default and rules.',
        tags: ['features'],
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(FeatureListSchema) },
      },
    },
    async (request) => {
      const page = pageInMemory(featureNames, (name) => [featureNames.indexOf(name)], request.query)
      return { items: page.items.map(featureView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/features/:feature',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'getFeature',
        summary: 'Get one feature',
        description:
          'One feature of the catalogue: its settings with their types and defaults, and what it needs of a template and backend.',
        tags: ['features'],
        params: Type.Object({
          feature: Type.String({ maxLength: 63, description: 'Feature name.', examples: ['ingress'] }),
        }),
        response: { 200: ref(FeatureSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const name = request.params.feature
      if (!Object.hasOwn(featureCatalogue, name)) throw notFound('feature', name)
      return featureView(name as FeatureName)
    },
  )

  app.get(
    '/v1/machine-classes',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'listMachineClasses',
        summary: 'List machine classes',
        description:
          'The kinds of machine the registered backends offer (CPU, memory, GPUs), which node groups name in `machineClass`.',
        tags: ['machine-classes'],
        querystring: Type.Object(
          {
            ...ListQuery,
            backend: Type.Optional(
              Type.String({ maxLength: 63, description: 'Only this backend’s classes.' }),
            ),
            gpu: Type.Optional(
              Type.Boolean({ description: 'Only classes with (true) or without (false) GPUs.' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(MachineClassListSchema) },
      },
    },
    async (request) => {
      const { backend, gpu } = request.query
      const rows = await db.machineClass.findMany({
        where: {
          ...(backend ? { backend: { name: backend } } : {}),
          ...(gpu === undefined ? {} : gpu ? { gpuCount: { gt: 0 } } : { gpuCount: 0 }),
        },
        include: { backend: true },
      })
      const page = pageInMemory(rows, (mc) => [mc.name], request.query)
      return { items: page.items.map(machineClassView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/machine-classes/:machineClass',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'getMachineClass',
        summary: 'Get a machine class by name or id',
        description: 'One machine class, by name or id: its size, GPUs and the backend that offers it.',
        tags: ['machine-classes'],
        params: Type.Object({
          machineClass: Type.String({ maxLength: 63, description: 'Machine class name or id.' }),
        }),
        response: { 200: ref(MachineClassSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const ref = request.params.machineClass
      const mc = await db.machineClass.findUnique({
        where: isUuid(ref) ? { id: ref } : { name: ref },
        include: { backend: true },
      })
      if (!mc) throw notFound('machine class', ref)
      return machineClassView(mc)
    },
  )

  app.get(
    '/v1/kubernetes-versions',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'listKubernetesVersions',
        summary: 'List Kubernetes versions and their lifecycle',
        description:
          'Every Kubernetes version Kiln knows, with its lifecycle (`supported`, `deprecated`, `expired`): templates pin one of them.',
        tags: ['kubernetes-versions'],
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(KubernetesVersionListSchema) },
      },
    },
    async (request) => {
      const versions = await db.kubernetesVersion.findMany()
      const page = pageInMemory(versions, (v) => [...newestVersionFirst(v.version), v.version], request.query)
      return { items: page.items.map(kubernetesVersionView), nextCursor: page.nextCursor }
    },
  )

  const VersionParams = Type.Object({
    version: Type.String({ maxLength: 32, description: 'Kubernetes version.', examples: ['1.31.4'] }),
  })

  app.get(
    '/v1/kubernetes-versions/:version',
    {
      config: { etag: true, permission: 'catalogue:read' },
      schema: {
        operationId: 'getKubernetesVersion',
        summary: 'Get a Kubernetes version',
        description: 'One Kubernetes version and its lifecycle.',
        tags: ['kubernetes-versions'],
        params: VersionParams,
        response: { 200: ref(KubernetesVersionSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const v = await db.kubernetesVersion.findUnique({ where: { version: request.params.version } })
      if (!v) throw notFound('Kubernetes version', request.params.version)
      reply.header('etag', `"${v.revision}"`)
      return kubernetesVersionView(v)
    },
  )

  app.patch(
    '/v1/kubernetes-versions/:version',
    {
      config: { etag: true, permission: 'catalogue:write' },
      schema: {
        operationId: 'updateKubernetesVersion',
        summary: 'Change a Kubernetes version’s lifecycle (platform admins)',
        description:
          'Expiring a version stops new clusters on it; existing clusters keep running until upgraded.',
        tags: ['kubernetes-versions'],
        params: VersionParams,
        headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
        body: ref(KubernetesVersionUpdateBody),
        response: { 200: ref(KubernetesVersionSchema), ...problemResponses(404, 412) },
      },
    },
    async (request, reply) => {
      const expected = expectedRevision(request)
      const updated = await db.$transaction(async (tx) => {
        const current = await tx.kubernetesVersion.findUnique({ where: { version: request.params.version } })
        if (!current) throw notFound('Kubernetes version', request.params.version)
        const { count } = await tx.kubernetesVersion.updateMany({
          where: { version: current.version, ...(expected !== undefined ? { revision: expected } : {}) },
          data: { lifecycle: request.body.lifecycle, revision: { increment: 1 } },
        })
        if (count === 0) {
          throw new DomainError(ErrorCode.preconditionFailed, 'The version changed since you read it.', {
            extensions: { currentETag: `"${current.revision}"` },
          })
        }
        await recordAudit(tx, actorOf(request), {
          projectId: null,
          action: 'kubernetes-version.update',
          targetKind: 'kubernetes-version',
          targetId: current.version,
          data: { lifecycle: request.body.lifecycle },
        })
        return tx.kubernetesVersion.findUniqueOrThrow({ where: { version: current.version } })
      })
      reply.header('etag', `"${updated.revision}"`)
      return kubernetesVersionView(updated)
    },
  )
}
