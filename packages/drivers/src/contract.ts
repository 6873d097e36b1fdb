import type { BackendKind, Taint } from '@kiln/domain'

export type DriverKind = BackendKind

export interface ClusterRef {
  id: string
  name: string
  /**
   * What a machine needs to form or join the cluster. Drivers whose machines run kubeadm themselves
   * (bare metal) call it from `bootstrap` and `joinMachines`; Cluster API's driver hands Kiln's
   * authorities to Cluster API from `bootstrap`; the simulator never calls it. A function, because
   * it unseals the cluster's keys and, once the control plane runs, makes sure it accepts the token.
   */
  bootstrapMaterial?: () => Promise<BootstrapMaterial>
}

export interface PemCertificateAndKey {
  certPem: string
  keyPem: string
}

/** kubeadm's inputs, from the authorities Kiln generated for the cluster. */
export interface BootstrapMaterial {
  kubernetesVersion: string
  /** A control plane already runs (repair, upgrade): new control-plane machines join it. */
  controlPlaneInitialized: boolean
  /** The CA certificates nodes trust (more than one while a rotation runs), PEM. */
  clusterCaBundlePem: string
  /** The CA that signs new certificates; joining nodes pin its public key (kubeadm's CA cert hash). */
  clusterCa: PemCertificateAndKey
  /** Control-plane machines also get these; kubeadm signs the control plane's certificates with them. */
  etcdCa: PemCertificateAndKey
  frontProxyCa: PemCertificateAndKey
  serviceAccount: { publicKeyPem: string; privateKeyPem: string }
  /** A bootstrap token (`abcdef.0123456789abcdef`) the cluster accepts, valid for at least an hour. */
  joinToken: string
  podSubnet: string
  serviceSubnet: string
  /** The OS image the cluster's template names for bare-metal machines, if it names one. */
  image?: {
    source: string
    checksum: string
    checksumAlgorithm?: 'sha256' | 'sha512'
    diskFormat?: 'qcow2' | 'raw'
  }
}

/** One machine Kiln wants; `name` is deterministic, so asking twice adopts instead of duplicating. */
export interface MachineSpec {
  name: string
  machineClass: string
  zone: string
  role: 'control-plane' | 'worker'
  kubernetesVersion: string
  labels: Record<string, string>
  taints: Taint[]
  /** The worker's node group, for backends that keep machines in groups of their own (Cluster API). */
  nodeGroup?: NodeGroupSpec
}

export interface NodeGroupSpec {
  name: string
  /** The autoscaler's bounds, when it is on for the group. */
  autoscaling?: { minCount: number; maxCount: number }
}

/** How far a backend that replaces machines itself has rolled a cluster onto a version. */
export interface RolloutProgress {
  done: boolean
  /** What is still rolling, for people: "control plane 2/3 on v1.32.0". */
  message: string
}

export interface MachineRef {
  name: string
  /** The backend's own id for the machine. */
  externalId: string
  zone: string
  machineClass: string
}

export interface MachineClassCapacity {
  name: string
  cpu: number
  memoryMiB: number
  gpuModel: string | null
  gpuCount: number
  /** Free machines of this class per zone, right now. */
  available: Record<string, number>
}

export interface Capabilities {
  zones: string[]
  machineClasses: MachineClassCapacity[]
}

export interface ClusterEndpoint {
  /** Where clients connect: the Kubernetes API server URL. */
  server: string
  /** The TLS server name to ask for when one address serves many API servers (routed by SNI). */
  tlsServerName?: string
}

/**
 * `Unhealthy` and `Missing` are positive evidence from the backend (it answered: failed, in
 * maintenance, not deployed, gone). `Unknown` means the backend did not answer for the machine: it is
 * never a reason to repair, only to wait (Kiln shows the backend as unreachable meanwhile).
 */
export type MachineHealth = 'Healthy' | 'Unhealthy' | 'Missing' | 'Unknown'

export interface ObservedMachine {
  name: string
  health: MachineHealth
  reason: string
  /**
   * `Unhealthy` only: the backend itself reports the machine failed (maintenance, a hardware fault, a
   * failed deploy, an error state), so repair need not wait for it to recover. Without it (not joined,
   * powered off, still provisioning) repair waits out a grace period first.
   */
  definite?: boolean
}

/**
 * What a backend that did not answer lets a driver say: no verdict on any machine (all `Unknown`),
 * and nothing against the control plane (rule 9).
 */
export const unobservable = (machineNames: string[], reason: string): ObservedState => ({
  controlPlaneReachable: true,
  backendReachable: false,
  unreachableReason: reason,
  machines: machineNames.map((name) => ({ name, health: 'Unknown', reason: `Unobservable: ${reason}` })),
})

/** What the backend positively reports broken or gone: evidence for repair (`Unknown` never is). */
export const reportedBroken = (m: ObservedMachine) => m.health === 'Unhealthy' || m.health === 'Missing'

export interface ObservedState {
  /**
   * The cluster's control plane answers, as far as the backend can tell. Not evidence when
   * `backendReachable` is false: drivers then report true unless the backend positively said otherwise.
   */
  controlPlaneReachable: boolean
  /**
   * False when the backend did not answer for at least one machine (those machines are `Unknown`):
   * unreachable, timed out, or an error that says nothing about the machine.
   */
  backendReachable: boolean
  /** Why, when `backendReachable` is false: the first failure, naming the backend. */
  unreachableReason?: string
  machines: ObservedMachine[]
}

/**
 * How a failure should be handled, in the spirit of Gardener's ERR_* codes:
 * `retryable` — transient, the engine retries with backoff; `user` — the request must change;
 * `platform` — the platform team must act (capacity, configuration).
 */
export type ErrorClass = 'retryable' | 'user' | 'platform'

export type DriverErrorCode =
  | 'ERR_CAPACITY'
  | 'ERR_TRANSIENT'
  | 'ERR_UNAVAILABLE'
  | 'ERR_INVALID_REQUEST'
  | 'ERR_PROVISION_FAILED'
  | 'ERR_NOT_SUPPORTED'

const classOf: Record<DriverErrorCode, ErrorClass> = {
  ERR_CAPACITY: 'platform',
  ERR_TRANSIENT: 'retryable',
  ERR_UNAVAILABLE: 'retryable',
  ERR_INVALID_REQUEST: 'user',
  ERR_PROVISION_FAILED: 'retryable',
  ERR_NOT_SUPPORTED: 'user',
}

export class DriverError extends Error {
  readonly code: DriverErrorCode
  readonly errorClass: ErrorClass
  /**
   * ERR_PROVISION_FAILED: the machines that will not come up as they are. The engine releases them
   * (the driver keeps their hardware out of the pool) and asks for replacements.
   */
  readonly failedMachines: readonly string[]
  constructor(code: DriverErrorCode, message: string, options: { failedMachines?: string[] } = {}) {
    super(message)
    this.name = 'DriverError'
    this.code = code
    this.errorClass = classOf[code]
    this.failedMachines = options.failedMachines ?? []
  }
}

/** The contract every backend implements; see CONTRACT.md for the MUST/SHOULD rules. */
export interface Driver {
  readonly kind: DriverKind
  capabilities(): Promise<Capabilities>
  /** Create-or-adopt every machine by name; all or nothing per machine, never two for one name. */
  ensureMachines(cluster: ClusterRef, machines: MachineSpec[]): Promise<MachineRef[]>
  /** Release machines by name; names the backend does not know are already released. */
  releaseMachines(cluster: ClusterRef, names: string[]): Promise<void>
  /** Brings the control plane up on its machines; idempotent. */
  bootstrap(cluster: ClusterRef, controlPlane: MachineRef[]): Promise<ClusterEndpoint>
  /** Joins worker machines to the cluster; idempotent. */
  joinMachines(cluster: ClusterRef, machines: MachineRef[]): Promise<void>
  /**
   * What the backend sees now; reports unhealthy machines as data, never by throwing, and a backend
   * that does not answer as `Unknown` machines with `backendReachable: false`.
   */
  observe(cluster: ClusterRef, machineNames: string[]): Promise<ObservedState>
  /**
   * Backends that roll machines onto a new Kubernetes version themselves (Cluster API): sets the
   * cluster's version and waits (bounded) while the backend replaces the machines of `part`,
   * reporting progress. Idempotent; the engine calls it again until `done`. Without it the engine
   * replaces machines one by one through `ensureMachines` and `releaseMachines`.
   */
  rollOut?(cluster: ClusterRef, version: string, part: 'control-plane' | 'workers'): Promise<RolloutProgress>
  /**
   * The backend replaces unhealthy machines itself (a MachineHealthCheck): Kiln reports them and
   * leaves their repair to it, instead of replacing them a second time.
   */
  readonly remediatesMachines?: boolean
  close(): Promise<void>
}
