import { setTimeout as sleep } from 'node:timers/promises'
import type { Taint } from '@kiln/domain'
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
} from '../contract.ts'
import { IronicApiError, IronicClient } from './client.ts'
import { checkIronicConfig, type IronicConfig, imageFor } from './config.ts'
import { cloudInitUserData, type KubeadmRole } from './user-data.ts'

// Ironic's own records decide everything: an allocation named after the Kiln machine is the claim
// (Ironic refuses a second allocation of one name, and its scheduler never gives one node to two
// allocations), the node's provision state is the machine's progress. Nothing lives in driver memory.

export interface IronicNode {
  uuid: string
  name: string | null
  resource_class: string | null
  properties: Record<string, unknown>
  traits?: string[]
  conductor_group?: string
  provision_state: string
  target_provision_state: string | null
  power_state: string | null
  maintenance: boolean
  maintenance_reason: string | null
  fault?: string | null
  last_error: string | null
  instance_uuid: string | null
  allocation_uuid?: string | null
  instance_info?: Record<string, unknown>
}

export interface IronicAllocation {
  uuid: string
  name: string | null
  node_uuid: string | null
  state: 'allocating' | 'active' | 'error'
  last_error: string | null
  resource_class: string
  extra: Record<string, unknown>
}

const nodeFields = [
  'uuid',
  'name',
  'resource_class',
  'properties',
  'traits',
  'conductor_group',
  'provision_state',
  'target_provision_state',
  'power_state',
  'maintenance',
  'maintenance_reason',
  'fault',
  'last_error',
  // Not allocation_uuid: Ironic 21.4 answers 500 when it is asked for by `fields`; an allocation
  // sets instance_uuid too.
  'instance_uuid',
].join(',')

/** Provision states after which a node will not come up without someone acting. */
const failedStates = new Set(['deploy failed', 'error', 'clean failed', 'inspect failed'])

/** Mid-transition: Ironic refuses new provision actions. A failed node keeps its target, but rests. */
const busy = (node: IronicNode) =>
  Boolean(node.target_provision_state) && !failedStates.has(node.provision_state)

interface ResolvedClass {
  name: string
  resourceClass: string
  traits: string[]
}

/** Waits with doubling intervals until `check` returns a value or `timeoutMs` passes (then undefined). */
async function pollUntil<T>(
  check: () => Promise<T | undefined>,
  timeoutMs: number,
  interval: { min: number; max: number },
): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs
  let wait = interval.min
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() + wait > deadline) return undefined
    await sleep(wait)
    wait = Math.min(interval.max, wait * 2)
  }
}

/** Runs `fn` over `items`, `limit` at a time, keeping the order of results. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i]!)
    }
  })
  await Promise.all(workers)
  return results
}

/** Any other Ironic answer becomes the closest DriverError (rule 12): never a raw HTTP error. */
function classify(error: unknown, doing: string): DriverError {
  if (error instanceof DriverError) return error
  if (error instanceof IronicApiError) {
    // 409: the node is locked by a conductor task, or the state changed under us; try again.
    if (error.status === 409 || error.status === 503 || error.status >= 500)
      return new DriverError(
        error.status === 409 ? 'ERR_TRANSIENT' : 'ERR_UNAVAILABLE',
        `${doing}: ${error.message}`,
      )
    if (error.status === 401 || error.status === 403)
      return new DriverError(
        'ERR_INVALID_REQUEST',
        `${doing}: Ironic refused Kiln's credentials (${error.fault}).`,
      )
    return new DriverError('ERR_PROVISION_FAILED', `${doing}: ${error.message}`)
  }
  return new DriverError('ERR_TRANSIENT', `${doing}: ${(error as Error).message ?? String(error)}`)
}

/** Bare metal through OpenStack Ironic: allocation API to claim, config drive + kubeadm to join. */
export class IronicDriver implements Driver {
  readonly kind = 'ironic' as const
  readonly config: IronicConfig
  private readonly client: IronicClient
  private readonly interval: { min: number; max: number }

  constructor(
    readonly backend: string,
    config: unknown,
  ) {
    this.config = checkIronicConfig(config)
    this.client = new IronicClient({
      url: this.config.url,
      ...(this.config.auth ? { auth: this.config.auth } : {}),
      ...(this.config.tls ? { tls: this.config.tls } : {}),
      ...(this.config.requestTimeoutMs ? { requestTimeoutMs: this.config.requestTimeoutMs } : {}),
    })
    this.interval = {
      min: this.config.pollIntervalMs?.min ?? 200,
      max: this.config.pollIntervalMs?.max ?? 10_000,
    }
  }

  /** Every node, with the fields the driver reads; follows Ironic's pagination. */
  async listNodes(query = ''): Promise<IronicNode[]> {
    const nodes: IronicNode[] = []
    let path: string | undefined = `v1/nodes?fields=${nodeFields}&limit=1000${query ? `&${query}` : ''}`
    while (path) {
      const page: { nodes: IronicNode[]; next?: string } = await this.client.request('GET', path)
      nodes.push(...page.nodes)
      path = page.next
        ? new URL(page.next).pathname.replace(/^\//, '') + new URL(page.next).search
        : undefined
    }
    return nodes
  }

  zoneOf(node: IronicNode): string {
    const value = node.properties[this.config.zoneProperty ?? 'zone']
    if (typeof value === 'string' && value) return value
    return node.conductor_group || 'default'
  }

  /** The machine classes: configured ones, or one per resource class found on the nodes. */
  private classes(nodes: IronicNode[]): ResolvedClass[] {
    if (this.config.machineClasses?.length) {
      return this.config.machineClasses.map((mc) => ({
        name: mc.name,
        resourceClass: mc.resourceClass,
        traits: mc.traits ?? [],
      }))
    }
    const resourceClasses = [
      ...new Set(nodes.map((n) => n.resource_class).filter((rc): rc is string => !!rc)),
    ]
    return resourceClasses.sort().map((rc) => ({ name: rc, resourceClass: rc, traits: [] }))
  }

  private fits(node: IronicNode, mc: ResolvedClass): boolean {
    return node.resource_class === mc.resourceClass && mc.traits.every((t) => node.traits?.includes(t))
  }

  /** Free: available, not in maintenance, claimed by no allocation or instance. */
  private isFree(node: IronicNode): boolean {
    return (
      node.provision_state === 'available' &&
      !node.target_provision_state &&
      !node.maintenance &&
      !node.instance_uuid &&
      !node.allocation_uuid
    )
  }

  /** The machine class `name` among `nodes` (all of Ironic's), and its nodes. */
  private classNamed(name: string, nodes: IronicNode[]): { mc: ResolvedClass; nodes: IronicNode[] } {
    const mc = this.classes(nodes).find((c) => c.name === name)
    if (!mc) {
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `The bare-metal backend '${this.backend}' has no machine class '${name}' (no node has that resource class).`,
      )
    }
    return { mc, nodes: nodes.filter((n) => this.fits(n, mc)) }
  }

  async capabilities(): Promise<Capabilities> {
    let nodes: IronicNode[]
    try {
      nodes = await this.listNodes()
    } catch (error) {
      throw classify(error, `Listing the nodes of Ironic backend '${this.backend}'`)
    }
    const zones = [...new Set(nodes.map((n) => this.zoneOf(n)))].sort()
    const machineClasses: MachineClassCapacity[] = this.classes(nodes).map((mc) => {
      const members = nodes.filter((n) => this.fits(n, mc))
      const num = (n: IronicNode, key: string) => Number(n.properties[key] ?? 0) || 0
      const min = (key: string) => (members.length ? Math.min(...members.map((n) => num(n, key))) : 0)
      const gpuTrait = members.flatMap((n) => n.traits ?? []).find((t) => t.startsWith('CUSTOM_GPU_'))
      const available: Record<string, number> = {}
      for (const n of members) {
        const zone = this.zoneOf(n)
        available[zone] = (available[zone] ?? 0) + (this.isFree(n) ? 1 : 0)
      }
      return {
        name: mc.name,
        cpu: min('cpus'),
        memoryMiB: min('memory_mb'),
        gpuModel: gpuTrait ? `nvidia-${gpuTrait.slice('CUSTOM_GPU_'.length).toLowerCase()}` : null,
        gpuCount: gpuTrait ? Math.max(1, min('gpu_count')) : 0,
        available,
      }
    })
    return { zones, machineClasses }
  }

  // ------------------------------------------------------------------------------------ allocate

  async ensureMachines(cluster: ClusterRef, machines: MachineSpec[]): Promise<MachineRef[]> {
    const refs: MachineRef[] = []
    // One listing per call serves every machine in it (capacity is still read afresh per call);
    // nodes this call claimed are left out of the later machines' candidates.
    let listed: IronicNode[] | undefined
    for (const spec of machines) {
      try {
        listed ??= await this.listNodes()
        refs.push(await this.ensureMachine(cluster, spec, listed, new Set(refs.map((r) => r.externalId))))
      } catch (error) {
        throw classify(error, `Allocating ${spec.name}`)
      }
    }
    return refs
  }

  private async ensureMachine(
    cluster: ClusterRef,
    spec: MachineSpec,
    listed: IronicNode[],
    claimedInThisCall: Set<string>,
  ): Promise<MachineRef> {
    const { mc, nodes } = this.classNamed(spec.machineClass, listed)
    const adopted = await this.adopt(spec)
    if (adopted) return adopted
    if (!nodes.some((n) => this.zoneOf(n) === spec.zone)) {
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `Machine class '${spec.machineClass}' has no node in zone '${spec.zone}' of bare-metal backend '${this.backend}'.`,
      )
    }
    // Candidates are re-read after a lost race: another worker may have taken the ones we saw.
    for (let attempt = 0; attempt < 3; attempt++) {
      const current =
        attempt === 0
          ? nodes.filter((n) => !claimedInThisCall.has(n.uuid))
          : this.classNamed(spec.machineClass, await this.listNodes()).nodes
      const candidates = current.filter((n) => this.zoneOf(n) === spec.zone && this.isFree(n))
      if (candidates.length === 0) break
      let created: IronicAllocation
      try {
        created = await this.client.request<IronicAllocation>('POST', 'v1/allocations', {
          name: spec.name,
          resource_class: mc.resourceClass,
          traits: mc.traits,
          candidate_nodes: candidates.map((n) => n.uuid),
          // The spec travels with the claim, so deploying (by any worker, after any crash) needs only the name.
          extra: {
            kiln_cluster: cluster.id,
            kiln_cluster_name: cluster.name,
            kiln_role: spec.role,
            kiln_version: spec.kubernetesVersion,
            kiln_labels: spec.labels,
            kiln_taints: spec.taints,
          },
        })
      } catch (error) {
        // 409: an allocation of this name exists: another worker claimed the name first. Adopt it.
        if (error instanceof IronicApiError && error.status === 409) {
          const other = await this.adopt(spec)
          if (other) return other
          continue
        }
        throw error
      }
      const settled = await this.settleAllocation(created.uuid)
      if (settled.state === 'active' && settled.node_uuid) return this.refOf(spec, settled.node_uuid)
      // Every candidate went to someone else between our listing and Ironic's scheduling.
      await this.deleteAllocation(created.uuid)
    }
    throw new DriverError(
      'ERR_CAPACITY',
      `No free '${spec.machineClass}' node in zone '${spec.zone}' of bare-metal backend '${this.backend}'.`,
    )
  }

  /** The machine a name already holds, waiting out an allocation in progress; failed ones are removed. */
  private async adopt(spec: MachineSpec): Promise<MachineRef | undefined> {
    const existing = await this.client.find<IronicAllocation>(`v1/allocations/${spec.name}`)
    if (!existing) return undefined
    const settled = existing.state === 'allocating' ? await this.settleAllocation(existing.uuid) : existing
    if (settled.state === 'active' && settled.node_uuid) return this.refOf(spec, settled.node_uuid)
    await this.deleteAllocation(settled.uuid)
    return undefined
  }

  private refOf(spec: MachineSpec, nodeUuid: string): MachineRef {
    return { name: spec.name, externalId: nodeUuid, zone: spec.zone, machineClass: spec.machineClass }
  }

  private async settleAllocation(uuid: string): Promise<IronicAllocation> {
    const timeoutMs = (this.config.timeouts?.allocationSeconds ?? 120) * 1000
    const settled = await pollUntil(
      async () => {
        const a = await this.client.request<IronicAllocation>('GET', `v1/allocations/${uuid}`)
        return a.state === 'allocating' ? undefined : a
      },
      timeoutMs,
      { min: 50, max: 1000 },
    )
    if (!settled) {
      throw new DriverError(
        'ERR_TRANSIENT',
        `Ironic allocation ${uuid} is still allocating after ${timeoutMs} ms.`,
      )
    }
    return settled
  }

  private async deleteAllocation(uuidOrName: string) {
    try {
      await this.client.request('DELETE', `v1/allocations/${uuidOrName}`)
    } catch (error) {
      if (!(error instanceof IronicApiError && error.status === 404)) throw error
    }
  }

  // -------------------------------------------------------------------------------------- deploy

  async bootstrap(cluster: ClusterRef, controlPlane: MachineRef[]): Promise<ClusterEndpoint> {
    if (controlPlane.length === 0)
      throw new DriverError('ERR_INVALID_REQUEST', 'A control plane needs machines.')
    const endpoint = this.endpointOf(cluster)
    const material = await this.material(cluster)
    // The first machine initialises the cluster unless a control plane already runs (repair,
    // upgrade); the others join it once it is deployed, as kubeadm needs.
    const [first, ...rest] = controlPlane
    if (material.controlPlaneInitialized) {
      await this.deployAll(cluster, controlPlane, 'join-control-plane', material, endpoint)
    } else {
      await this.deployAll(cluster, [first!], 'init', material, endpoint)
      await this.deployAll(cluster, rest, 'join-control-plane', material, endpoint)
    }
    return endpoint
  }

  async joinMachines(cluster: ClusterRef, machines: MachineRef[]): Promise<void> {
    if (machines.length === 0) return
    const material = await this.material(cluster)
    await this.deployAll(cluster, machines, 'join-worker', material, this.endpointOf(cluster))
  }

  private endpointOf(cluster: ClusterRef): ClusterEndpoint {
    const fill = (template: string) =>
      template.replaceAll('{clusterId}', cluster.id).replaceAll('{clusterName}', cluster.name)
    const { server, tlsServerName } = this.config.controlPlaneEndpoint
    return { server: fill(server), ...(tlsServerName ? { tlsServerName: fill(tlsServerName) } : {}) }
  }

  private async material(cluster: ClusterRef) {
    if (!cluster.bootstrapMaterial) {
      throw new DriverError(
        'ERR_INVALID_REQUEST',
        `Bare-metal machines of cluster ${cluster.name} need kubeadm bootstrap material; the caller gave none.`,
      )
    }
    return cluster.bootstrapMaterial()
  }

  /**
   * Deploys every machine (already active ones are left alone) and waits for all. Machines whose
   * node failed are named in one ERR_PROVISION_FAILED after the others finished, so the engine
   * replaces exactly those.
   */
  private async deployAll(
    cluster: ClusterRef,
    machines: MachineRef[],
    role: KubeadmRole,
    material: Awaited<ReturnType<IronicDriver['material']>>,
    endpoint: ClusterEndpoint,
  ) {
    if (machines.length === 0) return
    const outcomes = await mapLimited(machines, 8, async (machine) => {
      try {
        return await this.deployOne(cluster, machine, role, material, endpoint)
      } catch (error) {
        return classify(error, `Deploying ${machine.name}`)
      }
    })
    const failed = machines.flatMap((m, i) => {
      const why = outcomes[i]
      return typeof why === 'string' ? [`${m.name} (node ${m.externalId}: ${why})`] : []
    })
    const errors = outcomes.filter((o): o is DriverError => o instanceof DriverError)
    if (failed.length > 0) {
      throw new DriverError(
        'ERR_PROVISION_FAILED',
        `Ironic could not deploy ${failed.slice(0, 5).join('; ')}${failed.length > 5 ? ` and ${failed.length - 5} more` : ''}.`,
        { failedMachines: machines.filter((_, i) => typeof outcomes[i] === 'string').map((m) => m.name) },
      )
    }
    if (errors.length > 0) throw errors[0]
  }

  /** Resolves undefined once the machine is active; a string says why its node failed. */
  private async deployOne(
    cluster: ClusterRef,
    machine: MachineRef,
    role: KubeadmRole,
    material: Awaited<ReturnType<IronicDriver['material']>>,
    endpoint: ClusterEndpoint,
  ): Promise<string | undefined> {
    const allocation = await this.client.find<IronicAllocation>(`v1/allocations/${machine.name}`)
    if (!allocation || allocation.node_uuid !== machine.externalId) {
      return `its allocation is gone`
    }
    let node = await this.node(machine.externalId)
    if (node.provision_state === 'available' && !node.target_provision_state) {
      const extra = allocation.extra as {
        kiln_version?: string
        kiln_labels?: Record<string, string>
        kiln_taints?: Taint[]
      }
      const kubernetesVersion = extra.kiln_version ?? material.kubernetesVersion
      const image = imageFor(this.config, kubernetesVersion, material.image)
      const endpointUrl = new URL(endpoint.server)
      const controlPlaneEndpoint = `${endpoint.tlsServerName ?? endpointUrl.hostname}:${endpointUrl.port || '443'}`
      const userData = cloudInitUserData({
        role,
        machineName: machine.name,
        clusterName: cluster.name,
        controlPlaneEndpoint,
        certSans: [endpointUrl.hostname, ...(endpoint.tlsServerName ? [endpoint.tlsServerName] : [])],
        labels: {
          ...extra.kiln_labels,
          'topology.kubernetes.io/zone': machine.zone,
          'node.kubernetes.io/instance-type': machine.machineClass,
        },
        taints: extra.kiln_taints ?? [],
        material: { ...material, kubernetesVersion },
      })
      const info = {
        image_source: image.source,
        image_os_hash_algo: image.checksumAlgorithm ?? 'sha256',
        image_os_hash_value: image.checksum,
        image_disk_format: image.diskFormat ?? 'qcow2',
        root_gb: this.config.rootGb ?? 50,
        kiln_cluster: cluster.id,
        kiln_machine: machine.name,
      }
      await this.client.request(
        'PATCH',
        `v1/nodes/${node.uuid}`,
        Object.entries(info).map(([key, value]) => ({ op: 'add', path: `/instance_info/${key}`, value })),
      )
      await this.client.request('PUT', `v1/nodes/${node.uuid}/states/provision`, {
        target: 'active',
        configdrive: {
          meta_data: { hostname: machine.name, name: machine.name, uuid: node.uuid },
          user_data: userData,
        },
      })
    }
    const timeoutMs = (this.config.timeouts?.deploySeconds ?? 3600) * 1000
    const settled = await pollUntil(
      async () => {
        node = await this.node(machine.externalId)
        if (node.provision_state === 'active' && !node.target_provision_state) return node
        if (failedStates.has(node.provision_state)) return node
        return undefined
      },
      timeoutMs,
      this.interval,
    )
    if (!settled) {
      // Still deploying: not a failure of the node; the retried step resumes waiting.
      throw new DriverError(
        'ERR_PROVISION_FAILED',
        `${machine.name} (node ${node.uuid}) is still '${node.provision_state}' after ${timeoutMs / 1000} s.`,
      )
    }
    if (settled.provision_state !== 'active') {
      return `${settled.provision_state}${settled.last_error ? `: ${settled.last_error}` : ''}`
    }
    return undefined
  }

  private node(uuid: string) {
    return this.client.request<IronicNode>('GET', `v1/nodes/${uuid}?fields=${nodeFields}`)
  }

  // ------------------------------------------------------------------------------------- release

  async releaseMachines(_cluster: ClusterRef, names: string[]): Promise<void> {
    await mapLimited(names, 8, async (name) => {
      try {
        await this.releaseOne(name)
      } catch (error) {
        throw classify(error, `Releasing ${name}`)
      }
    })
  }

  private async releaseOne(name: string) {
    const allocation = await this.client.find<IronicAllocation>(`v1/allocations/${name}`)
    if (!allocation) return
    if (!allocation.node_uuid) {
      await this.deleteAllocation(allocation.uuid)
      return
    }
    let node = await this.node(allocation.node_uuid)
    const timeoutMs = (this.config.timeouts?.releaseSeconds ?? 3600) * 1000
    // A node mid-transition is waited out first: Ironic refuses new provision actions until then.
    if (busy(node)) {
      const idle = await pollUntil(
        async () => {
          node = await this.node(node.uuid)
          return busy(node) ? undefined : node
        },
        timeoutMs,
        this.interval,
      )
      if (!idle) throw new DriverError('ERR_TRANSIENT', `Node ${node.uuid} of ${name} is still busy.`)
    }
    if (failedStates.has(node.provision_state) || node.maintenance) {
      // Hardware that failed goes to the platform team, not back into the pool: maintenance keeps
      // Ironic's scheduler away from it until someone looks.
      if (!node.maintenance) {
        await this.client.request('PUT', `v1/nodes/${node.uuid}/maintenance`, {
          reason: `Kiln released ${name} after it failed (${node.provision_state}${node.last_error ? `: ${node.last_error}` : ''}); check the hardware, then unset maintenance.`,
        })
      }
    }
    if (node.provision_state === 'available' || node.provision_state === 'clean failed') {
      // Allocated but never deployed (or its cleaning failed): only the claim goes.
      await this.deleteAllocation(allocation.uuid)
      return
    }
    if (
      node.provision_state === 'active' ||
      node.provision_state === 'deploy failed' ||
      node.provision_state === 'error'
    ) {
      await this.client.request('PUT', `v1/nodes/${node.uuid}/states/provision`, { target: 'deleted' })
    }
    // Undeploy deletes the allocation; cleaning returns the node to `available`.
    const released = await pollUntil(
      async () => {
        node = await this.node(node.uuid)
        if (busy(node)) return undefined
        return node.provision_state === 'available' || failedStates.has(node.provision_state)
          ? node
          : undefined
      },
      timeoutMs,
      this.interval,
    )
    if (!released) {
      throw new DriverError(
        'ERR_TRANSIENT',
        `Node ${node.uuid} of ${name} is still '${node.provision_state}'.`,
      )
    }
    await this.deleteAllocation(allocation.uuid)
  }

  // ------------------------------------------------------------------------------------- observe

  async observe(_cluster: ClusterRef, machineNames: string[]): Promise<ObservedState> {
    let healthyControlPlane = false
    let unreachableReason: string | undefined
    const machines = await mapLimited(machineNames, 8, async (name): Promise<ObservedMachine> => {
      try {
        const allocation = await this.client.find<IronicAllocation>(`v1/allocations/${name}`)
        if (!allocation || allocation.state === 'error' || !allocation.node_uuid)
          return { name, health: 'Missing', reason: 'NotAllocated' }
        const node = await this.client.find<IronicNode>(
          `v1/nodes/${allocation.node_uuid}?fields=${nodeFields}`,
        )
        if (!node) return { name, health: 'Missing', reason: `NodeGone: ${allocation.node_uuid}` }
        const health = this.healthOf(node)
        if (health.health === 'Healthy' && allocation.extra.kiln_role === 'control-plane')
          healthyControlPlane = true
        return { name, ...health }
      } catch (error) {
        // No answer about this machine (unreachable, timeout, 5xx, refused credentials) is no
        // evidence that it is broken: Unknown, never Unhealthy, so nothing is repaired for an outage.
        const reason = classify(error, `Observing ${name}`).message
        unreachableReason ??= reason
        return { name, health: 'Unknown', reason: `Unobservable: ${reason}` }
      }
    })
    return {
      // A control-plane machine Ironic could not tell us about may well be working.
      controlPlaneReachable: healthyControlPlane || unreachableReason !== undefined,
      backendReachable: unreachableReason === undefined,
      ...(unreachableReason === undefined ? {} : { unreachableReason }),
      machines,
    }
  }

  private healthOf(node: IronicNode): Pick<ObservedMachine, 'health' | 'reason' | 'definite'> {
    if (node.maintenance)
      return {
        health: 'Unhealthy',
        reason: `Maintenance${node.maintenance_reason ? `: ${node.maintenance_reason}` : ''}`,
        definite: true,
      }
    if (node.fault) return { health: 'Unhealthy', reason: `HardwareFailure: ${node.fault}`, definite: true }
    switch (node.provision_state) {
      case 'active':
        return node.power_state === 'power off'
          ? { health: 'Unhealthy', reason: 'PoweredOff' }
          : { health: 'Healthy', reason: 'Active' }
      case 'deploy failed':
        return { health: 'Unhealthy', reason: `DeployFailed: ${node.last_error ?? ''}`, definite: true }
      case 'error':
        return { health: 'Unhealthy', reason: `Error: ${node.last_error ?? ''}`, definite: true }
      case 'available':
        return { health: 'Unhealthy', reason: 'NotDeployed' }
      default:
        return { health: 'Unhealthy', reason: `Provisioning: ${node.provision_state}` }
    }
  }

  async close(): Promise<void> {
    this.client.close()
  }
}
