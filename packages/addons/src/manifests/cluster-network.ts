/**
 * The cluster's address plan, as kubeadm lays it out by default (Kiln does not offer it as a setting
 * yet): the CNI, kube-proxy and CoreDNS must agree on it with the kubelets and the control plane.
 */
export const clusterNetwork = {
  podCidr: '10.244.0.0/16',
  /** Per-node pod subnet size. */
  nodeMaskSize: 24,
  serviceCidr: '10.96.0.0/12',
  /** The tenth address of the service range: kubelets' `clusterDNS`. */
  dnsServiceIp: '10.96.0.10',
  domain: 'cluster.local',
} as const

export const kubeSystem = 'kube-system'
