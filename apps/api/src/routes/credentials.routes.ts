import { findClusterInProject, getClusterSecret, listClusterCertificates, recordAudit } from '@kiln/db'
import { type ClusterStatus, DomainError, ErrorCode } from '@kiln/domain'
import {
  certificateInfo,
  issueCertificate,
  materialFromRecord,
  openCertificate,
  Purpose,
  renderKubeconfig,
} from '@kiln/pki'
import Type from 'typebox'
import type { KilnApp, RouteDeps } from '../app.ts'
import { actorOf } from '../auth.ts'
import { HttpProblem } from '../problems.ts'
import { CertificateAuthoritySchema, listExamples, ref } from '../schemas.ts'
import { ClusterParams } from './clusters.routes.ts'
import { problemResponses } from './responses.ts'

const authorityPurposes = new Set(['cluster-ca', 'etcd-ca', 'front-proxy-ca'])

export function registerCredentialRoutes(app: KilnApp, { db, masterKey }: RouteDeps) {
  app.get(
    '/v1/projects/:project/clusters/:cluster/ca',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listClusterCertificateAuthorities',
        summary: 'Get a cluster’s CA certificates, by purpose',
        description:
          'The public certificates of the cluster, etcd and front-proxy CAs, to verify the API server or to build trust bundles. Empty until the create operation has issued them. Private keys never leave Kiln.',
        tags: ['clusters'],
        params: ClusterParams,
        response: {
          200: Type.Object(
            { items: Type.Array(ref(CertificateAuthoritySchema)) },
            { additionalProperties: false, ...listExamples(ref(CertificateAuthoritySchema)) },
          ),
          ...problemResponses(404),
        },
      },
    },
    async (request) => {
      const cluster = await findClusterInProject(db, request.params.project, request.params.cluster)
      const stored = await listClusterCertificates(db, cluster.id)
      return {
        items: stored
          .filter((s) => authorityPurposes.has(s.purpose))
          .map((s) => {
            const info = certificateInfo(s.publicPem)
            return {
              purpose: s.purpose as 'cluster-ca' | 'etcd-ca' | 'front-proxy-ca',
              certificatePem: s.publicPem,
              subject: [
                ...(info.subject.commonName ? [`CN=${info.subject.commonName}`] : []),
                ...info.subject.organizations.map((o) => `O=${o}`),
              ].join(','),
              notBefore: info.notBefore.toISOString(),
              notAfter: info.notAfter.toISOString(),
              fingerprintSha256: info.fingerprintSha256,
            }
          }),
      }
    },
  )

  const hour = 3600
  app.post(
    '/v1/projects/:project/clusters/:cluster/kubeconfig',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'issueKubeconfig',
        summary: 'Issue a short-lived kubeconfig for a cluster',
        description:
          'Signs a new client certificate with the cluster CA (default 24 h, at most 7 days; groups from your role) and returns a kubeconfig that real kubectl uses. Every issuance is in the audit log. Nothing is stored, so the call cannot be replayed: it refuses an Idempotency-Key, and retrying simply issues another credential.',
        tags: ['clusters'],
        params: ClusterParams,
        body: Type.Object(
          {
            ttlSeconds: Type.Optional(
              Type.Integer({
                minimum: 300,
                maximum: 7 * 24 * hour,
                default: 24 * hour,
                description: 'Lifetime.',
              }),
            ),
          },
          { additionalProperties: false, examples: [{ ttlSeconds: 3600 }] },
        ),
        response: {
          201: Type.Object(
            {
              kubeconfig: Type.String({ description: 'YAML; save it and point KUBECONFIG at it.' }),
              username: Type.String(),
              groups: Type.Array(Type.String()),
              expiresAt: Type.String({ format: 'date-time' }),
            },
            {
              additionalProperties: false,
              examples: [
                {
                  kubeconfig: 'apiVersion: v1\nkind: Config\nclusters:\n  - name: demo-ci-run-4711\n…',
                  username: 'user:local-operator',
                  groups: ['system:masters'],
                  expiresAt: '2026-11-21T11:00:00.000Z',
                },
              ],
            },
          ),
          ...problemResponses(404, 409),
        },
      },
    },
    async (request, reply) => {
      if (request.headers['idempotency-key'] !== undefined) {
        throw new HttpProblem(
          400,
          'invalid-request',
          'Credentials are not replayed',
          'A kubeconfig is never stored, so it cannot be returned twice; send the request without an Idempotency-Key (each call issues a new short-lived credential).',
          [{ pointer: '/Idempotency-Key', in: 'header', message: 'not accepted on credential issuance' }],
        )
      }
      if (!masterKey) {
        throw new HttpProblem(
          503,
          'credentials-unavailable',
          'Credential issuance is not configured',
          'This API runs without a master key, so it cannot sign credentials.',
          [],
          { 'retry-after': '60' },
        )
      }
      const cluster = await findClusterInProject(db, request.params.project, request.params.cluster)
      const status = cluster.status as unknown as ClusterStatus
      const secret = await getClusterSecret(db, cluster.id, Purpose.clusterCa)
      if (!status.endpoint || !secret) {
        throw new DomainError(
          ErrorCode.conflict,
          `Cluster '${cluster.name}' has no API server yet; wait for its create operation to finish.`,
        )
      }
      const ca = openCertificate(cluster.id, Purpose.clusterCa, materialFromRecord(secret), masterKey)
      // The single local operator administers everything; roles map to groups with identity (issue 5).
      const username = request.principal.subject
      const groups = request.principal.platformAdmin ? ['system:masters'] : []
      const issued = await issueCertificate({
        ca,
        commonName: username,
        organizations: groups,
        usage: 'client',
        ttlSeconds: request.body?.ttlSeconds ?? 24 * hour,
      })
      const clusterName = `${cluster.project.name}-${cluster.name}`
      const kubeconfig = renderKubeconfig({
        clusterName,
        server: status.endpoint,
        tlsServerName: status.tlsServerName ?? undefined,
        caCertsPem: [ca.certPem],
        userName: username,
        clientCertPem: issued.certPem,
        clientKeyPem: issued.keyPem,
      })
      await recordAudit(db, actorOf(request), {
        projectId: cluster.projectId,
        action: 'credential.kubeconfig.issue',
        targetKind: 'cluster',
        targetId: cluster.id,
        data: {
          username,
          groups,
          expiresAt: issued.notAfter.toISOString(),
          serial: certificateInfo(issued.certPem).serialNumber,
        },
      })
      return reply.code(201).send({ kubeconfig, username, groups, expiresAt: issued.notAfter.toISOString() })
    },
  )
}
