import {
  createNodeGroup,
  deleteNodeGroup,
  etagOf,
  findCluster,
  findNodeGroup,
  findProject,
  pageInMemory,
  patchNodeGroup,
  resizeNodeGroup,
} from '@kiln/db'
import Type from 'typebox'
import { acceptOnce, sendAccepted } from '../accepted.ts'
import { actorOf } from '../auth.ts'
import { refuseBody } from '../bodyless.ts'
import { expectedRevision } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  ListQuery,
  NodeGroupInputSchema,
  NodeGroupListSchema,
  NodeGroupSchema,
  named,
  OperationSchema,
  ref,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { nodeGroupView } from '../views.ts'
import { ClusterParams } from './clusters.routes.ts'

const NodeGroupParams = Type.Object({
  ...ClusterParams.properties,
  nodegroup: Type.String({ maxLength: 63, description: 'Node group name or id.' }),
})

const {
  name: _name,
  machineClass: _mc,
  count: _count,
  features: _features,
  ...patchable
} = NodeGroupInputSchema.properties

const NodeGroupUpdateBody = named('NodeGroupUpdate', {
  ...Type.Object(patchable, {
    additionalProperties: false,
    minProperties: 1,
    examples: [{ minCount: 2, maxCount: 30, maxSurge: 2 }],
  }),
  description: 'A JSON merge patch of a node group’s bounds, labels, taints, zones or rollout settings.',
})

const NodeGroupResizeBody = named('NodeGroupResize', {
  ...Type.Object(
    {
      count: Type.Integer({ minimum: 0, maximum: 1000 }),
      machinesToRemove: Type.Optional(
        Type.Array(Type.String({ minLength: 1, maxLength: 253 }), {
          uniqueItems: true,
          maxItems: 1000,
        }),
      ),
    },
    { additionalProperties: false, examples: [{ count: 2, machinesToRemove: ['demo-workers-3'] }] },
  ),
  description: 'The number of machines the node group should have.',
})

export function registerNodeGroupRoutes(app: KilnApp, deps: RouteDeps) {
  const { db } = deps
  const base = '/v1/projects/:project/clusters/:cluster/nodegroups'

  app.get(
    base,
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listNodeGroups',
        summary: 'List a cluster’s node groups',
        description:
          'The node groups of a cluster, control plane first, each with its desired size and what is observed.',
        tags: ['nodegroups'],
        params: ClusterParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: {
          200: ref(NodeGroupListSchema),
          ...problemResponses(404),
        },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const cluster = await findCluster(db, project.id, request.params.cluster)
      // Oldest first, as the cluster lists them; names are unique in a cluster.
      const page = pageInMemory(
        cluster.nodeGroups,
        (ng) => [ng.createdAt.toISOString(), ng.name],
        request.query,
      )
      return { items: page.items.map(nodeGroupView), nextCursor: page.nextCursor }
    },
  )

  app.get(
    `${base}/:nodegroup`,
    {
      config: { etag: true, permission: 'clusters:read' },
      schema: {
        operationId: 'getNodeGroup',
        summary: 'Get a node group',
        description: 'One node group of a cluster: its spec, status and `ETag` (for `If-Match` on PATCH).',
        tags: ['nodegroups'],
        params: NodeGroupParams,
        response: { 200: ref(NodeGroupSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const cluster = await findCluster(db, project.id, request.params.cluster)
      const ng = findNodeGroup(cluster, request.params.nodegroup)
      reply.header('etag', etagOf(ng.revision))
      return nodeGroupView(ng)
    },
  )

  app.post(
    base,
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'createNodeGroup',
        summary: 'Add a node group',
        description:
          'Checked against the cluster’s backend and features; answers 202 with the operation that adds the machines.',
        tags: ['nodegroups'],
        params: ClusterParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(NodeGroupInputSchema),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409, 422) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      return acceptOnce(deps, request, reply, async (tx) => {
        const { operation } = await createNodeGroup(
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

  app.patch(
    `${base}/:nodegroup`,
    {
      config: { etag: true, permission: 'clusters:write' },
      schema: {
        operationId: 'updateNodeGroup',
        summary: 'Change a node group’s bounds, labels, taints, zones or rollout settings',
        description: 'To change the number of machines, use resize.',
        tags: ['nodegroups'],
        params: NodeGroupParams,
        headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
        body: ref(NodeGroupUpdateBody),
        response: { 200: ref(NodeGroupSchema), ...problemResponses(404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const ng = await db.$transaction(
        (tx) =>
          patchNodeGroup(
            tx,
            actorOf(request),
            project.id,
            request.params.cluster,
            request.params.nodegroup,
            request.body,
            expectedRevision(request),
          ),
        { timeout: 20_000 },
      )
      reply.header('etag', etagOf(ng.revision))
      return nodeGroupView(ng)
    },
  )

  app.post(
    `${base}/:nodegroup/resize`,
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'resizeNodeGroup',
        summary: 'Resize a node group',
        description:
          'Scale to `count` within [minCount, maxCount]; when scaling down, `machinesToRemove` names machines to remove first.',
        tags: ['nodegroups'],
        params: NodeGroupParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(NodeGroupResizeBody),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409, 422) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      return acceptOnce(deps, request, reply, async (tx) => {
        const { operation } = await resizeNodeGroup(
          tx,
          actorOf(request),
          project.id,
          request.params.cluster,
          request.params.nodegroup,
          request.body,
        )
        return { operation, project: project.name }
      })
    },
  )

  app.delete(
    `${base}/:nodegroup`,
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'deleteNodeGroup',
        summary: 'Delete a node group',
        description:
          'Answers 202 with the operation that drains and releases its machines. With If-Match, a node group changed since that ETag is not deleted (412). Takes no body: any body is 400.',
        tags: ['nodegroups'],
        params: NodeGroupParams,
        headers: Type.Object({
          'if-match': Type.Optional(Type.String({ description: 'An ETag from a GET of the node group.' })),
        }),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409, 412) },
      },
      preValidation: refuseBody,
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const operation = await db.$transaction(
        (tx) =>
          deleteNodeGroup(
            tx,
            actorOf(request),
            project.id,
            request.params.cluster,
            request.params.nodegroup,
            expectedRevision(request),
          ),
        { timeout: 20_000 },
      )
      return sendAccepted(deps, reply, operation, project.name)
    },
  )
}
