import { createHash, X509Certificate } from 'node:crypto'
import type { Taint } from '@kiln/domain'
import { stringify } from 'yaml'
import type { BootstrapMaterial } from '../contract.ts'

/** How a machine takes part in kubeadm: the first control plane initialises, every other one joins. */
export type KubeadmRole = 'init' | 'join-control-plane' | 'join-worker'

export interface NodeBootstrap {
  role: KubeadmRole
  machineName: string
  clusterName: string
  /** host:port every node reaches the API server at (kubeadm's controlPlaneEndpoint). */
  controlPlaneEndpoint: string
  /** Extra names the API server's serving certificate must carry. */
  certSans: string[]
  labels: Record<string, string>
  taints: Taint[]
  material: BootstrapMaterial
}

/** kubeadm's discovery pin: sha256 of the CA certificate's SubjectPublicKeyInfo, one per trusted CA. */
export function caCertHashes(caBundlePem: string): string[] {
  const pems = caBundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  return pems.map((pem) => {
    const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' })
    return `sha256:${createHash('sha256').update(spki).digest('hex')}`
  })
}

// The NodeRestriction admission plugin refuses labels a kubelet sets on itself under kubernetes.io and
// k8s.io, except these; the others (node-role.kubernetes.io/*) are set by kubeadm or through the API.
const kubeletSettableLabel = (key: string) => {
  const prefix = key.includes('/') ? key.slice(0, key.indexOf('/')) : ''
  const restricted =
    prefix === 'kubernetes.io' ||
    prefix.endsWith('.kubernetes.io') ||
    prefix === 'k8s.io' ||
    prefix.endsWith('.k8s.io')
  if (!restricted) return true
  return (
    [
      'kubernetes.io/hostname',
      'kubernetes.io/arch',
      'kubernetes.io/os',
      'node.kubernetes.io/instance-type',
      'topology.kubernetes.io/region',
      'topology.kubernetes.io/zone',
    ].includes(key) ||
    prefix === 'kubelet.kubernetes.io' ||
    prefix === 'node.kubernetes.io'
  )
}

/** kubeadm.k8s.io/v1beta4 from Kubernetes 1.31 (its kubeletExtraArgs is a list), v1beta3 before. */
function kubeadmApi(version: string) {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number)
  const v1beta4 = (major ?? 1) > 1 || (minor ?? 0) >= 31
  return {
    apiVersion: v1beta4 ? 'kubeadm.k8s.io/v1beta4' : 'kubeadm.k8s.io/v1beta3',
    extraArgs: (args: Record<string, string>) =>
      v1beta4 ? Object.entries(args).map(([name, value]) => ({ name, value })) : args,
  }
}

/** The kubeadm configuration documents for one machine (YAML, `---` separated). */
export function kubeadmConfig(node: NodeBootstrap): string {
  const { material } = node
  const api = kubeadmApi(material.kubernetesVersion)
  const labels = Object.entries(node.labels)
    .filter(([key]) => kubeletSettableLabel(key))
    .map(([key, value]) => `${key}=${value}`)
    .join(',')
  const nodeRegistration = {
    name: node.machineName,
    kubeletExtraArgs: api.extraArgs(labels ? { 'node-labels': labels } : {}),
    taints: node.taints.map((t) => ({
      key: t.key,
      ...(t.value ? { value: t.value } : {}),
      effect: t.effect,
    })),
  }
  const docs: object[] = []
  if (node.role === 'init') {
    docs.push({
      apiVersion: api.apiVersion,
      kind: 'InitConfiguration',
      bootstrapTokens: [
        {
          token: material.joinToken,
          ttl: '24h0m0s',
          usages: ['signing', 'authentication'],
          groups: ['system:bootstrappers:kubeadm:default-node-token'],
        },
      ],
      nodeRegistration,
    })
    docs.push({
      apiVersion: api.apiVersion,
      kind: 'ClusterConfiguration',
      clusterName: node.clusterName,
      kubernetesVersion: `v${material.kubernetesVersion.replace(/^v/, '')}`,
      controlPlaneEndpoint: node.controlPlaneEndpoint,
      apiServer: { certSANs: node.certSans },
      networking: { podSubnet: material.podSubnet, serviceSubnet: material.serviceSubnet },
    })
  } else {
    docs.push({
      apiVersion: api.apiVersion,
      kind: 'JoinConfiguration',
      discovery: {
        bootstrapToken: {
          apiServerEndpoint: node.controlPlaneEndpoint,
          token: material.joinToken,
          caCertHashes: caCertHashes(material.clusterCaBundlePem),
        },
      },
      nodeRegistration,
      ...(node.role === 'join-control-plane' ? { controlPlane: {} } : {}),
    })
  }
  return docs.map((doc) => stringify(doc)).join('---\n')
}

const file = (path: string, content: string, permissions = '0644') => ({
  path,
  owner: 'root:root',
  permissions,
  content,
})

/**
 * The config drive's user-data: cloud-init writes the kubeadm configuration (and, on control-plane
 * machines, the cluster's authorities, as Cluster API's kubeadm bootstrap provider does) and runs
 * kubeadm. Workers get no private key: they find the API server by the token and pin its CA by hash.
 */
export function cloudInitUserData(node: NodeBootstrap): string {
  const { material } = node
  const controlPlane = node.role !== 'join-worker'
  const files = [
    ...(controlPlane
      ? [
          file('/etc/kubernetes/pki/ca.crt', material.clusterCa.certPem),
          file('/etc/kubernetes/pki/ca.key', material.clusterCa.keyPem, '0600'),
          file('/etc/kubernetes/pki/etcd/ca.crt', material.etcdCa.certPem),
          file('/etc/kubernetes/pki/etcd/ca.key', material.etcdCa.keyPem, '0600'),
          file('/etc/kubernetes/pki/front-proxy-ca.crt', material.frontProxyCa.certPem),
          file('/etc/kubernetes/pki/front-proxy-ca.key', material.frontProxyCa.keyPem, '0600'),
          file('/etc/kubernetes/pki/sa.pub', material.serviceAccount.publicKeyPem),
          file('/etc/kubernetes/pki/sa.key', material.serviceAccount.privateKeyPem, '0600'),
        ]
      : []),
    file('/run/kubeadm/kubeadm.yaml', kubeadmConfig(node), '0600'),
  ]
  const command = node.role === 'init' ? 'init' : 'join'
  const config = {
    hostname: node.machineName,
    fqdn: node.machineName,
    write_files: files,
    runcmd: [['kubeadm', command, '--config', '/run/kubeadm/kubeadm.yaml']],
  }
  return `#cloud-config\n${stringify(config)}`
}
