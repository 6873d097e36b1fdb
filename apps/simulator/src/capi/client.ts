import { withSharedAgent } from '@kiln/addons'
import { ApiException, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node'

/** The Cluster API kinds the stand-in reads or writes, each at the version it speaks. */
export const kinds = {
  Cluster: { group: 'cluster.x-k8s.io', version: 'v1beta2', plural: 'clusters' },
  ClusterClass: { group: 'cluster.x-k8s.io', version: 'v1beta2', plural: 'clusterclasses' },
  MachineDeployment: { group: 'cluster.x-k8s.io', version: 'v1beta2', plural: 'machinedeployments' },
  Machine: { group: 'cluster.x-k8s.io', version: 'v1beta2', plural: 'machines' },
  MachineHealthCheck: { group: 'cluster.x-k8s.io', version: 'v1beta2', plural: 'machinehealthchecks' },
  KubeadmControlPlane: {
    group: 'controlplane.cluster.x-k8s.io',
    version: 'v1beta2',
    plural: 'kubeadmcontrolplanes',
  },
  KubeadmControlPlaneTemplate: {
    group: 'controlplane.cluster.x-k8s.io',
    version: 'v1beta2',
    plural: 'kubeadmcontrolplanetemplates',
  },
  KubeadmConfig: { group: 'bootstrap.cluster.x-k8s.io', version: 'v1beta2', plural: 'kubeadmconfigs' },
  KubeadmConfigTemplate: {
    group: 'bootstrap.cluster.x-k8s.io',
    version: 'v1beta2',
    plural: 'kubeadmconfigtemplates',
  },
  OpenStackCluster: {
    group: 'infrastructure.cluster.x-k8s.io',
    version: 'v1beta1',
    plural: 'openstackclusters',
  },
  OpenStackClusterTemplate: {
    group: 'infrastructure.cluster.x-k8s.io',
    version: 'v1beta1',
    plural: 'openstackclustertemplates',
  },
  OpenStackMachine: {
    group: 'infrastructure.cluster.x-k8s.io',
    version: 'v1beta1',
    plural: 'openstackmachines',
  },
  OpenStackMachineTemplate: {
    group: 'infrastructure.cluster.x-k8s.io',
    version: 'v1beta1',
    plural: 'openstackmachinetemplates',
  },
} as const

export type Kind = keyof typeof kinds

export const apiVersionOf = (kind: Kind) => `${kinds[kind].group}/${kinds[kind].version}`

/** The kind a template reference names, when the stand-in plays its controller. */
export function kindOf(apiVersion: string | undefined, kind: string | undefined): Kind | undefined {
  if (!kind || !(kind in kinds)) return undefined
  const known = kinds[kind as Kind]
  return apiVersion === undefined || apiVersion.split('/')[0] === known.group ? (kind as Kind) : undefined
}

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
  blockOwnerDeletion?: boolean
}

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  generation?: number
  creationTimestamp?: string
  deletionTimestamp?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  finalizers?: string[]
  ownerReferences?: OwnerReference[]
}

export type Json = Record<string, unknown>

export interface KubeObject<Spec = Json, Status = Json> {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  spec?: Spec
  status?: Status
}

/** A kubeconfig path or object; client certificates become one shared agent (see @kiln/addons). */
export function loadKubeConfig(source: KubeConfig | string): KubeConfig {
  const config = typeof source === 'string' ? fromFile(source) : source
  if (!config.getCurrentCluster() || !config.getCurrentUser())
    throw new Error('the kubeconfig has no current context')
  return withSharedAgent(config)
}

function fromFile(path: string): KubeConfig {
  const config = new KubeConfig()
  config.loadFromFile(path)
  return config
}

export const isStatus = (error: unknown, ...codes: number[]) =>
  error instanceof ApiException && codes.includes(error.code)

/**
 * The management cluster as the stand-in's controllers see it: custom objects by kind, written with
 * the stand-in's field manager; every update carries the resourceVersion it was computed from.
 */
export class ManagementClient {
  private readonly api: CustomObjectsApi

  constructor(
    kubeConfig: KubeConfig,
    private readonly fieldManager: string,
  ) {
    this.api = kubeConfig.makeApiClient(CustomObjectsApi)
  }

  /** Every object of a kind, in the given namespaces (all when undefined), and the list's resourceVersion. */
  async list<O extends KubeObject<unknown, unknown> = KubeObject>(
    kind: Kind,
    namespaces: string[] | undefined,
  ): Promise<{ items: O[]; resourceVersion: string }> {
    const { group, version, plural } = kinds[kind]
    const pages = namespaces
      ? await Promise.all(
          namespaces.map((namespace) =>
            this.api.listNamespacedCustomObject({ group, version, plural, namespace }),
          ),
        )
      : [await this.api.listClusterCustomObject({ group, version, plural })]
    const items = pages.flatMap((page) => (page as { items: O[] }).items)
    for (const item of items) item.kind ??= kind
    const versions = pages.map((page) =>
      String((page as { metadata?: Json }).metadata?.resourceVersion ?? ''),
    )
    return { items, resourceVersion: versions.join(',') }
  }

  async get<S = Json, T = Json>(kind: Kind, namespace: string, name: string) {
    const { group, version, plural } = kinds[kind]
    try {
      return (await this.api.getNamespacedCustomObject({
        group,
        version,
        plural,
        namespace,
        name,
      })) as KubeObject<S, T>
    } catch (error) {
      if (isStatus(error, 404)) return undefined
      throw error
    }
  }

  async create<S, T>(kind: Kind, object: KubeObject<S, T>): Promise<KubeObject<S, T>> {
    const { group, version, plural } = kinds[kind]
    return (await this.api.createNamespacedCustomObject({
      group,
      version,
      plural,
      namespace: object.metadata.namespace!,
      body: object,
      fieldManager: this.fieldManager,
    })) as KubeObject<S, T>
  }

  /**
   * Re-reads the object, lets `change` edit it (spec and metadata, or status), and writes it back
   * with the resourceVersion read; a 409 (someone wrote meanwhile) starts over, up to five times.
   * `change` returns false when there is nothing to write. Resolves to undefined once it is gone.
   */
  async update<S, T>(
    kind: Kind,
    object: KubeObject<S, T>,
    change: (live: KubeObject<S, T>) => boolean,
    subresource?: 'status',
  ): Promise<KubeObject<S, T> | undefined> {
    const { group, version, plural } = kinds[kind]
    const namespace = object.metadata.namespace!
    const name = object.metadata.name
    let live: KubeObject<S, T> | undefined = structuredClone(object)
    for (let attempt = 0; ; attempt++) {
      if (!live) return undefined
      if (!change(live)) return live
      const request = { group, version, plural, namespace, name, body: live, fieldManager: this.fieldManager }
      try {
        return (await (subresource === 'status'
          ? this.api.replaceNamespacedCustomObjectStatus(request)
          : this.api.replaceNamespacedCustomObject(request))) as KubeObject<S, T>
      } catch (error) {
        if (isStatus(error, 404)) return undefined
        if (!isStatus(error, 409) || attempt >= 4) throw error
        live = await this.get<S, T>(kind, namespace, name)
      }
    }
  }

  /** Deletes an object (gracefully where it has finalizers); one already gone is fine. */
  async delete(kind: Kind, object: KubeObject<unknown, unknown>): Promise<void> {
    const { group, version, plural } = kinds[kind]
    try {
      await this.api.deleteNamespacedCustomObject({
        group,
        version,
        plural,
        namespace: object.metadata.namespace!,
        name: object.metadata.name,
        body: { preconditions: { uid: object.metadata.uid } },
      })
    } catch (error) {
      if (!isStatus(error, 404, 409)) throw error
    }
  }
}
