import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1DaemonSet,
  V1Deployment,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import type { AddonInput, AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { tolerateEverything } from '../placement.ts'
import { apiServerEnv } from './api-server.ts'
import { clusterNetwork, kubeSystem } from './cluster-network.ts'

export const ciliumVersion = '1.16.5'

/**
 * Cilium's agent and operator (the Helm chart's output, compacted), VXLAN tunnelling with
 * cluster-pool IPAM. With kubeProxyMode `none` Cilium replaces kube-proxy. The operator registers
 * Cilium's CRDs itself, so none are shipped here.
 */
export function cilium(input: AddonInput): AddonManifest {
  const replaceKubeProxy = input.features.kubeProxyMode.mode === 'none'
  const agentSelector = { 'k8s-app': 'cilium' }
  const operatorSelector = { 'io.cilium/app': 'operator', name: 'cilium-operator' }
  const nodeName = { name: 'K8S_NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }
  const namespaceEnv = {
    name: 'CILIUM_K8S_NAMESPACE',
    valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
  }
  return defineAddon('cilium', ciliumVersion, [
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'cilium', namespace: kubeSystem },
    }),
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'cilium-operator', namespace: kubeSystem },
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'cilium' },
      rules: [
        { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        {
          apiGroups: [''],
          resources: ['namespaces', 'services', 'pods', 'endpoints', 'nodes'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['apiextensions.k8s.io'],
          resources: ['customresourcedefinitions'],
          verbs: ['list', 'watch', 'get'],
        },
        { apiGroups: ['cilium.io'], resources: ['*'], verbs: ['*'] },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'cilium' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cilium' },
      subjects: [{ kind: 'ServiceAccount', name: 'cilium', namespace: kubeSystem }],
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'cilium-operator' },
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'delete'] },
        {
          apiGroups: [''],
          resources: ['nodes', 'namespaces', 'services', 'endpoints'],
          verbs: ['get', 'list', 'watch'],
        },
        { apiGroups: [''], resources: ['nodes', 'nodes/status'], verbs: ['patch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        {
          apiGroups: ['apiextensions.k8s.io'],
          resources: ['customresourcedefinitions'],
          verbs: ['create', 'get', 'list', 'watch', 'update'],
        },
        { apiGroups: ['cilium.io'], resources: ['*'], verbs: ['*'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create', 'get', 'update'] },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'cilium-operator' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cilium-operator' },
      subjects: [{ kind: 'ServiceAccount', name: 'cilium-operator', namespace: kubeSystem }],
    }),
    kube<V1ConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'cilium-config', namespace: kubeSystem },
      data: {
        'cluster-name': input.clusterName,
        'cluster-id': '0',
        'identity-allocation-mode': 'crd',
        ipam: 'cluster-pool',
        'cluster-pool-ipv4-cidr': clusterNetwork.podCidr,
        'cluster-pool-ipv4-mask-size': String(clusterNetwork.nodeMaskSize),
        'enable-ipv4': 'true',
        'enable-ipv6': 'false',
        'routing-mode': 'tunnel',
        'tunnel-protocol': 'vxlan',
        'kube-proxy-replacement': replaceKubeProxy ? 'true' : 'false',
        'enable-health-checking': 'true',
        'enable-policy': 'default',
        'cni-exclusive': 'true',
      },
    }),
    kube<V1DaemonSet>({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'cilium', namespace: kubeSystem },
      spec: {
        selector: { matchLabels: agentSelector },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 2 } },
        template: {
          metadata: { labels: { ...agentSelector } },
          spec: {
            priorityClassName: 'system-node-critical',
            serviceAccountName: 'cilium',
            hostNetwork: true,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: tolerateEverything,
            terminationGracePeriodSeconds: 1,
            initContainers: [
              {
                name: 'mount-bpf-fs',
                image: `quay.io/cilium/cilium:v${ciliumVersion}`,
                command: ['/bin/bash', '-c', '--'],
                args: ['mount | grep "/sys/fs/bpf type bpf" || mount -t bpf bpf /sys/fs/bpf'],
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: 'bpf-maps', mountPath: '/sys/fs/bpf', mountPropagation: 'Bidirectional' },
                ],
              },
              {
                name: 'install-cni-binaries',
                image: `quay.io/cilium/cilium:v${ciliumVersion}`,
                command: ['/install-plugin.sh'],
                securityContext: { capabilities: { drop: ['ALL'] } },
                volumeMounts: [{ name: 'cni-path', mountPath: '/host/opt/cni/bin' }],
              },
            ],
            containers: [
              {
                name: 'cilium-agent',
                image: `quay.io/cilium/cilium:v${ciliumVersion}`,
                command: ['cilium-agent'],
                args: ['--config-dir=/tmp/cilium/config-map'],
                env: [nodeName, namespaceEnv, ...apiServerEnv(input)],
                securityContext: { privileged: true },
                livenessProbe: {
                  httpGet: {
                    host: '127.0.0.1',
                    path: '/healthz',
                    port: 9879,
                    scheme: 'HTTP',
                    httpHeaders: [{ name: 'brief', value: 'true' }],
                  },
                  periodSeconds: 30,
                  failureThreshold: 10,
                  timeoutSeconds: 5,
                },
                readinessProbe: {
                  httpGet: {
                    host: '127.0.0.1',
                    path: '/healthz',
                    port: 9879,
                    scheme: 'HTTP',
                    httpHeaders: [{ name: 'brief', value: 'true' }],
                  },
                  periodSeconds: 30,
                  failureThreshold: 3,
                  timeoutSeconds: 5,
                },
                volumeMounts: [
                  { name: 'cilium-config-path', mountPath: '/tmp/cilium/config-map', readOnly: true },
                  { name: 'bpf-maps', mountPath: '/sys/fs/bpf', mountPropagation: 'HostToContainer' },
                  { name: 'cilium-run', mountPath: '/var/run/cilium' },
                  { name: 'etc-cni-netd', mountPath: '/host/etc/cni/net.d' },
                  { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
                  { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
                ],
              },
            ],
            volumes: [
              { name: 'cilium-config-path', configMap: { name: 'cilium-config' } },
              { name: 'bpf-maps', hostPath: { path: '/sys/fs/bpf', type: 'DirectoryOrCreate' } },
              { name: 'cilium-run', hostPath: { path: '/var/run/cilium', type: 'DirectoryOrCreate' } },
              { name: 'cni-path', hostPath: { path: '/opt/cni/bin', type: 'DirectoryOrCreate' } },
              { name: 'etc-cni-netd', hostPath: { path: '/etc/cni/net.d', type: 'DirectoryOrCreate' } },
              { name: 'lib-modules', hostPath: { path: '/lib/modules' } },
              { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
            ],
          },
        },
      },
    }),
    kube<V1Deployment>({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'cilium-operator', namespace: kubeSystem },
      spec: {
        replicas: 1,
        selector: { matchLabels: operatorSelector },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...operatorSelector } },
          spec: {
            priorityClassName: 'system-cluster-critical',
            serviceAccountName: 'cilium-operator',
            // Host network: the operator must run before there is a pod network.
            hostNetwork: true,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: tolerateEverything,
            containers: [
              {
                name: 'cilium-operator',
                image: `quay.io/cilium/operator-generic:v${ciliumVersion}`,
                command: ['cilium-operator-generic'],
                args: ['--config-dir=/tmp/cilium/config-map'],
                env: [nodeName, namespaceEnv, ...apiServerEnv(input)],
                livenessProbe: {
                  httpGet: { host: '127.0.0.1', path: '/healthz', port: 9234, scheme: 'HTTP' },
                  initialDelaySeconds: 60,
                  periodSeconds: 10,
                  timeoutSeconds: 3,
                },
                volumeMounts: [
                  { name: 'cilium-config-path', mountPath: '/tmp/cilium/config-map', readOnly: true },
                ],
              },
            ],
            volumes: [{ name: 'cilium-config-path', configMap: { name: 'cilium-config' } }],
          },
        },
      },
    }),
  ])
}
