import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1DaemonSet,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { tolerateEverything } from '../placement.ts'
import { clusterNetwork, kubeSystem } from './cluster-network.ts'

export const calicoVersion = '3.29.1'

const cniNetworkConfig = JSON.stringify(
  {
    name: 'k8s-pod-network',
    cniVersion: '0.3.1',
    plugins: [
      {
        type: 'calico',
        log_level: 'info',
        datastore_type: 'kubernetes',
        nodename: '__KUBERNETES_NODE_NAME__',
        mtu: '__CNI_MTU__',
        ipam: { type: 'calico-ipam' },
        policy: { type: 'k8s' },
        kubernetes: { kubeconfig: '__KUBECONFIG_FILEPATH__' },
      },
      { type: 'portmap', snat: true, capabilities: { portMappings: true } },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
    ],
  },
  null,
  2,
)

/**
 * Calico's node agent with the Kubernetes datastore (calico.yaml, compacted). Calico's own CRDs
 * (crd.projectcalico.org, some twenty of them) and calico-kube-controllers are left out: they would
 * come with a CustomResourceDefinition entry in addonKinds, applied before everything else.
 */
export function calico(): AddonManifest {
  const selector = { 'k8s-app': 'calico-node' }
  const image = (name: string) => `docker.io/calico/${name}:v${calicoVersion}`
  const fromConfig = (key: string) => ({ configMapKeyRef: { name: 'calico-config', key } })
  return defineAddon('calico', calicoVersion, [
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'calico-node', namespace: kubeSystem },
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'calico-node' },
      rules: [
        { apiGroups: [''], resources: ['pods', 'nodes', 'namespaces'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['endpoints', 'services'], verbs: ['watch', 'list', 'get'] },
        { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch', 'update'] },
        { apiGroups: [''], resources: ['serviceaccounts/token'], verbs: ['create'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['watch', 'list'] },
        { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['watch', 'list'] },
        {
          apiGroups: ['crd.projectcalico.org'],
          resources: ['*'],
          verbs: ['get', 'list', 'watch', 'create', 'update'],
        },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'calico-node' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'calico-node' },
      subjects: [{ kind: 'ServiceAccount', name: 'calico-node', namespace: kubeSystem }],
    }),
    kube<V1ConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'calico-config', namespace: kubeSystem },
      data: { calico_backend: 'bird', veth_mtu: '0', cni_network_config: cniNetworkConfig },
    }),
    kube<V1DaemonSet>({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'calico-node', namespace: kubeSystem },
      spec: {
        selector: { matchLabels: selector },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            priorityClassName: 'system-node-critical',
            serviceAccountName: 'calico-node',
            hostNetwork: true,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: tolerateEverything,
            terminationGracePeriodSeconds: 0,
            initContainers: [
              {
                name: 'install-cni',
                image: image('cni'),
                command: ['/opt/cni/bin/install'],
                env: [
                  { name: 'CNI_CONF_NAME', value: '10-calico.conflist' },
                  { name: 'CNI_NETWORK_CONFIG', valueFrom: fromConfig('cni_network_config') },
                  { name: 'KUBERNETES_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                  { name: 'CNI_MTU', valueFrom: fromConfig('veth_mtu') },
                  { name: 'SLEEP', value: 'false' },
                ],
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: 'cni-bin-dir', mountPath: '/host/opt/cni/bin' },
                  { name: 'cni-net-dir', mountPath: '/host/etc/cni/net.d' },
                ],
              },
            ],
            containers: [
              {
                name: 'calico-node',
                image: image('node'),
                env: [
                  { name: 'DATASTORE_TYPE', value: 'kubernetes' },
                  { name: 'WAIT_FOR_DATASTORE', value: 'true' },
                  { name: 'NODENAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                  { name: 'CALICO_NETWORKING_BACKEND', valueFrom: fromConfig('calico_backend') },
                  { name: 'CLUSTER_TYPE', value: 'k8s,bgp' },
                  { name: 'IP', value: 'autodetect' },
                  { name: 'CALICO_IPV4POOL_IPIP', value: 'Always' },
                  { name: 'CALICO_IPV4POOL_CIDR', value: clusterNetwork.podCidr },
                  { name: 'CALICO_IPV4POOL_BLOCK_SIZE', value: '26' },
                  { name: 'FELIX_IPINIPMTU', valueFrom: fromConfig('veth_mtu') },
                  { name: 'CALICO_DISABLE_FILE_LOGGING', value: 'true' },
                  { name: 'FELIX_DEFAULTENDPOINTTOHOSTACTION', value: 'ACCEPT' },
                  { name: 'FELIX_IPV6SUPPORT', value: 'false' },
                  { name: 'FELIX_HEALTHENABLED', value: 'true' },
                ],
                securityContext: { privileged: true },
                resources: { requests: { cpu: '250m' } },
                livenessProbe: {
                  exec: { command: ['/bin/calico-node', '-felix-live', '-bird-live'] },
                  periodSeconds: 10,
                  initialDelaySeconds: 10,
                  failureThreshold: 6,
                  timeoutSeconds: 10,
                },
                readinessProbe: {
                  exec: { command: ['/bin/calico-node', '-felix-ready', '-bird-ready'] },
                  periodSeconds: 10,
                  timeoutSeconds: 10,
                },
                volumeMounts: [
                  { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
                  { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
                  { name: 'var-run-calico', mountPath: '/var/run/calico' },
                  { name: 'var-lib-calico', mountPath: '/var/lib/calico' },
                ],
              },
            ],
            volumes: [
              { name: 'lib-modules', hostPath: { path: '/lib/modules' } },
              { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
              { name: 'var-run-calico', hostPath: { path: '/var/run/calico', type: 'DirectoryOrCreate' } },
              { name: 'var-lib-calico', hostPath: { path: '/var/lib/calico', type: 'DirectoryOrCreate' } },
              { name: 'cni-bin-dir', hostPath: { path: '/opt/cni/bin', type: 'DirectoryOrCreate' } },
              { name: 'cni-net-dir', hostPath: { path: '/etc/cni/net.d' } },
            ],
          },
        },
      },
    }),
  ])
}
