import type { FeatureValues, NodeGroupRole, Taint } from '@kiln/domain'

/** One node group as the add-on planner sees it: taken from a resolved cluster's node groups. */
export interface AddonNodeGroup {
  name: string
  role: NodeGroupRole
  count: number
  /** GPUs per machine of the group's machine class. */
  gpuCount: number
  /** The group's effective `gpu.enabled`. */
  gpuEnabled: boolean
  /** The group's taints; add-ons placed on the group tolerate them. */
  taints?: readonly Taint[]
}

export interface AddonInput {
  clusterName: string
  /** e.g. `1.31.4`; kube-proxy runs this version. */
  kubernetesVersion: string
  /** The cluster's effective feature values. */
  features: FeatureValues
  nodeGroups: readonly AddonNodeGroup[]
  /**
   * Where nodes reach the control plane. kube-proxy and Cilium (which implement the `kubernetes`
   * Service) are pointed at it when given; otherwise they use the in-cluster defaults.
   */
  apiServer?: { host: string; port: number }
}

/** A Kubernetes object as Kiln applies it: plain JSON, named, labelled. */
export type KubeObject = {
  apiVersion: string
  kind: string
  metadata: {
    name: string
    namespace?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
  }
  [field: string]: unknown
}

export interface AddonManifest {
  /** e.g. `nvidia-device-plugin`. */
  name: AddonName
  /** The upstream version pinned, e.g. `0.17.0`. */
  version: string
  objects: KubeObject[]
}

export type AddonName =
  | 'coredns'
  | 'calico'
  | 'cilium'
  | 'flannel'
  | 'kube-proxy'
  | 'nvidia-device-plugin'
  | 'traefik'
  | 'ingress-nginx'
  | 'prometheus'
  | 'node-exporter'
  | 'metrics-server'

/** Labels every add-on object carries; pruning selects on the first two. */
export const AddonLabel = {
  managedBy: 'app.kubernetes.io/managed-by',
  addon: 'kiln.dev/addon',
  version: 'kiln.dev/addon-version',
} as const

export const managedByKiln = 'kiln'

/** The label selector that finds every object Kiln applied as an add-on. */
export const addonSelector = `${AddonLabel.managedBy}=${managedByKiln},${AddonLabel.addon}`
