import type { SwaggerOptions } from '@fastify/swagger'

export const apiTags = [
  { name: 'health', description: 'Liveness and readiness.' },
  { name: 'features', description: 'The typed feature catalogue.' },
  { name: 'backends', description: 'Where machines come from.' },
  { name: 'machine-classes', description: 'Kinds of machines the backends offer.' },
  { name: 'kubernetes-versions', description: 'Kubernetes versions and their lifecycle.' },
  { name: 'templates', description: 'Curated, versioned cluster templates.' },
  { name: 'projects', description: 'Tenants.' },
  { name: 'quotas', description: 'Limits per project, and what its clusters use.' },
  { name: 'clusters', description: 'Kubernetes clusters.' },
  { name: 'nodegroups', description: 'Groups of worker machines in a cluster.' },
  { name: 'operations', description: 'Asynchronous work, to watch and cancel.' },
  { name: 'access', description: 'Who you are; project members and API tokens.' },
  { name: 'audit', description: 'Every mutation and credential issued, per project.' },
  { name: 'auth', description: 'Portal login at the OIDC issuer (a session cookie), logout, who you are.' },
]

/** The OpenAPI document is generated from the route schemas; `openapi/kiln.v1.yaml` is its committed copy. */
export const openApiOptions: SwaggerOptions = {
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'Kiln API',
      version: '1.0.0',
      description:
        'Kubernetes clusters as a service. Asynchronous changes answer 202 with an Operation; errors are RFC 9457 problem+json.',
    },
    servers: [{ url: 'http://127.0.0.1:8080', description: 'Local development' }],
    tags: apiTags,
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API token (`kiln_…`, per project, from POST /v1/projects/{project}/tokens) or an OIDC access/ID token from the configured issuer. Each operation names the permission it needs in `x-kiln-permission`.',
        },
      },
    },
    security: [{ bearer: [] }],
  },
  refResolver: {
    // Name components after the schemas' $id, so generated clients get `Cluster`, not `def-7`.
    buildLocalReference: (json, _baseUri, _fragment, i) =>
      typeof json.$id === 'string' ? json.$id : `def-${i}`,
  },
}
