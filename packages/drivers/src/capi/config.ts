import { schemaViolations, type Violation } from '@kiln/domain'
import Type from 'typebox'
import { checkBackendConfig, SecretReferenceSchema } from '../backend-config.ts'

// A Cluster API backend's config, as stored in its `config` column and as platform admins send it to
// POST /v1/backends. One schema is the type, the driver's check and the API's validation.

const dnsLabel = '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$'

export const CapiConfigSchema = Type.Object(
  {
    kubeconfig: {
      ...SecretReferenceSchema,
      description:
        'The management cluster: a kubeconfig for the account Kiln acts as (see docs/capi.md for its RBAC), as {"file": PATH} or {"env": NAME} holding the kubeconfig itself. Never stored.',
    },
    context: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'The kubeconfig context to use; its current context if omitted.',
      }),
    ),
    namespace: Type.String({
      pattern: dnsLabel,
      description:
        'The one namespace of the management cluster where Kiln writes its Clusters, secrets and MachineHealthChecks, each labelled with the Kiln cluster it belongs to; the ClusterClass lives there too.',
    }),
    clusterClass: Type.String({
      pattern: '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$',
      description:
        'The ClusterClass every cluster of this backend is built from (register one backend per flavour). Its machine-deployment classes are the machine classes Kiln offers, read from the annotations of their infrastructure templates.',
    }),
    variables: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9_-]{0,255}$' }), Type.Unknown(), {
        description:
          "Topology variables Kiln sets on every Cluster (the ClusterClass's variables the platform fixes, e.g. an image name or an external network).",
      }),
    ),
    controlPlaneEndpoint: Type.Optional(
      Type.Object(
        {
          server: Type.String({ pattern: '^https://', maxLength: 2048 }),
          tlsServerName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
        },
        {
          additionalProperties: false,
          description:
            "Where users reach a cluster's API server, when not at the Cluster's spec.controlPlaneEndpoint: {clusterId} and {clusterName} are replaced (a load balancer or proxy routing by TLS server name).",
        },
      ),
    ),
    machineHealthCheck: Type.Optional(
      Type.Object(
        {
          maxUnhealthy: Type.Optional(
            Type.String({
              pattern: '^(100|[1-9]?[0-9])%$|^[0-9]+$',
              description:
                'Remediation stops when more machines of a group than this are unhealthy at once (a count or a percentage, default 40%), so a network partition does not replace a whole group.',
            }),
          ),
          unhealthySeconds: Type.Optional(
            Type.Integer({
              minimum: 30,
              maximum: 86_400,
              description:
                "How long a node's Ready condition may be False or Unknown before its machine is replaced (default 300).",
            }),
          ),
          nodeStartupSeconds: Type.Optional(
            Type.Integer({
              minimum: 60,
              maximum: 86_400,
              description:
                'How long a machine may take to become a node before it is replaced (default 1200).',
            }),
          ),
        },
        {
          additionalProperties: false,
          description: 'The MachineHealthCheck Kiln writes per machine deployment.',
        },
      ),
    ),
    waitSeconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 600,
        description:
          'How long one call waits for Cluster API to make progress before the step is retried (default 20); a retry resumes waiting.',
      }),
    ),
    requestTimeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 600_000 })),
  },
  {
    additionalProperties: false,
    description:
      'A Cluster API backend: the management cluster, the namespace and the ClusterClass Kiln uses.',
  },
)
/** A Cluster API backend, as stored in its `config`. The kubeconfig is a reference (env or file), never a value. */
export type CapiConfig = Type.Static<typeof CapiConfigSchema>

/** What is wrong with a config, each with a JSON pointer into it; empty when the driver can work with it. */
export const capiConfigViolations = (config: unknown): Violation[] =>
  schemaViolations(CapiConfigSchema, config)

/** Refuses a config the driver cannot work with, naming the field, before any call is made. */
export const checkCapiConfig = (config: unknown): CapiConfig =>
  checkBackendConfig(CapiConfigSchema, 'Cluster API', config)
