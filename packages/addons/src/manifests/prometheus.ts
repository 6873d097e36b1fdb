import type {
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1ConfigMap,
  V1Namespace,
  V1Service,
  V1ServiceAccount,
  V1StatefulSet,
} from '@kubernetes/client-node'
import { stringify } from 'yaml'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import type { Placement } from '../placement.ts'

export const prometheusVersion = '3.1.0'
export const monitoringNamespace = 'monitoring'

const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount'
const inClusterAuth = {
  authorization: { credentials_file: `${serviceAccountDir}/token` },
  tls_config: { ca_file: `${serviceAccountDir}/ca.crt` },
}

/** What Prometheus scrapes: itself, the API servers, kubelets and cAdvisor, node-exporter, annotated pods. */
function scrapeConfig(clusterName: string) {
  // Kubelets serve self-signed certificates unless serving-certificate rotation is on.
  const kubelet = {
    scheme: 'https',
    kubernetes_sd_configs: [{ role: 'node' }],
    authorization: inClusterAuth.authorization,
    tls_config: { ...inClusterAuth.tls_config, insecure_skip_verify: true },
    relabel_configs: [{ action: 'labelmap', regex: '__meta_kubernetes_node_label_(.+)' }],
  }
  return {
    global: { scrape_interval: '30s', evaluation_interval: '30s', external_labels: { cluster: clusterName } },
    scrape_configs: [
      { job_name: 'prometheus', static_configs: [{ targets: ['localhost:9090'] }] },
      {
        job_name: 'kubernetes-apiservers',
        scheme: 'https',
        kubernetes_sd_configs: [{ role: 'endpoints' }],
        ...inClusterAuth,
        relabel_configs: [
          {
            source_labels: [
              '__meta_kubernetes_namespace',
              '__meta_kubernetes_service_name',
              '__meta_kubernetes_endpoint_port_name',
            ],
            action: 'keep',
            regex: 'default;kubernetes;https',
          },
        ],
      },
      { job_name: 'kubernetes-nodes', ...kubelet },
      { job_name: 'kubernetes-cadvisor', metrics_path: '/metrics/cadvisor', ...kubelet },
      {
        job_name: 'node-exporter',
        kubernetes_sd_configs: [{ role: 'endpoints', namespaces: { names: [monitoringNamespace] } }],
        relabel_configs: [
          { source_labels: ['__meta_kubernetes_service_name'], action: 'keep', regex: 'node-exporter' },
          { source_labels: ['__meta_kubernetes_pod_node_name'], target_label: 'node' },
        ],
      },
      {
        job_name: 'kubernetes-pods',
        kubernetes_sd_configs: [{ role: 'pod' }],
        relabel_configs: [
          {
            source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_scrape'],
            action: 'keep',
            regex: 'true',
          },
          {
            source_labels: ['__meta_kubernetes_pod_annotation_prometheus_io_path'],
            target_label: '__metrics_path__',
            regex: '(.+)',
          },
          {
            source_labels: ['__address__', '__meta_kubernetes_pod_annotation_prometheus_io_port'],
            regex: '([^:]+)(?::\\d+)?;(\\d+)',
            replacement: '$1:$2',
            target_label: '__address__',
          },
          { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
          { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
        ],
      },
    ],
  }
}

/**
 * Prometheus in namespace `monitoring`, keeping `retentionDays` of metrics. The StatefulSet's volume
 * claim template never changes with the inputs (nor carries the version label): the API server
 * refuses any change to it, so a retention change would otherwise fail to apply.
 */
export function prometheus(input: {
  clusterName: string
  retentionDays: number
  placement: Omit<Placement, 'replicas'>
}): AddonManifest {
  const { placement } = input
  const selector = { 'app.kubernetes.io/name': 'prometheus' }
  return defineAddon('prometheus', prometheusVersion, [
    kube<V1Namespace>({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: monitoringNamespace } }),
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'prometheus', namespace: monitoringNamespace },
    }),
    kube<V1ClusterRole>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'kiln:prometheus' },
      rules: [
        {
          apiGroups: [''],
          resources: ['nodes', 'nodes/metrics', 'services', 'endpoints', 'pods'],
          verbs: ['get', 'list', 'watch'],
        },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['configmaps'], verbs: ['get'] },
        { nonResourceURLs: ['/metrics', '/metrics/cadvisor'], verbs: ['get'] },
      ],
    }),
    kube<V1ClusterRoleBinding>({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'kiln:prometheus' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'kiln:prometheus' },
      subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace: monitoringNamespace }],
    }),
    kube<V1ConfigMap>({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'prometheus-config', namespace: monitoringNamespace },
      data: { 'prometheus.yml': stringify(scrapeConfig(input.clusterName)) },
    }),
    kube<V1Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'prometheus', namespace: monitoringNamespace },
      spec: { selector, ports: [{ name: 'web', port: 9090, targetPort: 'web', protocol: 'TCP' }] },
    }),
    kube<V1StatefulSet>({
      apiVersion: 'apps/v1',
      kind: 'StatefulSet',
      metadata: { name: 'prometheus', namespace: monitoringNamespace },
      spec: {
        replicas: 1,
        serviceName: 'prometheus',
        selector: { matchLabels: selector },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            serviceAccountName: 'prometheus',
            nodeSelector: { 'kubernetes.io/os': 'linux', ...placement.nodeSelector },
            ...(placement.tolerations.length > 0 ? { tolerations: placement.tolerations } : {}),
            securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, fsGroup: 65534 },
            terminationGracePeriodSeconds: 300,
            containers: [
              {
                name: 'prometheus',
                image: `quay.io/prometheus/prometheus:v${prometheusVersion}`,
                args: [
                  '--config.file=/etc/prometheus/prometheus.yml',
                  '--storage.tsdb.path=/prometheus',
                  `--storage.tsdb.retention.time=${input.retentionDays}d`,
                  '--web.enable-lifecycle',
                ],
                ports: [{ name: 'web', containerPort: 9090, protocol: 'TCP' }],
                readinessProbe: { httpGet: { path: '/-/ready', port: 'web' }, periodSeconds: 5 },
                livenessProbe: { httpGet: { path: '/-/healthy', port: 'web' }, periodSeconds: 15 },
                resources: { requests: { cpu: '250m', memory: '512Mi' }, limits: { memory: '2Gi' } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                },
                volumeMounts: [
                  { name: 'config', mountPath: '/etc/prometheus', readOnly: true },
                  { name: 'data', mountPath: '/prometheus' },
                ],
              },
            ],
            volumes: [{ name: 'config', configMap: { name: 'prometheus-config' } }],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: 'data' },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '20Gi' } } },
          },
        ],
      },
    }),
  ])
}
