import type { SwaggerOptions } from '@fastify/swagger'
import { problemContentType } from './problems.ts'
import {
  type SharedHeader,
  type SharedResponseName,
  sharedHeaders,
  sharedParameters,
  sharedResponses,
} from './shared-answers.ts'

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
  { name: 'master-keys', description: 'Re-sealing cluster private keys after a master-key rotation.' },
  { name: 'problems', description: 'What each problem `type` means, as a page for people.' },
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
      contact: { name: 'The Kiln project', url: 'https://kiln.dev' },
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [
      {
        url: '{scheme}://{host}',
        description: 'A Kiln API server (the defaults are a local development server).',
        variables: {
          scheme: { default: 'http', enum: ['http', 'https'], description: 'http or https.' },
          host: { default: '127.0.0.1:8080', description: 'Host name and port of the API.' },
        },
      },
    ],
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
  transformObject: (document) =>
    'openapiObject' in document
      ? (referenceSharedAnswers(document.openapiObject as Json) as never)
      : document.swaggerObject,
  refResolver: {
    // Name components after the schemas' $id, so generated clients get `Cluster`, not `def-7`.
    buildLocalReference: (json, _baseUri, _fragment, i) =>
      typeof json.$id === 'string' ? json.$id : `def-${i}`,
  },
}

type Json = Record<string, unknown>

const headerRef = (name: SharedHeader) => ({ $ref: `#/components/headers/${name}` })

/** The headers of a response, each shared one as a ref to `components/headers`. */
function referenceHeaders(headers: Json | undefined): Json | undefined {
  if (!headers) return undefined
  return Object.fromEntries(
    Object.entries(headers).map(([name, h]) => [
      name,
      name in sharedHeaders ? headerRef(name as SharedHeader) : h,
    ]),
  )
}

const sharedResponseByStatus = new Map(
  (Object.keys(sharedResponses) as SharedResponseName[]).map((name) => [
    `${sharedResponses[name].status} ${sharedResponses[name].description}`,
    name,
  ]),
)

const sharedParameterByName = new Map(
  Object.entries(sharedParameters).map(([key, p]) => [p.name.toLowerCase(), key]),
)

/**
 * Names each shared answer, header and parameter once, under `components`, and refers to it from every
 * operation (the routes' schemas carry them inline: see shared-answers.ts).
 */
function referenceSharedAnswers(doc: Json): Json {
  const paths = (doc.paths ?? {}) as Record<string, Record<string, Json>>
  for (const item of Object.values(paths)) {
    for (const operation of Object.values(item)) {
      const responses = (operation.responses ?? {}) as Record<string, Json>
      for (const [status, response] of Object.entries(responses)) {
        const shared = sharedResponseByStatus.get(`${status} ${response.description}`)
        if (shared) {
          responses[status] = { $ref: `#/components/responses/${shared}` }
          continue
        }
        const headers = referenceHeaders(response.headers as Json | undefined)
        if (headers) response.headers = headers
      }
      if (Array.isArray(operation.parameters)) {
        operation.parameters = operation.parameters.map((p: Json) => {
          const key = p.in === 'header' ? sharedParameterByName.get(String(p.name).toLowerCase()) : undefined
          return key ? { $ref: `#/components/parameters/${key}` } : p
        })
      }
    }
  }
  const components = (doc.components ?? {}) as Json
  doc.components = {
    ...components,
    responses: Object.fromEntries(
      (Object.keys(sharedResponses) as SharedResponseName[]).map((name) => {
        const { description, headers } = sharedResponses[name] as {
          description: string
          headers: SharedHeader[]
        }
        return [
          name,
          {
            description,
            headers: Object.fromEntries(
              (['X-Request-Id', ...headers] as SharedHeader[]).map((h) => [h, headerRef(h)]),
            ),
            content: { [problemContentType]: { schema: { $ref: '#/components/schemas/Problem' } } },
          },
        ]
      }),
    ),
    headers: sharedHeaders,
    parameters: sharedParameters,
  }
  return doc
}
