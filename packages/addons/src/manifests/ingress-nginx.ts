import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Deployment,
  V1IngressClass,
  V1Namespace,
  V1Role,
  V1RoleBinding,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { type Placement, spreadOverNodes } from '../placement.ts'

export const ingressNginxVersion = '1.12.0'
const namespace = 'ingress-nginx'

/**
 * ingress-nginx as the controller of IngressClass `nginx`, the cluster's default class (the upstream
 * `baremetal`/`cloud` manifest, compacted). Its validating admission webhook is left out: it needs a
 * certificate from two Jobs and a ValidatingWebhookConfiguration, and the controller works without it.
 */
export function ingressNginx(placement: Placement): AddonManifest {
  const selector = { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/component': 'controller' }
  const probe = (failureThreshold: number) => ({
    httpGet: { path: '/healthz', port: 10254, scheme: 'HTTP' },
    initialDelaySeconds: 10,
    periodSeconds: 10,
    timeoutSeconds: 1,
    failureThreshold,
  })
  return defineAddon('ingress-nginx', ingressNginxVersion, [
    kube<V1Namespace>({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }),
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'ingress-nginx', namespace },
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'ingress-nginx' },
      rules: [
        {
          apiGroups: [''],
          resources: ['configmaps', 'endpoints', 'nodes', 'pods', 'secrets', 'namespaces'],
          verbs: ['list', 'watch'],
        },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['list', 'watch'] },
        { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
        { apiGroups: [''], resources: ['services'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['networking.k8s.io'], resources: ['ingresses'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
        { apiGroups: ['networking.k8s.io'], resources: ['ingresses/status'], verbs: ['update'] },
        { apiGroups: ['networking.k8s.io'], resources: ['ingressclasses'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch', 'get'] },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'ingress-nginx' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'ingress-nginx' },
      subjects: [{ kind: 'ServiceAccount', name: 'ingress-nginx', namespace }],
    }),
    // Leader election and the controller's own configuration, in its namespace only.
    kube<V1Role>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'ingress-nginx', namespace },
      rules: [
        { apiGroups: [''], resources: ['namespaces'], verbs: ['get'] },
        {
          apiGroups: [''],
          resources: ['configmaps', 'pods', 'secrets', 'endpoints'],
          verbs: ['get', 'list', 'watch'],
        },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        {
          apiGroups: ['coordination.k8s.io'],
          resources: ['leases'],
          resourceNames: ['ingress-nginx-leader'],
          verbs: ['get', 'update'],
        },
        { apiGroups: [''], resources: ['events'], verbs: ['create', 'patch'] },
      ],
    }),
    kube<V1RoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'ingress-nginx', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'ingress-nginx' },
      subjects: [{ kind: 'ServiceAccount', name: 'ingress-nginx', namespace }],
    }),
    kube<V1ConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'ingress-nginx-controller', namespace },
      data: { 'allow-snippet-annotations': 'false' },
    }),
    kube<V1IngressClass>({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'IngressClass',
      metadata: { name: 'nginx', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } },
      spec: { controller: 'k8s.io/ingress-nginx' },
    }),
    kube<V1Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'ingress-nginx-controller', namespace },
      spec: {
        type: 'LoadBalancer',
        externalTrafficPolicy: 'Local',
        selector,
        ports: [
          { name: 'http', port: 80, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
          { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP', appProtocol: 'https' },
        ],
      },
    }),
    kube<V1Deployment>({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'ingress-nginx-controller', namespace },
      spec: {
        replicas: placement.replicas,
        revisionHistoryLimit: 10,
        minReadySeconds: 0,
        selector: { matchLabels: selector },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            serviceAccountName: 'ingress-nginx',
            terminationGracePeriodSeconds: 300,
            dnsPolicy: 'ClusterFirst',
            nodeSelector: { 'kubernetes.io/os': 'linux', ...placement.nodeSelector },
            ...(placement.tolerations.length > 0 ? { tolerations: placement.tolerations } : {}),
            affinity: spreadOverNodes(selector),
            containers: [
              {
                name: 'controller',
                image: `registry.k8s.io/ingress-nginx/controller:v${ingressNginxVersion}`,
                imagePullPolicy: 'IfNotPresent',
                args: [
                  '/nginx-ingress-controller',
                  '--publish-service=$(POD_NAMESPACE)/ingress-nginx-controller',
                  '--election-id=ingress-nginx-leader',
                  '--controller-class=k8s.io/ingress-nginx',
                  '--ingress-class=nginx',
                  '--configmap=$(POD_NAMESPACE)/ingress-nginx-controller',
                ],
                env: [
                  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                  { name: 'LD_PRELOAD', value: '/usr/local/lib/libmimalloc.so' },
                ],
                lifecycle: { preStop: { exec: { command: ['/wait-shutdown'] } } },
                ports: [
                  { name: 'http', containerPort: 80, protocol: 'TCP' },
                  { name: 'https', containerPort: 443, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 10254, protocol: 'TCP' },
                ],
                livenessProbe: probe(5),
                readinessProbe: probe(3),
                resources: { requests: { cpu: '100m', memory: '90Mi' } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { add: ['NET_BIND_SERVICE'], drop: ['ALL'] },
                  readOnlyRootFilesystem: false,
                  runAsNonRoot: true,
                  runAsUser: 101,
                  runAsGroup: 82,
                  seccompProfile: { type: 'RuntimeDefault' },
                },
              },
            ],
          },
        },
      },
    }),
  ])
}
