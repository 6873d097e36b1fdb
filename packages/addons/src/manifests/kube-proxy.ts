import type {
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1DaemonSet,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import { stringify } from 'yaml'
import type { AddonInput, AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { tolerateEverything } from '../placement.ts'
import { apiServerEnv } from './api-server.ts'
import { clusterNetwork, kubeSystem } from './cluster-network.ts'

/** kube-proxy runs the cluster's own Kubernetes version. */
export function kubeProxy(input: AddonInput, mode: 'iptables' | 'ipvs'): AddonManifest {
  const version = input.kubernetesVersion.replace(/^v/, '')
  const selector = { 'k8s-app': 'kube-proxy' }
  const config = {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    mode,
    clusterCIDR: clusterNetwork.podCidr,
    metricsBindAddress: '0.0.0.0:10249',
    ...(mode === 'ipvs' ? { ipvs: { scheduler: 'rr', strictARP: true } } : {}),
  }
  return defineAddon('kube-proxy', version, [
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'kube-proxy', namespace: kubeSystem },
    }),
    // system:node-proxier is a bootstrap ClusterRole every API server creates.
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'kiln:node-proxier' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'system:node-proxier' },
      subjects: [{ kind: 'ServiceAccount', name: 'kube-proxy', namespace: kubeSystem }],
    }),
    kube<V1ConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'kube-proxy', namespace: kubeSystem },
      data: { 'config.conf': stringify(config) },
    }),
    kube<V1DaemonSet>({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'kube-proxy', namespace: kubeSystem },
      spec: {
        selector: { matchLabels: selector },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            priorityClassName: 'system-node-critical',
            serviceAccountName: 'kube-proxy',
            hostNetwork: true,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: tolerateEverything,
            containers: [
              {
                name: 'kube-proxy',
                image: `registry.k8s.io/kube-proxy:v${version}`,
                imagePullPolicy: 'IfNotPresent',
                command: [
                  '/usr/local/bin/kube-proxy',
                  '--config=/var/lib/kube-proxy/config.conf',
                  '--hostname-override=$(NODE_NAME)',
                ],
                env: [
                  { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                  ...apiServerEnv(input),
                ],
                securityContext: { privileged: true },
                volumeMounts: [
                  { name: 'kube-proxy', mountPath: '/var/lib/kube-proxy' },
                  { name: 'xtables-lock', mountPath: '/run/xtables.lock' },
                  { name: 'lib-modules', mountPath: '/lib/modules', readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: 'kube-proxy', configMap: { name: 'kube-proxy' } },
              { name: 'xtables-lock', hostPath: { path: '/run/xtables.lock', type: 'FileOrCreate' } },
              { name: 'lib-modules', hostPath: { path: '/lib/modules' } },
            ],
          },
        },
      },
    }),
  ])
}
