import {
  findProject,
  findProjectQuota,
  type ProjectQuotaState,
  projectUsage,
  type QuotaCheck,
  quotaVersion,
  setProjectQuota,
} from '@kiln/db'
import { emptyConsumption, type QuotaLimits, quotaLines } from '@kiln/domain'
import Type from 'typebox'
import { actorOf } from '../auth.ts'
import { expectedRevision } from '../idempotency.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  ProjectQuotaSchema,
  ProjectUsageSchema,
  type QuotaCheckSchema,
  QuotaLimitsUpdateSchema,
  ref,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { ProjectParams } from './projects.routes.ts'

const quotaETag = (quota: ProjectQuotaState) => `"${quotaVersion(quota)}"`

function limitsView(limits: QuotaLimits): QuotaLimits {
  return {
    clusters: limits.clusters,
    nodes: limits.nodes,
    vcpus: limits.vcpus,
    memoryMiB: limits.memoryMiB,
    gpus: limits.gpus,
    gpusByModel: { ...limits.gpusByModel },
  }
}

function quotaView(project: string, quota: ProjectQuotaState): Type.Static<typeof ProjectQuotaSchema> {
  return {
    project,
    limits: limitsView(quota.limits),
    updatedBy: quota.updatedBy,
    updatedAt: quota.updatedAt?.toISOString() ?? null,
  }
}

/** A quota check as a dry run shows it. */
export function quotaCheckView(check: QuotaCheck): Type.Static<typeof QuotaCheckSchema> {
  return {
    accepted: check.accepted,
    resources: check.lines.map((l) => ({
      resource: l.resource,
      limit: l.limit,
      usage: l.usage,
      request: l.request,
      remaining: l.remaining,
      exceeded: l.exceeded,
    })),
  }
}

export function registerQuotaRoutes(app: KilnApp, { db }: RouteDeps) {
  app.get(
    '/v1/projects/:project/quota',
    {
      config: { etag: true, permission: 'quotas:read' },
      schema: {
        operationId: 'getProjectQuota',
        summary: 'Get a project’s quota',
        description:
          'The limits on what the project’s clusters may claim (clusters, nodes, vCPUs, memory, GPUs in all and by model); null is unlimited. The ETag is for `If-Match` on PUT.',
        tags: ['quotas'],
        params: ProjectParams,
        response: { 200: ref(ProjectQuotaSchema), ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const quota = await findProjectQuota(db, project.id)
      reply.header('etag', quotaETag(quota))
      return quotaView(project.name, quota)
    },
  )

  app.put(
    '/v1/projects/:project/quota',
    {
      config: { etag: true, permission: 'quotas:write' },
      schema: {
        operationId: 'setProjectQuota',
        summary: 'Set a project’s quota (platform admins)',
        description:
          'Replaces the whole quota: a limit left out or null is unlimited. A limit below the current usage refuses growth (creates, node groups, resizes up) and takes nothing away. Audited.',
        tags: ['quotas'],
        params: ProjectParams,
        headers: Type.Object({
          'if-match': Type.Optional(Type.String({ description: 'An ETag from a GET.' })),
        }),
        body: ref(QuotaLimitsUpdateSchema),
        response: { 200: ref(ProjectQuotaSchema), ...problemResponses(404, 412) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      const body = request.body
      const limits: QuotaLimits = {
        clusters: body.clusters ?? null,
        nodes: body.nodes ?? null,
        vcpus: body.vcpus ?? null,
        memoryMiB: body.memoryMiB ?? null,
        gpus: body.gpus ?? null,
        gpusByModel: { ...(body.gpusByModel ?? {}) },
      }
      const quota = await db.$transaction(
        (tx) => setProjectQuota(tx, actorOf(request), project.id, limits, expectedRevision(request)),
        { timeout: 20_000 },
      )
      reply.header('etag', quotaETag(quota))
      return quotaView(project.name, quota)
    },
  )

  app.get(
    '/v1/projects/:project/usage',
    {
      // Members see these figures in every dry run anyway; CI and the portal show the headroom.
      config: { permission: 'projects:read' },
      schema: {
        operationId: 'getProjectUsage',
        summary: 'What a project’s clusters use, against its quota',
        description:
          'Per resource: what the project’s clusters claim now, the limit and what remains. A cluster group claims the larger of its desired size and the machines it still holds, so a create or resize counts from the moment it is accepted and a release from the moment its machines are released; a cluster being deleted counts until its last machine is released.',
        tags: ['quotas'],
        params: ProjectParams,
        response: { 200: ref(ProjectUsageSchema), ...problemResponses(404) },
      },
    },
    async (request) => {
      const project = await findProject(db, request.params.project)
      const [quota, usage] = await Promise.all([
        findProjectQuota(db, project.id),
        projectUsage(db, project.id),
      ])
      return {
        project: project.name,
        usage,
        limits: limitsView(quota.limits),
        resources: quotaLines(quota.limits, usage, emptyConsumption()).map((l) => ({
          resource: l.resource,
          usage: l.usage,
          limit: l.limit,
          remaining: l.remaining,
        })),
      }
    },
  )
}
