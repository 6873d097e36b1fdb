import { findClusterInProject, listClusterCertificates } from '@kiln/db'
import { certificateInfo } from '@kiln/pki'
import Type from 'typebox'
import type { KilnApp, RouteDeps } from '../app.ts'
import { CertificateAuthoritySchema, listExamples, ref } from '../schemas.ts'
import { ClusterParams } from './clusters.routes.ts'
import { problemResponses } from './responses.ts'

const authorityPurposes = new Set(['cluster-ca', 'etcd-ca', 'front-proxy-ca'])

export function registerCredentialRoutes(app: KilnApp, { db }: RouteDeps) {
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
}
