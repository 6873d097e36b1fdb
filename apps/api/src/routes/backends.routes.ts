import { type Backend, isUniqueViolation, isUuid, pageInMemory, type Queryable, recordAudit } from '@kiln/db'
import { DomainError, ErrorCode, invalidSpec, notFound, type Violation } from '@kiln/domain'
import { capiConfigViolations, ironicConfigViolations } from '@kiln/drivers'
import Type from 'typebox'
import { actorOf } from '../auth.ts'
import { respondOnce } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { BackendKindRef, BackendListSchema, BackendSchema, ListQuery, named, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { backendView } from '../views.ts'

// Backends: where machines come from. Platform admins register bare-metal (Ironic) and cloud (Cluster
// API) backends here; the worker then reads their machine classes into the catalogue. The simulated
// data centre is seeded at start, so it is not registered here.

const BackendParams = Type.Object({
  backend: Type.String({ maxLength: 63, description: 'Backend name or id.', examples: ['sim'] }),
})

const configDescription =
  'How the driver reaches the backend. For `ironic`: `url`, `auth` (none, token or Keystone; secrets as `{"env": NAME}` or `{"file": PATH}`, never values), `tls`, `machineClasses`, `zoneProperty`, `images`, `controlPlaneEndpoint` and `timeouts` — see the README. For `capi`: `kubeconfig` of the management cluster (`{"env": NAME}` or `{"file": PATH}`), `namespace`, `clusterClass`, and optionally `variables`, `controlPlaneEndpoint`, `machineHealthCheck` and `waitSeconds` — see docs/capi.md. Never returned.'

const capiExample = {
  kubeconfig: { file: '/etc/kiln/management.kubeconfig' },
  namespace: 'kiln-clusters',
  clusterClass: 'kiln-openstack',
}

const ironicExample = {
  url: 'https://ironic.dc.example.org:6385',
  auth: {
    kind: 'keystone',
    authUrl: 'https://keystone.dc.example.org/v3',
    username: 'kiln',
    password: { env: 'KILN_IRONIC_PASSWORD' },
    projectName: 'baremetal',
  },
  images: { default: { source: 'https://images.dc.example.org/k8s-1.31.qcow2', checksum: 'sha256:…' } },
  controlPlaneEndpoint: { server: 'https://{clusterName}.k8s.dc.example.org:6443' },
}

const BackendCreate = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$', maxLength: 63 }),
    kind: BackendKindRef,
    config: Type.Object({}, { additionalProperties: true, description: configDescription }),
  },
  {
    additionalProperties: false,
    examples: [
      { name: 'metal', kind: 'ironic', config: ironicExample },
      { name: 'openstack', kind: 'capi', config: capiExample },
    ],
  },
)

const BackendUpdate = Type.Object(
  {
    config: Type.Object(
      {},
      { additionalProperties: true, description: `Replaces the whole config. ${configDescription}` },
    ),
  },
  { additionalProperties: false, examples: [{ config: ironicExample }] },
)

/** What keeps a kind and config from being registered, as violations of the request body. */
function configViolations(kind: string, config: unknown): Violation[] {
  const check =
    kind === 'ironic' ? ironicConfigViolations : kind === 'capi' ? capiConfigViolations : undefined
  if (!check)
    return [
      {
        pointer: '/kind',
        message:
          'The simulated data centre is seeded at start; only ironic and capi backends are registered here.',
      },
    ]
  return check(config).map((v) => ({ pointer: `/config${v.pointer}`, message: v.message }))
}

async function findBackend(db: Queryable, ref: string): Promise<Backend> {
  const backend = await db.backend.findUnique({ where: isUuid(ref) ? { id: ref } : { name: ref } })
  if (!backend) throw notFound('backend', ref)
  return backend
}

const BackendCreateBody = named('BackendCreate', {
  ...BackendCreate,
  description: 'A backend to register: its kind, name and connection settings.',
})

const BackendUpdateBody = named('BackendUpdate', {
  ...BackendUpdate,
  description: 'A JSON merge patch of a backend’s settings.',
})

export function registerBackendRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/backends',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'listBackends',
        summary: 'List backends',
        description:
          'Where machines come from: each registered backend, its kind and its capabilities. Never credentials.',
        tags: ['backends'],
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: { 200: ref(BackendListSchema) },
      },
    },
    async (request) => {
      const page = pageInMemory(await db.backend.findMany(), (b) => [b.name], request.query)
      return { items: page.items.map(backendView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/backends/:backend',
    {
      config: { permission: 'catalogue:read' },
      schema: {
        operationId: 'getBackend',
        summary: 'Get a backend by name or id',
        description: 'One backend, by name or id, with what it can provide.',
        tags: ['backends'],
        params: BackendParams,
        response: { 200: ref(BackendSchema), ...problemResponses(404) },
      },
    },
    async (request) => backendView(await findBackend(db, request.params.backend)),
  )

  app.post(
    '/v1/backends',
    {
      config: { permission: 'catalogue:write' },
      schema: {
        operationId: 'createBackend',
        summary: 'Register a bare-metal or Cluster API backend (platform admins)',
        description:
          'Registers an OpenStack Ironic backend (bare metal) or a Cluster API management cluster (clouds). The config is checked before it is stored (422 naming the field); the worker then reads the backend’s machine classes and zones — from Ironic, or from the ClusterClass’s machine templates — (at most `CATALOGUE_INTERVAL_MS` later), and templates can use them.',
        tags: ['backends'],
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(BackendCreateBody),
        response: { 201: ref(BackendSchema), ...problemResponses(409, 422) },
      },
    },
    async (request, reply) =>
      respondOnce(db, request, reply, async (tx) => {
        const { name, kind, config } = request.body
        const violations = configViolations(kind, config)
        if (violations.length > 0) throw invalidSpec(violations)
        let created: Backend
        try {
          created = await tx.backend.create({ data: { name, kind, config, capabilities: { zones: [] } } })
        } catch (e) {
          if (!isUniqueViolation(e)) throw e
          throw new DomainError(ErrorCode.conflict, `A backend named '${name}' already exists.`, {
            violations: [{ pointer: '/name', message: 'is taken' }],
          })
        }
        await recordAudit(tx, actorOf(request), {
          projectId: null,
          action: 'backend.create',
          targetKind: 'backend',
          targetId: created.id,
          data: { name, kind },
        })
        return {
          statusCode: 201,
          body: backendView(created),
          headers: { location: `/v1/backends/${created.name}` },
        }
      }),
  )

  app.patch(
    '/v1/backends/:backend',
    {
      config: { permission: 'catalogue:write' },
      schema: {
        operationId: 'updateBackend',
        summary: 'Replace a backend’s config (platform admins)',
        description:
          'Checked like a new backend’s. Operations that start afterwards use the new config; machine classes are re-read at the worker’s next catalogue sync.',
        tags: ['backends'],
        params: BackendParams,
        body: ref(BackendUpdateBody),
        response: { 200: ref(BackendSchema), ...problemResponses(404, 422) },
      },
    },
    async (request) =>
      db.$transaction(async (tx) => {
        const backend = await findBackend(tx, request.params.backend)
        const violations = configViolations(backend.kind, request.body.config)
        if (violations.length > 0) throw invalidSpec(violations)
        const updated = await tx.backend.update({
          where: { id: backend.id },
          data: { config: request.body.config },
        })
        await recordAudit(tx, actorOf(request), {
          projectId: null,
          action: 'backend.update',
          targetKind: 'backend',
          targetId: backend.id,
          data: { name: backend.name },
        })
        return backendView(updated)
      }),
  )

  app.delete(
    '/v1/backends/:backend',
    {
      config: { permission: 'catalogue:write' },
      schema: {
        operationId: 'deleteBackend',
        summary: 'Remove a backend no template uses (platform admins)',
        description:
          'Its machine classes go with it. A backend that templates (and so clusters) still use is refused with 409: delete or deprecate those templates first.',
        tags: ['backends'],
        params: BackendParams,
        response: { 204: Type.Null({ description: 'Removed.' }), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await db.$transaction(async (tx) => {
        const backend = await findBackend(tx, request.params.backend)
        const templates = await tx.clusterTemplate.findMany({
          where: { backendId: backend.id },
          select: { name: true, version: true },
          take: 5,
        })
        if (templates.length > 0) {
          const named = templates.map((t) => `${t.name}@${t.version}`).join(', ')
          throw new DomainError(
            ErrorCode.conflict,
            `Backend '${backend.name}' is used by templates (${named}); remove them first.`,
          )
        }
        await tx.machineClass.deleteMany({ where: { backendId: backend.id } })
        await tx.backend.delete({ where: { id: backend.id } })
        await recordAudit(tx, actorOf(request), {
          projectId: null,
          action: 'backend.delete',
          targetKind: 'backend',
          targetId: backend.id,
          data: { name: backend.name, kind: backend.kind },
        })
      })
      return reply.code(204).send(null)
    },
  )
}
