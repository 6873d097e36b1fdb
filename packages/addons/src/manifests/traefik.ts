import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Deployment,
  V1IngressClass,
  V1Namespace,
  V1Service,
  V1ServiceAccount,
} from '@kubernetes/client-node'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { type Placement, spreadOverNodes } from '../placement.ts'

export const traefikVersion = '3.2.3'
const namespace = 'ingress-traefik'

/** Traefik as the Kubernetes Ingress controller of IngressClass `traefik`, the cluster's default class. */
export function traefik(placement: Placement): AddonManifest {
  const selector = { 'app.kubernetes.io/name': 'traefik' }
  const probe = {
    httpGet: { path: '/ping', port: 8080, scheme: 'HTTP' },
    periodSeconds: 10,
    timeoutSeconds: 2,
  }
  return defineAddon('traefik', traefikVersion, [
    kube<V1Namespace>({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }),
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'traefik', namespace },
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'traefik' },
      rules: [
        { apiGroups: [''], resources: ['nodes', 'services', 'secrets'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
        {
          apiGroups: ['extensions', 'networking.k8s.io'],
          resources: ['ingresses', 'ingressclasses'],
          verbs: ['get', 'list', 'watch'],
        },
        {
          apiGroups: ['extensions', 'networking.k8s.io'],
          resources: ['ingresses/status'],
          verbs: ['update'],
        },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'traefik' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'traefik' },
      subjects: [{ kind: 'ServiceAccount', name: 'traefik', namespace }],
    }),
    kube<V1IngressClass>({
      apiVersion: 'networking.k8s.io/v1',
      kind: 'IngressClass',
      metadata: { name: 'traefik', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } },
      spec: { controller: 'traefik.io/ingress-controller' },
    }),
    kube<V1Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'traefik', namespace },
      spec: {
        type: 'LoadBalancer',
        selector,
        ports: [
          { name: 'web', port: 80, targetPort: 'web', protocol: 'TCP' },
          { name: 'websecure', port: 443, targetPort: 'websecure', protocol: 'TCP' },
        ],
      },
    }),
    kube<V1Deployment>({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'traefik', namespace },
      spec: {
        replicas: placement.replicas,
        selector: { matchLabels: selector },
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        template: {
          metadata: {
            labels: { ...selector },
            annotations: { 'prometheus.io/scrape': 'true', 'prometheus.io/port': '9100' },
          },
          spec: {
            serviceAccountName: 'traefik',
            terminationGracePeriodSeconds: 60,
            nodeSelector: { 'kubernetes.io/os': 'linux', ...placement.nodeSelector },
            ...(placement.tolerations.length > 0 ? { tolerations: placement.tolerations } : {}),
            affinity: spreadOverNodes(selector),
            securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532 },
            containers: [
              {
                name: 'traefik',
                image: `docker.io/traefik:v${traefikVersion}`,
                args: [
                  '--entryPoints.web.address=:8000/tcp',
                  '--entryPoints.websecure.address=:8443/tcp',
                  '--entryPoints.websecure.http.tls=true',
                  '--entryPoints.traefik.address=:8080/tcp',
                  '--entryPoints.metrics.address=:9100/tcp',
                  '--ping=true',
                  '--metrics.prometheus=true',
                  '--metrics.prometheus.entrypoint=metrics',
                  '--providers.kubernetesingress=true',
                  '--providers.kubernetesingress.ingressclass=traefik',
                  `--providers.kubernetesingress.ingressendpoint.publishedservice=${namespace}/traefik`,
                  '--log.level=INFO',
                ],
                ports: [
                  { name: 'web', containerPort: 8000, protocol: 'TCP' },
                  { name: 'websecure', containerPort: 8443, protocol: 'TCP' },
                  { name: 'traefik', containerPort: 8080, protocol: 'TCP' },
                  { name: 'metrics', containerPort: 9100, protocol: 'TCP' },
                ],
                resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
                readinessProbe: probe,
                livenessProbe: probe,
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                },
                volumeMounts: [
                  { name: 'data', mountPath: '/data' },
                  { name: 'tmp', mountPath: '/tmp' },
                ],
              },
            ],
            volumes: [
              { name: 'data', emptyDir: {} },
              { name: 'tmp', emptyDir: {} },
            ],
          },
        },
      },
    }),
  ])
}
