import { withSharedAgent } from '@kiln/addons'
import {
  ApiException,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  PatchStrategy,
} from '@kubernetes/client-node'
import { readSecret } from '../backend-config.ts'
import {
  type Capabilities,
  type ClusterEndpoint,
  type ClusterRef,
  type Driver,
  DriverError,
  type MachineClassCapacity,
  type MachineRef,
  type MachineSpec,
  type ObservedMachine,
  type ObservedState,
  type RolloutProgress,
  unobservable,
} from '../contract.ts'
import { type CapiConfig, checkCapiConfig } from './config.ts'

// Kiln's machines by name, on Cluster API. Kiln writes one `Cluster` per cluster with a managed
// topology (a ClusterClass, a version, control-plane replicas and a MachineDeployment per node group
// and zone); Cluster API creates and replaces the Machines. Kiln's machine names are *slots*: the
// Cluster's `kiln.dev/machines` annotation records every slot, its group and the Machine bound to it
// now, so that replicas always equal the slots of a group, a name is adopted by any worker, and a
// Machine Cluster API replaces (rollout, remediation) hands its slot to its successor. Every write to
// the Cluster carries its resourceVersion: concurrent workers serialise on it.

const capiVersion = 'cluster.x-k8s.io/v1beta2'
const fieldManager = 'kiln'
const managedBy = { 'app.kubernetes.io/managed-by': 'kiln' }
const slotsAnnotation = 'kiln.dev/machines'
const deleteMachineAnnotation = 'cluster.x-k8s.io/delete-machine'
const autoscalerMin = 'cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size'
const autoscalerMax = 'cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size'
const controlPlaneGroup = 'control-plane'

interface Condition {
  type: string
  status: string
  reason?: string
  message?: string
}

interface TopologyMachineDeployment {
  class: string
  name: string
  replicas?: number
  failureDomain?: string
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> }
  taints?: { key: string; value?: string; effect: string; propagation: string }[]
}

interface CapiCluster extends KubernetesObject {
  spec?: {
    paused?: boolean
    controlPlaneEndpoint?: { host?: string; port?: number }
    topology?: {
      version?: string
      controlPlane?: { replicas?: number }
      workers?: { machineDeployments?: TopologyMachineDeployment[] }
    }
  }
  status?: {
    phase?: string
    conditions?: Condition[]
    initialization?: { controlPlaneInitialized?: boolean; infrastructureProvisioned?: boolean }
  }
}

interface CapiMachine extends KubernetesObject {
  spec?: { version?: string; failureDomain?: string }
  status?: { phase?: string; nodeRef?: { name?: string }; conditions?: Condition[] }
}

interface TemplateRef {
  apiVersion: string
  kind: string
  name: string
}

interface ClusterClass extends KubernetesObject {
  spec?: {
    controlPlane?: { machineInfrastructure?: { templateRef?: TemplateRef } }
    workers?: { machineDeployments?: { class: string; infrastructure?: { templateRef?: TemplateRef } }[] }
  }
}

/** One Kiln machine name: its group (a MachineDeployment's topology name, or the control plane), class, zone and bound Machine. */
interface Slot {
  g: string
  c: string
  z: string
  m?: string
}
type Slots = Record<string, Slot>

interface OfferedClass extends Omit<MachineClassCapacity, 'available'> {
  /** The ClusterClass's machine-deployment class offering it to workers, if any. */
  workerClass?: string
  controlPlane: boolean
  perZone: number
}

interface Catalogue {
  zones: string[]
  classes: Map<string, OfferedClass>
}

const conditionOf = (conditions: Condition[] | undefined, type: string) =>
  conditions?.find((c) => c.type === type)

const isTrue = (conditions: Condition[] | undefined, type: string) =>
  conditionOf(conditions, type)?.status === 'True'

/** A DNS label of at most `max` characters from any text. */
function dnsLabel(text: string, max: number) {
  const label = text
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, max)
    .replace(/-+$/, '')
  return label || 'x'
}

const versionTag = (version: string) => (version.startsWith('v') ? version : `v${version}`)

const quotaMessage = /quota|insufficient capacity|no valid host/i

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Polls of Cluster API's progress start quick and slow down to every 2 s: a machine takes seconds to
 * minutes, and a thousand operations waiting at once must not flood the management cluster.
 */
const pollDelay = (poll: number) => Math.min(2000, 250 * 1.5 ** poll) * (0.8 + Math.random() * 0.4)

function slotsOf(cluster: CapiCluster | undefined): Slots {
  const text = cluster?.metadata?.annotations?.[slotsAnnotation]
  if (!text) return {}
  try {
    return JSON.parse(text) as Slots
  } catch {
    return {}
  }
}

/**
 * The `capi` driver: any Cluster API infrastructure provider, through a management cluster Kiln
 * reaches with a kubeconfig. See docs/capi.md for what it writes and what it expects there.
 */
export class CapiDriver implements Driver {
  readonly kind = 'capi' as const
  readonly remediatesMachines = true
  private client: { text: string; api: KubernetesObjectApi } | undefined
  private catalogue: { at: number; value: Promise<Catalogue> } | undefined
  private closed = false

  constructor(
    readonly backend: string,
    private readonly rawConfig: unknown,
  ) {}

  private checked: CapiConfig | undefined

  /** Checked once: a driver's config never changes (a changed backend gets a new driver). */
  private get config(): CapiConfig {
    this.checked ??= checkCapiConfig(this.rawConfig)
    return this.checked
  }

  private get namespace() {
    return this.config.namespace
  }

  /** The kubeconfig is read on every use: a rotated file is picked up at the next call. */
  private api(): KubernetesObjectApi {
    const config = this.config
    const text = readSecret(config.kubeconfig, `Cluster API backend ${this.backend}'s kubeconfig`)
    if (this.client?.text !== text) {
      const kubeConfig = new KubeConfig()
      try {
        kubeConfig.loadFromString(text)
        if (config.context) kubeConfig.setCurrentContext(config.context)
      } catch (error) {
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `The Cluster API backend ${this.backend}'s kubeconfig cannot be read: ${(error as Error).message}`,
        )
      }
      this.client = { text, api: KubernetesObjectApi.makeApiClient(withSharedAgent(kubeConfig)) }
    }
    return this.client.api
  }

  /** One request to the management cluster, bounded in time, its failure a DriverError. */
  private async call<T>(what: string, request: (api: KubernetesObjectApi) => Promise<T>): Promise<T> {
    if (this.closed)
      throw new DriverError('ERR_UNAVAILABLE', `The driver of backend ${this.backend} is closed.`)
    const api = this.api()
    const timeoutMs = this.config.requestTimeoutMs ?? 15_000
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        request(api),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
        }),
      ])
    } catch (error) {
      throw this.failure(error, what)
    } finally {
      clearTimeout(timer)
    }
  }

  private failure(error: unknown, what: string): DriverError {
    if (error instanceof DriverError) return error
    const where = `the management cluster of backend ${this.backend}`
    if (error instanceof ApiException) {
      const status = statusMessage(error.body) ?? error.message
      const code = error.code
      if (code === 409)
        return new DriverError('ERR_TRANSIENT', `${what}: a concurrent change (${status}); retrying.`)
      if (code === 400 || code === 422 || code === 404)
        return new DriverError('ERR_INVALID_REQUEST', `${where} refused ${what}: ${status}`)
      if (code === 401 || code === 403)
        return new DriverError(
          'ERR_UNAVAILABLE',
          `${where} refused Kiln's account ${what} (${code}: ${status}); check its kubeconfig and RBAC (docs/capi.md).`,
        )
      return new DriverError('ERR_UNAVAILABLE', `${where} failed ${what} (${code}: ${status}).`)
    }
    return new DriverError(
      'ERR_UNAVAILABLE',
      `${where} did not answer ${what}: ${error instanceof Error ? error.message : String(error)}`,
    )
  }

  /** An object, or undefined when it does not exist. */
  private async read<T extends KubernetesObject>(apiVersion: string, kind: string, name: string) {
    return this.call(`reading ${kind} ${this.namespace}/${name}`, (api) =>
      api.read<T>({ apiVersion, kind, metadata: { name, namespace: this.namespace } }).catch(absent),
    )
  }

  /** Deletes an object; one already gone is fine. */
  private remove(apiVersion: string, kind: string, name: string, resourceVersion?: string) {
    return this.call(`deleting ${kind} ${this.namespace}/${name}`, (api) =>
      api
        .delete(
          { apiVersion, kind, metadata: { name, namespace: this.namespace } },
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
          resourceVersion ? { preconditions: { resourceVersion } } : undefined,
        )
        .catch(absent),
    )
  }

  private async list<T extends KubernetesObject>(apiVersion: string, kind: string, labelSelector: string) {
    const list = await this.call(`listing ${kind} in ${this.namespace}`, (api) =>
      api.list<T>(
        apiVersion,
        kind,
        this.namespace,
        undefined,
        undefined,
        undefined,
        undefined,
        labelSelector,
      ),
    )
    return list.items
  }

  private apply<T extends KubernetesObject>(object: T, what: string) {
    return this.call(what, (api) =>
      api.patch<T>(object, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    )
  }

  /** The Cluster's name: the Kiln name, made unique by the start of the Kiln id. */
  clusterName(cluster: ClusterRef) {
    return `${dnsLabel(cluster.name, 40)}-${dnsLabel(cluster.id.replaceAll('-', ''), 8)}`
  }

  private labelsOf(cluster: ClusterRef) {
    return { ...managedBy, 'kiln.dev/cluster-id': dnsLabel(cluster.id, 63), 'kiln.dev/backend': this.backend }
  }

  /** The Cluster, if Kiln wrote it; one of the same name Kiln did not write is never touched. */
  private async readCluster(cluster: ClusterRef): Promise<CapiCluster | undefined> {
    const live = await this.read<CapiCluster>(capiVersion, 'Cluster', this.clusterName(cluster))
    if (
      live &&
      live.metadata?.labels?.['kiln.dev/cluster-id'] !== this.labelsOf(cluster)['kiln.dev/cluster-id']
    )
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `Cluster ${this.namespace}/${this.clusterName(cluster)} exists but Kiln did not create it for cluster ${cluster.id}; Kiln leaves it alone.`,
      )
    return live
  }

  /** What the ClusterClass offers: machine classes from its templates' annotations, zones from its own. */
  private offered(): Promise<Catalogue> {
    const now = Date.now()
    if (this.catalogue && now - this.catalogue.at < 5000) return this.catalogue.value
    const value = this.readCatalogue()
    this.catalogue = { at: now, value }
    value.catch(() => {
      if (this.catalogue?.value === value) this.catalogue = undefined
    })
    return value
  }

  private async readCatalogue(): Promise<Catalogue> {
    const { clusterClass } = this.config
    const cc = await this.read<ClusterClass>(capiVersion, 'ClusterClass', clusterClass)
    if (!cc)
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `The ClusterClass ${this.namespace}/${clusterClass} of backend ${this.backend} does not exist; install it (docs/capi.md).`,
      )
    const zones = (cc.metadata?.annotations?.['kiln.dev/failure-domains'] ?? '')
      .split(',')
      .map((z) => z.trim())
      .filter(Boolean)
    const classes = new Map<string, OfferedClass>()
    const offer = async (
      ref: TemplateRef | undefined,
      role: { workerClass?: string; controlPlane: boolean },
    ) => {
      if (!ref) return
      const template = await this.read<KubernetesObject>(ref.apiVersion, ref.kind, ref.name)
      if (!template)
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `The ClusterClass ${clusterClass} names ${ref.kind} ${ref.name}, which does not exist in ${this.namespace}.`,
        )
      const a = template.metadata?.annotations ?? {}
      const name = a['kiln.dev/machine-class'] ?? role.workerClass ?? ref.name
      const number = (key: string, fallback: number) => {
        const n = Number(a[key])
        return Number.isFinite(n) && a[key] !== undefined ? n : fallback
      }
      const known = classes.get(name)
      classes.set(name, {
        name,
        cpu: number('kiln.dev/cpu', 0),
        memoryMiB: number('kiln.dev/memory-mib', 0),
        gpuModel: a['kiln.dev/gpu-model'] || null,
        gpuCount: number('kiln.dev/gpu-count', 0),
        perZone: number('kiln.dev/max-per-failure-domain', 1000),
        controlPlane: role.controlPlane || (known?.controlPlane ?? false),
        ...((role.workerClass ?? known?.workerClass)
          ? { workerClass: role.workerClass ?? known?.workerClass }
          : {}),
      })
    }
    await offer(cc.spec?.controlPlane?.machineInfrastructure?.templateRef, { controlPlane: true })
    for (const md of cc.spec?.workers?.machineDeployments ?? [])
      await offer(md.infrastructure?.templateRef, { workerClass: md.class, controlPlane: false })
    return { zones, classes }
  }

  /** Slots in use per class and zone, over every Cluster of this backend that is not being deleted. */
  private async usage(except?: { name: string; slots: Slots }) {
    const clusters = await this.list<CapiCluster>(
      capiVersion,
      'Cluster',
      `app.kubernetes.io/managed-by=kiln,kiln.dev/backend=${this.backend}`,
    )
    const used = new Map<string, number>()
    const count = (slots: Slots) => {
      for (const slot of Object.values(slots))
        used.set(`${slot.c}/${slot.z}`, (used.get(`${slot.c}/${slot.z}`) ?? 0) + 1)
    }
    for (const c of clusters) {
      if (c.metadata?.deletionTimestamp || c.metadata?.name === except?.name) continue
      count(slotsOf(c))
    }
    if (except) count(except.slots)
    return used
  }

  async capabilities(): Promise<Capabilities> {
    const { zones, classes } = await this.offered()
    const used = await this.usage()
    return {
      zones,
      machineClasses: [...classes.values()].map((c) => ({
        name: c.name,
        cpu: c.cpu,
        memoryMiB: c.memoryMiB,
        gpuModel: c.gpuModel,
        gpuCount: c.gpuCount,
        available: Object.fromEntries(
          zones.map((z) => [z, Math.max(0, c.perZone - (used.get(`${c.name}/${z}`) ?? 0))]),
        ),
      })),
    }
  }

  /** The Cluster Kiln wants: its slots, the groups they make, paused until `bootstrap`. */
  private intent(
    cluster: ClusterRef,
    live: CapiCluster | undefined,
    slots: Slots,
    options: { groups?: Map<string, TopologyMachineDeployment>; version?: string; paused?: boolean },
  ): CapiCluster {
    const liveGroups = new Map(
      (live?.spec?.topology?.workers?.machineDeployments ?? []).map((md) => [md.name, md]),
    )
    const replicas = new Map<string, number>()
    for (const slot of Object.values(slots)) replicas.set(slot.g, (replicas.get(slot.g) ?? 0) + 1)
    const machineDeployments: TopologyMachineDeployment[] = []
    for (const [name, count] of [...replicas].sort(([a], [b]) => a.localeCompare(b))) {
      if (name === controlPlaneGroup) continue
      const md = options.groups?.get(name) ?? liveGroups.get(name)
      if (!md) continue
      machineDeployments.push({ ...md, replicas: count })
    }
    const paused = options.paused ?? live?.spec?.paused ?? true
    const version = options.version ?? live?.spec?.topology?.version
    const variables = Object.entries(this.config.variables ?? {}).map(([name, value]) => ({ name, value }))
    return {
      apiVersion: capiVersion,
      kind: 'Cluster',
      metadata: {
        name: this.clusterName(cluster),
        namespace: this.namespace,
        labels: this.labelsOf(cluster),
        annotations: { [slotsAnnotation]: JSON.stringify(slots) },
        ...(live?.metadata?.resourceVersion ? { resourceVersion: live.metadata.resourceVersion } : {}),
      },
      spec: {
        paused,
        topology: {
          classRef: { name: this.config.clusterClass },
          version: versionTag(version ?? '1.31.0'),
          controlPlane: { replicas: replicas.get(controlPlaneGroup) ?? 0 },
          ...(machineDeployments.length > 0 ? { workers: { machineDeployments } } : {}),
          ...(variables.length > 0 ? { variables } : {}),
        },
      } as CapiCluster['spec'],
    }
  }

  /**
   * Writes the intent over the live Cluster it was computed from (its resourceVersion a precondition).
   * An absent Cluster is first created as a bare, paused skeleton — a create fails if another worker
   * created it meanwhile, which server-side apply cannot — and the intent is applied over that: the
   * create's fields are ones every intent sets again, so apply alone owns (and can remove) the rest.
   */
  private async write(live: CapiCluster | undefined, intent: CapiCluster) {
    const what = `writing Cluster ${this.namespace}/${intent.metadata?.name}`
    if (live) return this.apply(intent, what)
    const skeleton: CapiCluster = {
      apiVersion: capiVersion,
      kind: 'Cluster',
      metadata: { name: intent.metadata!.name!, namespace: this.namespace, labels: intent.metadata!.labels! },
      spec: { paused: true },
    }
    const created = await this.call(what, (api) => api.create(skeleton, undefined, undefined, fieldManager))
    return this.apply(
      { ...intent, metadata: { ...intent.metadata, resourceVersion: created.metadata!.resourceVersion! } },
      what,
    )
  }

  /**
   * Reads the Cluster, lets `change` compute new slots from it, and writes them; a concurrent write
   * (another worker) makes it read and compute again. `change` returns undefined to write nothing.
   */
  private async mutate<T>(
    cluster: ClusterRef,
    change: (live: CapiCluster | undefined, slots: Slots) => Promise<{ intent?: CapiCluster; result: T }>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const live = await this.readCluster(cluster)
      const { intent, result } = await change(live, slotsOf(live))
      if (!intent) return result
      try {
        await this.write(live, intent)
        return result
      } catch (error) {
        if (!(error instanceof DriverError) || error.code !== 'ERR_TRANSIENT' || attempt >= 40) throw error
        await sleep(10 + Math.random() * 40 * Math.min(attempt + 1, 5))
      }
    }
  }

  private groupOf(spec: MachineSpec, offered: OfferedClass): TopologyMachineDeployment {
    const group = dnsLabel(
      `${spec.nodeGroup?.name ?? spec.labels['kiln.dev/node-group'] ?? 'workers'}-${spec.zone}`,
      50,
    )
    const autoscaling = spec.nodeGroup?.autoscaling
    const annotations = autoscaling
      ? { [autoscalerMin]: String(autoscaling.minCount), [autoscalerMax]: String(autoscaling.maxCount) }
      : undefined
    const labels = Object.keys(spec.labels).length > 0 ? spec.labels : undefined
    return {
      class: offered.workerClass!,
      name: group,
      failureDomain: spec.zone,
      ...(labels || annotations
        ? { metadata: { ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) } }
        : {}),
      ...(spec.taints.length > 0
        ? {
            taints: spec.taints.map((t) => ({
              key: t.key,
              ...(t.value ? { value: t.value } : {}),
              effect: t.effect,
              propagation: 'Always',
            })),
          }
        : {}),
    }
  }

  async ensureMachines(cluster: ClusterRef, machines: MachineSpec[]): Promise<MachineRef[]> {
    if (machines.length === 0) return []
    const { zones, classes } = await this.offered()
    const groups = new Map<string, TopologyMachineDeployment>()
    const wanted: Slots = {}
    for (const spec of machines) {
      const offered = classes.get(spec.machineClass)
      const usable = offered && (spec.role === 'control-plane' ? offered.controlPlane : offered.workerClass)
      if (!usable)
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `Machine class ${spec.machineClass} is not offered for ${spec.role} machines by ClusterClass ${this.config.clusterClass} of backend ${this.backend}.`,
        )
      if (!zones.includes(spec.zone))
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `Zone ${spec.zone} is not a failure domain of backend ${this.backend} (${zones.join(', ') || 'none declared'}).`,
        )
      let g = controlPlaneGroup
      if (spec.role === 'worker') {
        const md = this.groupOf(spec, offered)
        groups.set(md.name, md)
        g = md.name
      }
      wanted[spec.name] = { g, c: spec.machineClass, z: spec.zone }
    }
    const version = machines[0]!.kubernetesVersion
    await this.mutate(cluster, async (live, slots) => {
      if (live?.metadata?.deletionTimestamp)
        throw new DriverError(
          'ERR_TRANSIENT',
          `Cluster ${this.namespace}/${this.clusterName(cluster)} is being deleted by Cluster API; machines are asked for again once it is gone.`,
        )
      const fresh = Object.entries(wanted).filter(([name]) => !slots[name])
      const changedGroups = [...groups.values()].some((md) => {
        const current = live?.spec?.topology?.workers?.machineDeployments?.find((m) => m.name === md.name)
        return (
          current && JSON.stringify({ ...current, replicas: 0 }) !== JSON.stringify({ ...md, replicas: 0 })
        )
      })
      if (fresh.length === 0 && !changedGroups) return { result: undefined }
      const next: Slots = { ...slots, ...Object.fromEntries(fresh) }
      const used = await this.usage({ name: this.clusterName(cluster), slots: next })
      for (const [, slot] of fresh) {
        const limit = classes.get(slot.c)!.perZone
        const inUse = used.get(`${slot.c}/${slot.z}`) ?? 0
        if (inUse > limit)
          throw new DriverError(
            'ERR_CAPACITY',
            `No free ${slot.c} machine in ${slot.z} on backend ${this.backend}: ${limit} is the limit per failure domain and ${inUse} would be in use.`,
          )
      }
      return {
        intent: this.intent(cluster, live, next, { groups, version: live ? undefined : version }),
        result: undefined,
      }
    })
    return machines.map((m) => ({
      name: m.name,
      externalId: `${this.namespace}/${this.clusterName(cluster)}/${m.name}`,
      zone: m.zone,
      machineClass: m.machineClass,
    }))
  }

  async releaseMachines(cluster: ClusterRef, names: string[]): Promise<void> {
    if (names.length === 0) return
    const gone = await this.mutate(cluster, async (live, slots) => {
      if (!live) return { result: true }
      const released = names.filter((n) => slots[n])
      if (released.length === 0) return { result: Object.keys(slots).length === 0 }
      // Cluster API deletes annotated Machines first when a group shrinks: exactly the released ones.
      for (const name of released) {
        const machine = slots[name]!.m
        if (machine) await this.markForDeletion(machine)
      }
      const next = Object.fromEntries(Object.entries(slots).filter(([n]) => !released.includes(n)))
      return { intent: this.intent(cluster, live, next, {}), result: Object.keys(next).length === 0 }
    })
    if (gone) return this.deleteCluster(cluster)
    // A group that went takes its MachineHealthCheck with it.
    const live = await this.readCluster(cluster)
    if (live) await this.writeHealthChecks(cluster, live)
  }

  private async markForDeletion(machine: string) {
    await this.call(`marking Machine ${machine} for deletion`, (api) =>
      api
        .patch(
          {
            apiVersion: capiVersion,
            kind: 'Machine',
            metadata: {
              name: machine,
              namespace: this.namespace,
              annotations: { [deleteMachineAnnotation]: 'kiln' },
            },
          },
          undefined,
          undefined,
          fieldManager,
          undefined,
          PatchStrategy.MergePatch,
        )
        // Gone already: nothing to mark.
        .catch(absent),
    )
  }

  /**
   * No slot is left: the Cluster goes, Cluster API's finalizers take its machines and infrastructure,
   * and once it is gone Kiln removes what it wrote beside it (CA secrets, health checks).
   */
  private async deleteCluster(cluster: ClusterRef) {
    const name = this.clusterName(cluster)
    const deadline = Date.now() + this.waitMs()
    let poll = 0
    for (;;) {
      const live = await this.readCluster(cluster)
      if (!live) break
      if (!live.metadata?.deletionTimestamp) {
        // Another worker wants machines in it again: it stays.
        if (Object.keys(slotsOf(live)).length > 0) return
        try {
          // A paused Cluster is not reconciled, so not deleted either: let Cluster API act first.
          if (live.spec?.paused) {
            await this.write(live, this.intent(cluster, live, {}, { paused: false }))
            continue
          }
          // Only the Cluster read empty: a slot added meanwhile fails the precondition.
          await this.remove(capiVersion, 'Cluster', name, live.metadata?.resourceVersion)
        } catch (error) {
          // Changed by another worker meanwhile: look again.
          if (!(error instanceof DriverError && error.code === 'ERR_TRANSIENT')) throw error
        }
      }
      if (Date.now() > deadline)
        throw new DriverError(
          'ERR_TRANSIENT',
          `Waiting for Cluster API to delete Cluster ${this.namespace}/${name} (phase ${live.status?.phase ?? 'unknown'}, finalizers ${(live.metadata?.finalizers ?? []).join(', ') || 'none'}).`,
        )
      await sleep(pollDelay(poll++))
    }
    const selector = `app.kubernetes.io/managed-by=kiln,kiln.dev/cluster-id=${this.labelsOf(cluster)['kiln.dev/cluster-id']}`
    for (const [apiVersion, kind] of [
      ['v1', 'Secret'],
      [capiVersion, 'MachineHealthCheck'],
    ] as const) {
      for (const object of await this.list(apiVersion, kind, selector))
        await this.remove(apiVersion, kind, object.metadata!.name!)
    }
  }

  private waitMs() {
    return (this.config.waitSeconds ?? 20) * 1000
  }

  private machinesOf(cluster: ClusterRef) {
    return this.list<CapiMachine>(
      capiVersion,
      'Machine',
      `cluster.x-k8s.io/cluster-name=${this.clusterName(cluster)}`,
    )
  }

  /**
   * Binds unbound slots to Machines of their group that no slot holds, and frees slots whose Machine is
   * gone or going (Cluster API replaced it). Returns the slots as written, with the Machines.
   */
  private async bind(
    cluster: ClusterRef,
  ): Promise<{ live?: CapiCluster; slots: Slots; machines: Map<string, CapiMachine> }> {
    let machines = new Map<string, CapiMachine>()
    let state: { live?: CapiCluster; slots: Slots } = { slots: {} }
    await this.mutate(cluster, async (live, slots) => {
      machines = new Map((live ? await this.machinesOf(cluster) : []).map((m) => [m.metadata!.name!, m]))
      state = { ...(live ? { live } : {}), slots }
      if (!live) return { result: undefined }
      const next: Slots = structuredClone(slots)
      let changed = false
      const usable = (m: CapiMachine | undefined) =>
        m !== undefined &&
        !m.metadata?.deletionTimestamp &&
        m.metadata?.annotations?.[deleteMachineAnnotation] === undefined
      for (const slot of Object.values(next)) {
        if (slot.m && !usable(machines.get(slot.m))) {
          delete slot.m
          changed = true
        }
      }
      const held = new Set(Object.values(next).flatMap((s) => (s.m ? [s.m] : [])))
      const groupOf = (m: CapiMachine) =>
        m.metadata?.labels?.['cluster.x-k8s.io/control-plane'] !== undefined
          ? controlPlaneGroup
          : m.metadata?.labels?.['topology.cluster.x-k8s.io/deployment-name']
      // Oldest first, so slots keep to settled Machines; names sort slots deterministically.
      const free = [...machines.values()]
        .filter((m) => usable(m) && !held.has(m.metadata!.name!))
        .sort(
          (a, b) =>
            String(a.metadata?.creationTimestamp ?? '').localeCompare(
              String(b.metadata?.creationTimestamp ?? ''),
            ) || a.metadata!.name!.localeCompare(b.metadata!.name!),
        )
      for (const name of Object.keys(next).sort()) {
        const slot = next[name]!
        if (slot.m) continue
        const index = free.findIndex((m) => groupOf(m) === slot.g)
        if (index < 0) continue
        slot.m = free.splice(index, 1)[0]!.metadata!.name!
        changed = true
      }
      state = { live, slots: next }
      if (!changed) return { result: undefined }
      return { intent: this.intent(cluster, live, next, {}), result: undefined }
    })
    return { ...state, machines }
  }

  /** Why a bound Machine is not a working node yet, or undefined when it is. */
  private machineHealth(machine: CapiMachine | undefined): Omit<ObservedMachine, 'name'> {
    if (!machine)
      return { health: 'Unhealthy', reason: 'Provisioning: Cluster API has not created its Machine yet' }
    const conditions = machine.status?.conditions
    const phase = machine.status?.phase ?? 'Pending'
    const infra = conditionOf(conditions, 'InfrastructureReady')
    const detail = (c: Condition | undefined) =>
      c ? `${c.reason ?? c.type}${c.message ? `: ${c.message}` : ''}` : ''
    if (machine.metadata?.deletionTimestamp)
      return {
        health: 'Unhealthy',
        reason: `Deleting: Cluster API is replacing Machine ${machine.metadata.name}`,
      }
    if (phase === 'Failed')
      return {
        health: 'Unhealthy',
        reason: `ProviderFailed: ${detail(infra) || 'the provider reports the Machine failed'}`,
        definite: true,
      }
    const check = conditionOf(conditions, 'HealthCheckSucceeded')
    if (check?.status === 'False')
      return {
        health: 'Unhealthy',
        reason: `HealthCheckFailed: ${detail(check)}; its MachineHealthCheck remediates it`,
      }
    if (phase === 'Running' && machine.status?.nodeRef?.name) {
      const node = conditionOf(conditions, 'NodeHealthy') ?? conditionOf(conditions, 'NodeReady')
      if (node && node.status !== 'True')
        return { health: 'Unhealthy', reason: `NodeNotReady: ${detail(node)}` }
      return { health: 'Healthy', reason: `Running as node ${machine.status.nodeRef.name}` }
    }
    return {
      health: 'Unhealthy',
      reason: `Provisioning: Machine ${machine.metadata?.name} is ${phase}${infra?.status === 'False' ? ` (${detail(infra)})` : ''}`,
    }
  }

  /**
   * Waits (bounded) until every named slot runs as a node. A provider's quota refusal is ERR_CAPACITY;
   * a Machine the provider failed is ERR_PROVISION_FAILED naming it (the engine replaces it); still
   * provisioning when the wait ends is ERR_TRANSIENT (the step retries and resumes waiting).
   */
  private async waitRunning(cluster: ClusterRef, names: string[], role: string) {
    const deadline = Date.now() + this.waitMs()
    let poll = 0
    for (;;) {
      const { slots, machines, live } = await this.bind(cluster)
      const missing = names.filter((n) => !slots[n])
      if (!live || missing.length > 0)
        throw new DriverError(
          'ERR_INVALID_REQUEST',
          `No machine ${missing.join(', ')} in Cluster ${this.namespace}/${this.clusterName(cluster)}: ensureMachines first.`,
        )
      const failed: string[] = []
      const failures: string[] = []
      const waiting: string[] = []
      for (const name of names) {
        const slot = slots[name]!
        const machine = slot.m ? machines.get(slot.m) : undefined
        const infra = conditionOf(machine?.status?.conditions, 'InfrastructureReady')
        if (infra?.status === 'False' && quotaMessage.test(infra.message ?? ''))
          throw new DriverError(
            'ERR_CAPACITY',
            `The cloud refused a ${slot.c} machine in ${slot.z} for ${name} (backend ${this.backend}): ${infra.message}`,
          )
        const health = this.machineHealth(machine)
        if (health.health === 'Healthy') continue
        if (health.definite) {
          failed.push(name)
          failures.push(`${name}: ${health.reason}`)
        } else waiting.push(`${name}: ${health.reason}`)
      }
      if (failed.length > 0)
        throw new DriverError(
          'ERR_PROVISION_FAILED',
          // The provider's reason and message, as they reach the cluster's Ready condition.
          `Cluster API could not provision ${failures.slice(0, 3).join('; ')} (backend ${this.backend}).`,
          { failedMachines: failed },
        )
      if (waiting.length === 0) return live
      if (Date.now() > deadline)
        throw new DriverError(
          'ERR_TRANSIENT',
          `Waiting for Cluster API: ${waiting.length} ${role} machines not running yet (${waiting.slice(0, 3).join('; ')}).`,
        )
      await sleep(pollDelay(poll++))
    }
  }

  /** Kiln's authorities, as the secrets Cluster API documents for user-provided certificates. */
  private async writeAuthorities(cluster: ClusterRef) {
    if (!cluster.bootstrapMaterial) return
    const material = await cluster.bootstrapMaterial()
    const name = this.clusterName(cluster)
    const pairs: [string, string, string][] = [
      ['ca', material.clusterCa.certPem, material.clusterCa.keyPem],
      ['etcd', material.etcdCa.certPem, material.etcdCa.keyPem],
      ['proxy', material.frontProxyCa.certPem, material.frontProxyCa.keyPem],
      ['sa', material.serviceAccount.publicKeyPem, material.serviceAccount.privateKeyPem],
    ]
    for (const [suffix, crt, key] of pairs) {
      await this.apply(
        {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: `${name}-${suffix}`,
            namespace: this.namespace,
            labels: { ...this.labelsOf(cluster), 'cluster.x-k8s.io/cluster-name': name },
          },
          type: 'cluster.x-k8s.io/secret',
          data: {
            'tls.crt': Buffer.from(crt).toString('base64'),
            'tls.key': Buffer.from(key).toString('base64'),
          },
        } as KubernetesObject,
        `writing Secret ${this.namespace}/${name}-${suffix}`,
      )
    }
  }

  /** One MachineHealthCheck per MachineDeployment of the topology; those of groups gone are removed. */
  private async writeHealthChecks(cluster: ClusterRef, live: CapiCluster) {
    const name = this.clusterName(cluster)
    const mhc = this.config.machineHealthCheck ?? {}
    const maxUnhealthy = mhc.maxUnhealthy ?? '40%'
    const wanted = new Set<string>()
    for (const md of live.spec?.topology?.workers?.machineDeployments ?? []) {
      const mhcName = `${name}-${md.name}`.slice(0, 253)
      wanted.add(mhcName)
      await this.apply(
        {
          apiVersion: capiVersion,
          kind: 'MachineHealthCheck',
          metadata: { name: mhcName, namespace: this.namespace, labels: this.labelsOf(cluster) },
          spec: {
            clusterName: name,
            selector: {
              matchLabels: {
                'cluster.x-k8s.io/cluster-name': name,
                'topology.cluster.x-k8s.io/deployment-name': md.name,
              },
            },
            checks: {
              nodeStartupTimeoutSeconds: mhc.nodeStartupSeconds ?? 1200,
              unhealthyNodeConditions: ['False', 'Unknown'].map((status) => ({
                type: 'Ready',
                status,
                timeoutSeconds: mhc.unhealthySeconds ?? 300,
              })),
            },
            remediation: {
              triggerIf: {
                unhealthyLessThanOrEqualTo: /^\d+$/.test(maxUnhealthy) ? Number(maxUnhealthy) : maxUnhealthy,
              },
            },
          },
        } as KubernetesObject,
        `writing MachineHealthCheck ${this.namespace}/${mhcName}`,
      )
    }
    const selector = `app.kubernetes.io/managed-by=kiln,kiln.dev/cluster-id=${this.labelsOf(cluster)['kiln.dev/cluster-id']}`
    for (const existing of await this.list(capiVersion, 'MachineHealthCheck', selector)) {
      const existingName = existing.metadata!.name!
      if (!wanted.has(existingName)) await this.remove(capiVersion, 'MachineHealthCheck', existingName)
    }
  }

  private endpointOf(cluster: ClusterRef, live: CapiCluster): ClusterEndpoint | undefined {
    const configured = this.config.controlPlaneEndpoint
    const fill = (text: string) =>
      text.replaceAll('{clusterId}', cluster.id).replaceAll('{clusterName}', cluster.name)
    if (configured)
      return {
        server: fill(configured.server),
        ...(configured.tlsServerName ? { tlsServerName: fill(configured.tlsServerName) } : {}),
      }
    const { host, port } = live.spec?.controlPlaneEndpoint ?? {}
    if (!host) return undefined
    return { server: `https://${host.includes(':') ? `[${host}]` : host}:${port ?? 6443}` }
  }

  async bootstrap(cluster: ClusterRef, controlPlane: MachineRef[]): Promise<ClusterEndpoint> {
    if (controlPlane.length === 0)
      throw new DriverError('ERR_INVALID_REQUEST', 'A control plane needs machines.')
    // Kiln's authorities first: unpaused, the control-plane provider would generate its own.
    await this.writeAuthorities(cluster)
    await this.mutate(cluster, async (live, slots) => {
      if (!live)
        throw new DriverError('ERR_INVALID_REQUEST', `No Cluster for ${cluster.name}: ensureMachines first.`)
      if (live.spec?.paused === false) return { result: undefined }
      return { intent: this.intent(cluster, live, slots, { paused: false }), result: undefined }
    })
    const live = await this.waitRunning(
      cluster,
      controlPlane.map((m) => m.name),
      'control-plane',
    )
    const deadline = Date.now() + this.waitMs()
    let poll = 0
    for (let current = live; ; ) {
      const endpoint = this.endpointOf(cluster, current)
      if (endpoint && isTrue(current.status?.conditions, 'ControlPlaneAvailable')) {
        await this.writeHealthChecks(cluster, current)
        return endpoint
      }
      if (Date.now() > deadline)
        throw new DriverError(
          'ERR_TRANSIENT',
          `Waiting for Cluster API: the control plane of ${this.namespace}/${this.clusterName(cluster)} is not available yet (${describe(conditionOf(current.status?.conditions, 'ControlPlaneAvailable'))}).`,
        )
      await sleep(pollDelay(poll++))
      current = (await this.readCluster(cluster)) ?? current
    }
  }

  async joinMachines(cluster: ClusterRef, machines: MachineRef[]): Promise<void> {
    if (machines.length === 0) return
    const live = await this.waitRunning(
      cluster,
      machines.map((m) => m.name),
      'worker',
    )
    await this.writeHealthChecks(cluster, live)
  }

  async observe(cluster: ClusterRef, machineNames: string[]): Promise<ObservedState> {
    let bound: Awaited<ReturnType<CapiDriver['bind']>>
    try {
      bound = await this.bind(cluster)
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      // A configuration the driver cannot use is no outage; everything else said nothing about the machines.
      if (error instanceof DriverError && error.code === 'ERR_INVALID_REQUEST') throw error
      return unobservable(machineNames, reason)
    }
    const { live, slots, machines } = bound
    return {
      controlPlaneReachable: Boolean(live && isTrue(live.status?.conditions, 'ControlPlaneAvailable')),
      backendReachable: true,
      machines: machineNames.map((name): ObservedMachine => {
        const slot = slots[name]
        if (!slot) return { name, health: 'Missing', reason: 'NotAllocated: no such machine in the Cluster' }
        if (live?.spec?.paused)
          return {
            name,
            health: 'Unhealthy',
            reason: 'Provisioning: the Cluster waits for its control plane to be bootstrapped',
          }
        return { name, ...this.machineHealth(slot.m ? machines.get(slot.m) : undefined) }
      }),
    }
  }

  async rollOut(
    cluster: ClusterRef,
    version: string,
    part: 'control-plane' | 'workers',
  ): Promise<RolloutProgress> {
    const target = versionTag(version)
    await this.mutate(cluster, async (live, slots) => {
      if (!live) throw new DriverError('ERR_INVALID_REQUEST', `No Cluster for ${cluster.name} to upgrade.`)
      if (live.spec?.topology?.version === target) return { result: undefined }
      return { intent: this.intent(cluster, live, slots, { version: target }), result: undefined }
    })
    const deadline = Date.now() + this.waitMs()
    let poll = 0
    for (;;) {
      const progress = await this.rolloutProgress(cluster, target, part)
      if (progress.done || Date.now() > deadline) return progress
      await sleep(pollDelay(poll++))
    }
  }

  private async rolloutProgress(cluster: ClusterRef, target: string, part: 'control-plane' | 'workers') {
    const { slots, machines } = await this.bind(cluster)
    const wanted = new Map<string, number>()
    for (const slot of Object.values(slots)) wanted.set(slot.g, (wanted.get(slot.g) ?? 0) + 1)
    const lines: string[] = []
    let done = true
    for (const [group, count] of [...wanted].sort()) {
      if ((group === controlPlaneGroup) !== (part === 'control-plane')) continue
      const members = [...machines.values()].filter((m) =>
        group === controlPlaneGroup
          ? m.metadata?.labels?.['cluster.x-k8s.io/control-plane'] !== undefined
          : m.metadata?.labels?.['topology.cluster.x-k8s.io/deployment-name'] === group,
      )
      const upToDate = members.filter(
        (m) => versionTag(m.spec?.version ?? '') === target && this.machineHealth(m).health === 'Healthy',
      ).length
      const stale = members.filter((m) => versionTag(m.spec?.version ?? '') !== target).length
      if (upToDate < count || stale > 0) done = false
      lines.push(
        `${group === controlPlaneGroup ? 'control plane' : group} ${Math.min(upToDate, count)}/${count} on ${target}`,
      )
    }
    return { done, message: lines.join(', ') || `nothing to roll onto ${target}` }
  }

  async close(): Promise<void> {
    this.closed = true
    this.client = undefined
  }
}

/** A 404 answer: the object does not exist (any more). */
function absent(error: unknown): undefined {
  if (error instanceof ApiException && error.code === 404) return undefined
  throw error
}

function describe(condition: Condition | undefined) {
  if (!condition) return 'no ControlPlaneAvailable condition yet'
  return `${condition.type}=${condition.status}${condition.reason ? ` ${condition.reason}` : ''}${condition.message ? `: ${condition.message}` : ''}`
}

/** The message of a Kubernetes Status in an error body, when there is one. */
function statusMessage(body: unknown): string | undefined {
  let value = body
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body)
    } catch {
      return body.slice(0, 500)
    }
  }
  if (value && typeof value === 'object' && 'message' in value)
    return String((value as { message: unknown }).message)
  return undefined
}
