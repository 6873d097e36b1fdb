import { schemaViolations, type Violation } from '@kiln/domain'
import Type from 'typebox'
import { checkBackendConfig, SecretReferenceSchema } from '../backend-config.ts'
import { DriverError } from '../contract.ts'

// A bare-metal backend's config, as stored in its `config` column and as platform admins send it to
// POST /v1/backends. One schema is the type, the driver's check and the API's validation.

const httpUrl = (description: string) => Type.String({ pattern: '^https?://', maxLength: 2048, description })

export type { SecretReference } from '../backend-config.ts'

const IronicAuthSchema = Type.Union([
  Type.Object(
    { kind: Type.Literal('none') },
    { additionalProperties: false, description: "Ironic's noauth." },
  ),
  Type.Object(
    { kind: Type.Literal('token'), token: SecretReferenceSchema },
    {
      additionalProperties: false,
      description: 'A token someone else obtains (re-read on every request when it is a file).',
    },
  ),
  Type.Object(
    {
      kind: Type.Literal('keystone'),
      authUrl: httpUrl('Keystone v3, e.g. https://keystone.dc.example.org/v3'),
      username: Type.String({ minLength: 1 }),
      password: SecretReferenceSchema,
      projectName: Type.String({ minLength: 1 }),
      userDomainName: Type.Optional(Type.String({ minLength: 1 })),
      projectDomainName: Type.Optional(Type.String({ minLength: 1 })),
    },
    {
      additionalProperties: false,
      description:
        'Keystone v3 password authentication; the token is renewed before it expires and after a 401.',
    },
  ),
])
export type IronicAuth = Type.Static<typeof IronicAuthSchema>

const IronicTlsSchema = Type.Object(
  {
    caPem: Type.Optional(
      Type.String({ description: "PEM of the CA that signed Ironic's (and Keystone's) certificate." }),
    ),
    caFile: Type.Optional(Type.String({ minLength: 1, description: 'A file holding that CA.' })),
    certFile: Type.Optional(
      Type.String({
        minLength: 1,
        description: 'Client certificate, when a proxy in front of Ironic asks for one.',
      }),
    ),
    keyFile: Type.Optional(Type.String({ minLength: 1 })),
    insecureSkipVerify: Type.Optional(
      Type.Boolean({ description: 'Only for labs: accepts any certificate.' }),
    ),
  },
  { additionalProperties: false },
)
export type IronicTls = Type.Static<typeof IronicTlsSchema>

const IronicMachineClassSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$' }),
    resourceClass: Type.String({ minLength: 1, maxLength: 80 }),
    traits: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Z0-9_]+$' }), {
        description:
          "Required traits, e.g. CUSTOM_GPU_A100; Ironic's allocation API only picks nodes that have them.",
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'An explicit machine class: the nodes of a resource class that also have every trait listed.',
  },
)
export type IronicMachineClass = Type.Static<typeof IronicMachineClassSchema>

const IronicImageSchema = Type.Object(
  {
    source: Type.String({ minLength: 1, description: 'An http(s) URL or a Glance image id.' }),
    checksum: Type.String({ minLength: 1 }),
    checksumAlgorithm: Type.Optional(Type.Union([Type.Literal('sha256'), Type.Literal('sha512')])),
    diskFormat: Type.Optional(Type.Union([Type.Literal('qcow2'), Type.Literal('raw')])),
  },
  {
    additionalProperties: false,
    description:
      'The OS image Ironic writes to the disk; the fake-hardware driver ignores it, real hardware does not.',
  },
)
export type IronicImage = Type.Static<typeof IronicImageSchema>

const seconds = Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 }))
const milliseconds = Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 }))

export const IronicConfigSchema = Type.Object(
  {
    url: httpUrl("Ironic's API root, e.g. https://ironic.dc.example.org:6385"),
    auth: Type.Optional(IronicAuthSchema),
    tls: Type.Optional(IronicTlsSchema),
    machineClasses: Type.Optional(
      Type.Array(IronicMachineClassSchema, {
        description:
          'Machine classes; when omitted each distinct resource class becomes one (GPU model from a CUSTOM_GPU_<MODEL> trait, GPU count from the node property gpu_count).',
      }),
    ),
    zoneProperty: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          "Where a node's zone comes from: a key of its properties (default zone), else its conductor group.",
      }),
    ),
    images: Type.Optional(
      Type.Record(Type.String({ pattern: '^(default|\\d+\\.\\d+(\\.\\d+)?)$' }), IronicImageSchema, {
        description:
          "Images by Kubernetes version (1.31.4) or minor (1.31), default for any other: for templates that name no image of their own (a template's image wins).",
      }),
    ),
    rootGb: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 65_536, description: 'Root partition size in GiB; default 50.' }),
    ),
    controlPlaneEndpoint: Type.Object(
      {
        server: Type.String({ pattern: '^https://', maxLength: 2048 }),
        tlsServerName: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
      },
      {
        additionalProperties: false,
        description:
          "Where a cluster's API server is reached: {clusterId} and {clusterName} are replaced. Real deployments point a DNS name at a load balancer or a kube-vip address of the control-plane nodes.",
      },
    ),
    timeouts: Type.Optional(
      Type.Object(
        {
          deploySeconds: seconds,
          releaseSeconds: seconds,
          allocationSeconds: seconds,
        },
        {
          additionalProperties: false,
          description:
            'How long a deploy, an undeploy with cleaning, and an allocation may take before the step gives up for now (it resumes waiting on retry).',
        },
      ),
    ),
    pollIntervalMs: Type.Optional(
      Type.Object(
        { min: milliseconds, max: milliseconds },
        {
          additionalProperties: false,
          description: "First and longest wait between polls of a node's state.",
        },
      ),
    ),
    requestTimeoutMs: milliseconds,
  },
  {
    additionalProperties: false,
    description: 'A bare-metal backend: how Kiln reaches Ironic and deploys nodes.',
  },
)
/** A bare-metal backend, as stored in its `config`. Secrets are references (env or file), never values. */
export type IronicConfig = Type.Static<typeof IronicConfigSchema>

/** What is wrong with a config, each with a JSON pointer into it; empty when the driver can work with it. */
export const ironicConfigViolations = (config: unknown): Violation[] =>
  schemaViolations(IronicConfigSchema, config)

/** Refuses a config the driver cannot work with, naming the field, before any call is made. */
export const checkIronicConfig = (config: unknown): IronicConfig =>
  checkBackendConfig(IronicConfigSchema, 'Ironic', config)

/**
 * The image to deploy: the template's when it names one; else the backend's for the exact version,
 * then its minor, then `default`.
 */
export function imageFor(
  config: IronicConfig,
  kubernetesVersion: string,
  fromTemplate?: IronicImage,
): IronicImage {
  if (fromTemplate) return fromTemplate
  const version = kubernetesVersion.replace(/^v/, '')
  const minor = version.split('.').slice(0, 2).join('.')
  const images = config.images ?? {}
  const image = images[version] ?? images[minor] ?? images.default
  if (!image) {
    throw new DriverError(
      'ERR_INVALID_REQUEST',
      `No image for Kubernetes ${version}: give the cluster's template an image, or add images["${minor}"] to the Ironic backend's config.`,
    )
  }
  return image
}
