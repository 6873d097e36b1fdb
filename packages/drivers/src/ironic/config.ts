import { DriverError } from '../contract.ts'
import type { IronicAuth, IronicTls } from './client.ts'

/** An explicit machine class: the nodes of a resource class that also have every trait listed. */
export interface IronicMachineClass {
  name: string
  resourceClass: string
  /** Required traits, e.g. CUSTOM_GPU_A100; Ironic's allocation API only picks nodes that have them. */
  traits?: string[]
}

/** The OS image Ironic writes to the disk; the fake-hardware driver ignores it, real hardware does not. */
export interface IronicImage {
  /** An http(s) URL or a Glance image id. */
  source: string
  checksum: string
  checksumAlgorithm?: 'sha256' | 'sha512'
  diskFormat?: 'qcow2' | 'raw'
}

/** A bare-metal backend, as stored in its `config`. Secrets are references (env or file), never values. */
export interface IronicConfig {
  /** Ironic's API root, e.g. https://ironic.dc.example.org:6385 */
  url: string
  auth?: IronicAuth
  tls?: IronicTls
  /**
   * Machine classes: each distinct resource class becomes one when omitted (GPU model from a
   * CUSTOM_GPU_<MODEL> trait, GPU count from the node property `gpu_count`).
   */
  machineClasses?: IronicMachineClass[]
  /** Where a node's zone comes from: a key of its `properties` (default `zone`), else its conductor group. */
  zoneProperty?: string
  /**
   * Images by Kubernetes version (`1.31.4`) or minor (`1.31`), `default` for any other: for templates
   * that name no image of their own (a template's `image` wins).
   */
  images?: Record<string, IronicImage>
  /** Root partition size in GiB (instance_info.root_gb); default 50. */
  rootGb?: number
  /**
   * Where a cluster's API server is reached: `{clusterId}` and `{clusterName}` are replaced. Real
   * deployments point a DNS name at a load balancer or a kube-vip address of the control-plane nodes.
   */
  controlPlaneEndpoint: { server: string; tlsServerName?: string }
  timeouts?: {
    /** How long a deploy may take before the step gives up for now (it resumes waiting on retry). */
    deploySeconds?: number
    /** How long undeploy and cleaning may take. */
    releaseSeconds?: number
    allocationSeconds?: number
  }
  /** First and longest wait between polls of a node's state (backoff doubles from the first). */
  pollIntervalMs?: { min?: number; max?: number }
  requestTimeoutMs?: number
}

/** Refuses a config the driver cannot work with, naming the field, before any call is made. */
export function checkIronicConfig(config: unknown): IronicConfig {
  const c = (config ?? {}) as Partial<IronicConfig>
  const fail = (field: string, why: string): never => {
    throw new DriverError('ERR_INVALID_REQUEST', `The Ironic backend's config.${field} ${why}.`)
  }
  if (typeof c.url !== 'string' || !/^https?:\/\//.test(c.url)) fail('url', 'must be an http(s) URL')
  if (c.images !== undefined && (typeof c.images !== 'object' || c.images === null))
    fail('images', 'must map Kubernetes versions (or "default") to an image')
  for (const [version, image] of Object.entries(c.images ?? {})) {
    if (!image?.source) fail(`images.${version}.source`, 'is required')
    if (!image?.checksum) fail(`images.${version}.checksum`, 'is required')
  }
  if (
    typeof c.controlPlaneEndpoint?.server !== 'string' ||
    !/^https:\/\//.test(c.controlPlaneEndpoint.server)
  )
    fail('controlPlaneEndpoint.server', 'must be an https URL')
  for (const [i, mc] of (c.machineClasses ?? []).entries()) {
    if (!mc.name) fail(`machineClasses[${i}].name`, 'is required')
    if (!mc.resourceClass) fail(`machineClasses[${i}].resourceClass`, 'is required')
  }
  return c as IronicConfig
}

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
