import {
  checkProjectQuota,
  createCluster,
  etagOf,
  findCluster,
  findClusterInProject,
  findProject,
  listClusters,
  listUpgradeTargets,
  pageInMemory,
  patchCluster,
  planCluster,
  requestClusterDeletion,
  upgradeCluster,
} from '@kiln/db'
import { ClusterPhase, LabelPatch, type Labels, newestVersionFirst, operationCatalogue } from '@kiln/domain'
import Type from 'typebox'
import { acceptOnce, sendAccepted } from '../accepted.ts'
import { actorOf } from '../auth.ts'
import { refuseBody } from '../bodyless.ts'
import { expectedRevision } from '../idempotency.ts'
import { HttpProblem } from '../problems.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  ClusterCreateSchema,
  ClusterListSchema,
  ClusterPlanSchema,
  ClusterSchema,
  FeatureOverridesSchema,
  ListQuery,
  MachineListSchema,
  named,
  OperationSchema,
  ref,
  UpgradeTargetListSchema,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { clusterSpecView, clusterView, machineView, plannedNodeGroupView, templateView } from '../views.ts'
import { ProjectParams } from './projects.routes.ts'
import { quotaCheckView } from './quotas.routes.ts'

export const ClusterParams = Type.Object({
  project: ProjectParams.properties.project,
  cluster: Type.String({ maxLength: 63, description: 'Cluster name or id.' }),
})

/** `?label=k=v` (repeatable) → a label map; a malformed one is a 400 naming it. */
function parseLabelFilters(raw: string[] | undefined): Labels {
  const out: Labels = {}
  for (const [i, item] of (raw ?? []).entries()) {
    const eq = item.indexOf('=')
    if (eq <= 0) {
      throw new HttpProblem(400, 'invalid-request', 'Invalid label filter', `'${item}' is not key=value.`, [
        { pointer: `/label/${i}`, in: 'query', message: 'must be key=value' },
      ])
    }
    out[item.slice(0, eq)] = item.slice(eq + 1)
  }
  return out
}

/** A create body as the cluster request the database layer plans and creates from. */
function clusterRequestOf(body: Type.Static<typeof ClusterCreateSchema>) {
  const { name, template, templateVersion, labels, expiresAt, ...overrides } = body
  return { name, template, templateVersion, labels, expiresAt, overrides }
}

const ClusterUpdateBody = named('ClusterUpdate', {
  ...Type.Object(
    {
      labels: Type.Optional(
        Type.Union([LabelPatch, Type.Null()], {
          description: 'Merge patch: a null value removes that label; null removes all.',
        }),
      ),
      expiresAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
      features: Type.Optional(ref(FeatureOverridesSchema)),
    },
    {
      additionalProperties: false,
      minProperties: 1,
      examples: [{ labels: { team: 'cms' }, features: { monitoring: { enabled: true } } }],
    },
  ),
  description: 'A JSON merge patch of a cluster: labels, expiry and features.',
})

const ClusterUpgradeBody = named('ClusterUpgrade', {
  ...Type.Object(
    {
      template: Type.Optional(
        Type.String({ maxLength: 63, description: 'Defaults to the cluster’s template.' }),
      ),
      templateVersion: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 2_147_483_647,
          description: 'Defaults to the latest version that is not deprecated.',
        }),
      ),
    },
    { additionalProperties: false, examples: [{ template: 'k8s-1.32' }] },
  ),
  description: 'The template (and version) to move the cluster to.',
})

export function registerClusterRoutes(app: KilnApp, deps: RouteDeps) {
  const { db } = deps
  app.post(
    '/v1/projects/:project/cluster-plans',
    {
      // Planning shows what a create would do, so it needs what a create needs.
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'planCluster',
        summary: 'Plan a cluster: what a create would do, writing nothing',
        description:
          'Takes the body `createCluster` takes and applies the same rules (422 naming each field that breaks one), then answers with the resolved plan, what the cluster would consume and how that compares with the project’s quota. Nothing is written and nothing is reserved: the real create is checked again when it is sent.',
        tags: ['clusters'],
        params: ProjectParams,
        body: ref(ClusterCreateSchema),
        response: { 200: ref(ClusterPlanSchema), ...problemResponses(404, 413, 415, 422) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const plan = await planCluster(db, project.id, clusterRequestOf(request.body))
      const quota = await checkProjectQuota(db, project.id, plan.consumption)
      return {
        template: {
          name: plan.template.name,
          version: plan.template.version,
          deprecated: plan.template.deprecated,
        },
        spec: {
          ...clusterSpecView(plan.resolved.spec, []),
          nodeGroups: plan.resolved.nodeGroups.map(plannedNodeGroupView),
        },
        consumption: plan.consumption,
        quota: quotaCheckView(quota),
        operation: { kind: 'cluster.create' as const, steps: [...operationCatalogue['cluster.create']] },
      }
    },
  )

  app.post(
    '/v1/projects/:project/clusters',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'createCluster',
        summary: 'Create a cluster from a template',
        description:
          'Validates the request against the template, the feature catalogue and the backend, writes the desired state and a create operation in one transaction, and answers 202 with the operation. The cluster’s consumption is checked against the project’s quota and reserved in that same transaction (422 `quota-exceeded` when it does not fit). To see the plan without creating anything, send the same body to `planCluster`.',
        tags: ['clusters'],
        params: ProjectParams,
        // No query parameters: the former `?dryRun=true` is refused (400) rather than ignored, so an
        // old client asking for a plan never creates a cluster instead.
        querystring: Type.Object({}, { additionalProperties: false }),
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({
              description: 'Retries with the same key and body return the first response for 24 h.',
            }),
          ),
        }),
        body: ref(ClusterCreateSchema),
        response: {
          202: ref(OperationSchema),
          ...problemResponses(404, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const clusterRequest = clusterRequestOf(request.body)
      return acceptOnce(deps, request, reply, async (tx) => {
        const plan = await planCluster(tx, project.id, clusterRequest)
        const { operation } = await createCluster(tx, actorOf(request), project.id, clusterRequest, plan)
        return { operation, project: project.name }
      })
    },
  )

  app.get(
    '/v1/projects/:project/clusters',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listClusters',
        summary: 'List clusters',
        description: 'Oldest first, by cursor. Filters combine with AND.',
        tags: ['clusters'],
        params: ProjectParams,
        querystring: Type.Object(
          {
            ...ListQuery,
            label: Type.Optional(
              Type.Array(Type.String({ maxLength: 317 }), { description: 'key=value; repeat for several.' }),
            ),
            // Inline, not a $ref: a query parameter's description would be dropped beside one.
            phase: Type.Optional({ ...ClusterPhase, description: 'Only clusters in this phase.' }),
            template: Type.Optional(Type.String({ maxLength: 63, description: 'Template name.' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: ref(ClusterListSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const q = request.query
      const limit = q.limit ?? 50
      const page = await listClusters(db, {
        projectId: project.id,
        limit,
        cursor: q.cursor,
        labels: parseLabelFilters(q.label),
        phase: q.phase,
        template: q.template,
      })
      return { items: page.items.map((c) => clusterView(c, project.name)), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/projects/:project/clusters/:cluster',
    {
      config: { etag: true, permission: 'clusters:read' },
      schema: {
        operationId: 'getCluster',
        summary: 'Get a cluster by name or id',
        description:
          'Includes the effective configuration and where each value came from (`spec.provenance`).',
        tags: ['clusters'],
        params: ClusterParams,
        response: { 200: ref(ClusterSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const cluster = await findClusterInProject(db, request.params.project, request.params.cluster)
      reply.header('etag', etagOf(cluster.revision))
      return clusterView(cluster, cluster.project.name)
    },
  )

  app.patch(
    '/v1/projects/:project/clusters/:cluster',
    {
      config: { etag: true, permission: 'clusters:write' },
      schema: {
        operationId: 'updateCluster',
        summary: 'Change a cluster (JSON merge patch)',
        description:
          'Always answers 202 with an operation. A feature change is checked against the catalogue (some features cannot change on a live cluster) and starts a `cluster.update-features` operation; like every change that builds, it waits for no other operation (409 while one runs). Labels and expiry (and features already in effect) need nothing built: they are applied at once, even while another operation runs, and answered with a `cluster.update-labels` operation that has already succeeded (no steps, progress 100). The new ETag comes with either.',
        tags: ['clusters'],
        params: ClusterParams,
        headers: Type.Object({
          'if-match': Type.Optional(Type.String({ description: 'An ETag from a GET.' })),
        }),
        body: ref(ClusterUpdateBody),
        response: {
          202: ref(OperationSchema),
          ...problemResponses(404, 409, 412, 422),
        },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const { cluster, operation } = await db.$transaction(
        (tx) =>
          patchCluster(
            tx,
            actorOf(request),
            project.id,
            request.params.cluster,
            request.body as Parameters<typeof patchCluster>[4],
            expectedRevision(request),
          ),
        { timeout: 20_000 },
      )
      reply.header('etag', etagOf(cluster.revision))
      return sendAccepted(deps, reply, operation, project.name)
    },
  )

  app.delete(
    '/v1/projects/:project/clusters/:cluster',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'deleteCluster',
        summary: 'Delete a cluster',
        description:
          'Answers 202 with the delete operation. Idempotent: while the cluster is going, the same operation is returned (whatever If-Match says: the delete it asked for is under way); once gone, 404. A pending operation on the cluster is superseded; a running one stops at its next step. With If-Match, a cluster changed since that ETag is not deleted (412). Takes no body: any body is 400.',
        tags: ['clusters'],
        params: ClusterParams,
        headers: Type.Object({
          'if-match': Type.Optional(Type.String({ description: 'An ETag from a GET.' })),
        }),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 412) },
      },
      preValidation: refuseBody,
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const { operation } = await db.$transaction(
        (tx) =>
          requestClusterDeletion(
            tx,
            actorOf(request),
            project.id,
            request.params.cluster,
            expectedRevision(request),
          ),
        { timeout: 20_000 },
      )
      return sendAccepted(deps, reply, operation, project.name)
    },
  )

  app.get(
    '/v1/projects/:project/clusters/:cluster/machines',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listClusterMachines',
        summary: 'List the machines a cluster holds',
        description:
          'Every machine the cluster holds at its backend, whatever its phase: reserved (counted against the backend’s capacity, not yet handed out), being allocated, allocated, running as a node, draining or being released, with what the health checker last saw. A create that failed holds none. Control plane first, then by node group and position.',
        tags: ['clusters'],
        params: ClusterParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: {
          200: ref(MachineListSchema),
          ...problemResponses(404),
        },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const cluster = await findCluster(db, project.id, request.params.cluster)
      const groups = new Map(cluster.nodeGroups.map((ng) => [ng.id, ng.name]))
      const groupOf = (m: { nodeGroupId: string | null }) =>
        m.nodeGroupId ? (groups.get(m.nodeGroupId) ?? null) : null
      const machines = await db.machine.findMany({ where: { clusterId: cluster.id } })
      const page = pageInMemory(
        machines,
        (m) => [m.role === 'control-plane' ? 0 : 1, groupOf(m) ?? '', m.ordinal, m.name],
        request.query,
      )
      return { items: page.items.map((m) => machineView(m, groupOf(m))), nextCursor: page.nextCursor }
    },
  )

  app.get(
    '/v1/projects/:project/clusters/:cluster/upgrades',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listClusterUpgrades',
        summary: 'List the template versions a cluster can be upgraded to',
        description:
          'The targets `POST …/upgrade` accepts now that bring a newer Kubernetes (one minor version up at most) or a newer version of the cluster’s own template: on the cluster’s backend, not expired, and still fitting the cluster’s own overrides. Newest Kubernetes first; empty when the cluster is up to date.',
        tags: ['clusters'],
        params: ClusterParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: {
          200: ref(UpgradeTargetListSchema),
          ...problemResponses(404),
        },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const targets = await listUpgradeTargets(db, project.id, request.params.cluster)
      const page = pageInMemory(
        targets,
        (t) => [...newestVersionFirst(t.kubernetesVersion), t.name, -t.version],
        request.query,
      )
      return { items: page.items.map(templateView), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/v1/projects/:project/clusters/:cluster/upgrade',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'upgradeCluster',
        summary: 'Upgrade a cluster to another template version',
        description:
          'Moves the cluster to a newer version of its template (or another template on the same backend): control plane first, then node group by node group, replacing machines within each group’s maxSurge/maxUnavailable. Downgrades, skipped minor versions, expired targets and a quota without room for the surge machines are refused with 422.',
        tags: ['clusters'],
        params: ClusterParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(ClusterUpgradeBody),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409, 422) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      return acceptOnce(deps, request, reply, async (tx) => {
        const { operation } = await upgradeCluster(
          tx,
          actorOf(request),
          project.id,
          request.params.cluster,
          request.body,
        )
        return { operation, project: project.name }
      })
    },
  )
}
