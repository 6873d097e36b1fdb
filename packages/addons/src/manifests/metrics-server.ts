import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Deployment,
  V1RoleBinding,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { kubeSystem } from './cluster-network.ts'

export const metricsServerVersion = '0.7.2'

/**
 * metrics-server (upstream components.yaml, compacted) WITHOUT its APIService
 * `v1beta1.metrics.k8s.io`: the simulated API servers do not aggregate APIs, and an APIService whose
 * backend is unreachable makes discovery fail for every client. On a real API server it would be added
 * here (and `apiregistration.k8s.io/v1 APIService` to addonKinds).
 */
export function metricsServer(): AddonManifest {
  const selector = { 'k8s-app': 'metrics-server' }
  const name = 'metrics-server'
  const rbac = 'rbac.authorization.k8s.io'
  return defineAddon('metrics-server', metricsServerVersion, [
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name, namespace: kubeSystem },
    }),
    kube<V1ClusterRole>({
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRole',
      metadata: {
        name: 'system:aggregated-metrics-reader',
        labels: {
          'rbac.authorization.k8s.io/aggregate-to-admin': 'true',
          'rbac.authorization.k8s.io/aggregate-to-edit': 'true',
          'rbac.authorization.k8s.io/aggregate-to-view': 'true',
        },
      },
      rules: [
        { apiGroups: ['metrics.k8s.io'], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] },
      ],
    }),
    kube<V1ClusterRole>({
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRole',
      metadata: { name: 'system:metrics-server' },
      rules: [
        { apiGroups: [''], resources: ['nodes/metrics'], verbs: ['get'] },
        { apiGroups: [''], resources: ['pods', 'nodes'], verbs: ['get', 'list', 'watch'] },
      ],
    }),
    kube<V1RoleBinding>({
      apiVersion: `${rbac}/v1`,
      kind: 'RoleBinding',
      metadata: { name: 'metrics-server-auth-reader', namespace: kubeSystem },
      roleRef: { apiGroup: rbac, kind: 'Role', name: 'extension-apiserver-authentication-reader' },
      subjects: [{ kind: 'ServiceAccount', name, namespace: kubeSystem }],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRoleBinding',
      metadata: { name: 'metrics-server:system:auth-delegator' },
      roleRef: { apiGroup: rbac, kind: 'ClusterRole', name: 'system:auth-delegator' },
      subjects: [{ kind: 'ServiceAccount', name, namespace: kubeSystem }],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: `${rbac}/v1`,
      kind: 'ClusterRoleBinding',
      metadata: { name: 'system:metrics-server' },
      roleRef: { apiGroup: rbac, kind: 'ClusterRole', name: 'system:metrics-server' },
      subjects: [{ kind: 'ServiceAccount', name, namespace: kubeSystem }],
    }),
    kube<V1Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name, namespace: kubeSystem },
      spec: {
        selector,
        ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 'https', appProtocol: 'https' }],
      },
    }),
    kube<V1Deployment>({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: kubeSystem },
      spec: {
        replicas: 1,
        selector: { matchLabels: selector },
        strategy: { rollingUpdate: { maxUnavailable: 0 } },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            priorityClassName: 'system-cluster-critical',
            serviceAccountName: name,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            containers: [
              {
                name,
                image: `registry.k8s.io/metrics-server/metrics-server:v${metricsServerVersion}`,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '--cert-dir=/tmp',
                  '--secure-port=10250',
                  '--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname',
                  '--kubelet-use-node-status-port',
                  '--metric-resolution=15s',
                ],
                ports: [{ name: 'https', containerPort: 10250, protocol: 'TCP' }],
                livenessProbe: {
                  httpGet: { path: '/livez', port: 'https', scheme: 'HTTPS' },
                  periodSeconds: 10,
                  failureThreshold: 3,
                },
                readinessProbe: {
                  httpGet: { path: '/readyz', port: 'https', scheme: 'HTTPS' },
                  initialDelaySeconds: 20,
                  periodSeconds: 10,
                  failureThreshold: 3,
                },
                resources: { requests: { cpu: '100m', memory: '200Mi' } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                  runAsNonRoot: true,
                  runAsUser: 1000,
                  seccompProfile: { type: 'RuntimeDefault' },
                },
                volumeMounts: [{ name: 'tmp-dir', mountPath: '/tmp' }],
              },
            ],
            volumes: [{ name: 'tmp-dir', emptyDir: {} }],
          },
        },
      },
    }),
  ])
}
