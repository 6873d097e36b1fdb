import {
  assertNotDeleting,
  type ClusterReadRow,
  clusterAuthorityStore,
  findClusterInProject,
  findProject,
  listClusterCertificates,
  pageInMemory,
  recordAudit,
  requestCaRotation,
} from '@kiln/db'
import { type ClusterStatus, DomainError, ErrorCode, invalidSpec } from '@kiln/domain'
import {
  authorityRole,
  certificateInfo,
  clusterTrust,
  issueClusterClientCertificate,
  type MasterKeyring,
  PkiError,
  PkiErrorCode,
  renderKubeconfig,
} from '@kiln/pki'
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import { acceptOnce } from '../accepted.ts'
import { actorOf, clusterGroupsOf, mayActAsSystemUser } from '../auth.ts'
import { refuseReplay } from '../idempotency.ts'
import { HttpProblem } from '../problems.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import {
  CaRotationRequestSchema,
  CertificateAuthorityListSchema,
  CertificateSigningRequestSchema,
  KubeconfigRequestSchema,
  ListQuery,
  named,
  OperationSchema,
  ref,
  SignedCertificateSchema,
} from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'
import { ClusterParams } from './clusters.routes.ts'

const authorityPurposes = new Set(['cluster-ca', 'etcd-ca', 'front-proxy-ca'])
const defaultTtlSeconds = 24 * 3600

/**
 * What every credential issuance checks first, in this order: no Idempotency-Key (a credential is
 * never stored, so it cannot be handed out twice), a master key to open the CA with, the cluster
 * (404 when it is not in the project), and one that is not being deleted (409).
 */
async function issuanceTarget(
  { db, masterKey }: RouteDeps,
  request: FastifyRequest,
  params: { project: string; cluster: string },
): Promise<{ cluster: ClusterReadRow; masterKey: MasterKeyring }> {
  refuseReplay(request, 'credential')
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
  const cluster = await findClusterInProject(db, params.project, params.cluster)
  await assertNotDeleting(db, cluster)
  return { cluster, masterKey }
}

const noCaYet = (cluster: { name: string }) =>
  new DomainError(
    ErrorCode.conflict,
    `Cluster '${cluster.name}' has no API server yet; wait for its create operation to finish.`,
  )

/** PKI refusals as problems: what the caller sent is at fault (422 at `pointer`), or the cluster's state (409). */
function pkiProblem(error: unknown, cluster: { name: string }, pointer: string): unknown {
  if (!(error instanceof PkiError)) return error
  switch (error.code) {
    case PkiErrorCode.csrInvalid:
    case PkiErrorCode.csrRefused:
    case PkiErrorCode.invalidRequest:
      return invalidSpec([{ pointer, message: error.message }])
    case PkiErrorCode.caMissing:
      return noCaYet(cluster)
    case PkiErrorCode.caExpired:
      return new DomainError(
        ErrorCode.conflict,
        `The CA of cluster '${cluster.name}' has expired: ${error.message} Rotate it.`,
      )
    default:
      return error
  }
}

const IssuedKubeconfigSchema = named('IssuedKubeconfig', {
  ...Type.Object(
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
  description:
    'A new kubeconfig with a short-lived client certificate (never stored; issue another when it expires).',
})

export function registerCredentialRoutes(app: KilnApp, deps: RouteDeps) {
  const { db } = deps

  app.get(
    '/v1/projects/:project/clusters/:cluster/ca',
    {
      config: { permission: 'clusters:read' },
      schema: {
        operationId: 'listClusterCertificateAuthorities',
        summary: 'Get a cluster’s CA certificates, by purpose',
        description:
          'The public certificates of the cluster, etcd and front-proxy CAs, to verify the API server or to build trust bundles. Empty until the create operation has issued them. While the cluster CA rotates, both cluster-ca generations are listed: `current` signs new credentials, `previous` is trusted until the rotation completes. Private keys never leave Kiln.',
        tags: ['clusters'],
        params: ClusterParams,
        querystring: Type.Object(ListQuery, { additionalProperties: false }),
        response: {
          200: ref(CertificateAuthorityListSchema),
          ...problemResponses(404),
        },
      },
    },
    async (request) => {
      const cluster = await findClusterInProject(db, request.params.project, request.params.cluster)
      const stored = (await listClusterCertificates(db, cluster.id)).filter((s) =>
        authorityPurposes.has(s.purpose),
      )
      const items = []
      for (const purpose of authorityPurposes) {
        const generations = stored.filter((s) => s.purpose === purpose)
        const trust = clusterTrust(generations)
        if (!trust) continue
        for (const s of trust.generations) {
          const info = certificateInfo(s.publicPem)
          items.push({
            purpose: purpose as 'cluster-ca' | 'etcd-ca' | 'front-proxy-ca',
            certificatePem: s.publicPem,
            subject: [
              ...(info.subject.commonName ? [`CN=${info.subject.commonName}`] : []),
              ...info.subject.organizations.map((o) => `O=${o}`),
            ].join(','),
            notBefore: info.notBefore.toISOString(),
            notAfter: info.notAfter.toISOString(),
            fingerprintSha256: info.fingerprintSha256,
            generation: s.generation,
            state: authorityRole(trust, s.generation),
          })
        }
      }
      const purposes = [...authorityPurposes]
      return pageInMemory(items, (ca) => [purposes.indexOf(ca.purpose), ca.generation], request.query)
    },
  )

  app.post(
    '/v1/projects/:project/clusters/:cluster/kubeconfig',
    {
      config: { location: false, permission: 'clusters:write' },
      schema: {
        operationId: 'issueKubeconfig',
        summary: 'Issue a short-lived kubeconfig for a cluster',
        description:
          'Signs a new client certificate with the current cluster CA (default 24 h, at most 7 days; groups from your role) and returns a kubeconfig that real kubectl uses; it trusts every CA the cluster trusts (both while the CA rotates). Every issuance is in the audit log. Nothing is stored, so the call cannot be replayed: it refuses an Idempotency-Key, and retrying simply issues another credential.',
        tags: ['clusters'],
        params: ClusterParams,
        body: ref(KubeconfigRequestSchema),
        response: {
          201: ref(IssuedKubeconfigSchema),
          ...problemResponses(404, 409),
        },
      },
    },
    async (request, reply) => {
      const { cluster, masterKey } = await issuanceTarget(deps, request, request.params)
      const status = cluster.status as unknown as ClusterStatus
      if (!status.endpoint) throw noCaYet(cluster)
      const username = request.principal.subject
      const issued = await issueClusterClientCertificate(clusterAuthorityStore(db), masterKey, cluster.id, {
        commonName: username,
        groups: clusterGroupsOf(request.principal, cluster.projectId),
        ttlSeconds: request.body?.ttlSeconds ?? defaultTtlSeconds,
      }).catch((error: unknown) => {
        throw pkiProblem(error, cluster, '/')
      })
      const kubeconfig = renderKubeconfig({
        clusterName: `${cluster.project.name}-${cluster.name}`,
        server: status.endpoint,
        tlsServerName: status.tlsServerName ?? undefined,
        caCertsPem: [issued.caBundlePem],
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
          groups: issued.groups,
          expiresAt: issued.notAfter.toISOString(),
          serial: issued.serialNumber,
          caGeneration: issued.generation,
        },
      })
      deps.metrics.kubeconfigsIssued.inc({ kind: 'kubeconfig' })
      return reply.code(201).send({
        kubeconfig,
        username,
        groups: issued.groups,
        expiresAt: issued.notAfter.toISOString(),
      })
    },
  )

  app.post(
    '/v1/projects/:project/clusters/:cluster/csr',
    {
      config: { location: false, permission: 'clusters:write' },
      schema: {
        operationId: 'signClusterCertificateRequest',
        summary: 'Sign a certificate signing request with the cluster CA',
        description:
          'Magnum’s `ca-sign`: certifies the key in a PEM PKCS#10 CSR as a client of the cluster’s API server, signed by the current cluster CA (default 24 h, at most 7 days). The CSR’s CN becomes the user and its O= values the groups; a group your role does not grant (e.g. system:masters for a non-admin) or a `system:` user is refused with 422, as are unreadable CSRs, bad signatures and unsupported keys. Every signature is in the audit log; nothing is stored, so an Idempotency-Key is refused.',
        tags: ['clusters'],
        params: ClusterParams,
        body: ref(CertificateSigningRequestSchema),
        response: {
          201: ref(SignedCertificateSchema),
          ...problemResponses(404, 409, 422),
        },
      },
    },
    async (request, reply) => {
      const { cluster, masterKey } = await issuanceTarget(deps, request, request.params)
      const signed = await issueClusterClientCertificate(clusterAuthorityStore(db), masterKey, cluster.id, {
        csrPem: request.body.csrPem,
        allowedGroups: clusterGroupsOf(request.principal, cluster.projectId),
        allowSystemUsers: mayActAsSystemUser(request.principal, cluster.projectId),
        ttlSeconds: request.body.ttlSeconds ?? defaultTtlSeconds,
      }).catch((error: unknown) => {
        throw pkiProblem(error, cluster, '/csrPem')
      })
      await recordAudit(db, actorOf(request), {
        projectId: cluster.projectId,
        action: 'credential.csr.sign',
        targetKind: 'cluster',
        targetId: cluster.id,
        data: {
          username: signed.username,
          groups: signed.groups,
          expiresAt: signed.notAfter.toISOString(),
          serial: signed.serialNumber,
          caGeneration: signed.generation,
        },
      })
      deps.metrics.kubeconfigsIssued.inc({ kind: 'csr' })
      return reply.code(201).send({
        certificatePem: signed.certPem,
        caPem: signed.caBundlePem,
        username: signed.username,
        groups: signed.groups,
        notAfter: signed.notAfter.toISOString(),
        serialNumber: signed.serialNumber,
      })
    },
  )

  app.post(
    '/v1/projects/:project/clusters/:cluster/rotate-ca',
    {
      config: { permission: 'clusters:write' },
      schema: {
        operationId: 'rotateClusterCertificateAuthority',
        summary: 'Rotate the cluster CA, in two phases',
        description:
          'Answers 202 with the phase’s operation. `start` (cluster.rotate-ca-start) generates a new cluster CA trusted beside the current one: from then on every kubeconfig and signed CSR comes from the new CA and trusts both, while credentials issued before keep working and the API server keeps a serving certificate they trust. `complete` (cluster.rotate-ca-complete) destroys the previous CA: credentials it signed stop working. The cluster shows the rotation as the condition CertificateAuthorityRotating and `GET …/ca` lists both CAs until it completes. `start` during a rotation, or `complete` without one, is 409.',
        tags: ['clusters'],
        params: ClusterParams,
        headers: Type.Object({ 'idempotency-key': Type.Optional(Type.String()) }),
        body: ref(CaRotationRequestSchema),
        response: { 202: ref(OperationSchema), ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const project = await findProject(db, request.params.project)
      return acceptOnce(deps, request, reply, async (tx) => {
        const { operation } = await requestCaRotation(
          tx,
          actorOf(request),
          project.id,
          request.params.cluster,
          request.body.phase,
        )
        return { operation, project: project.name }
      })
    },
  )
}
