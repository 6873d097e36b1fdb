import type { V1DaemonSet, V1Service, V1ServiceAccount } from '@kubernetes/client-node'
import type { AddonManifest } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { tolerateEverything } from '../placement.ts'
import { monitoringNamespace } from './prometheus.ts'

export const nodeExporterVersion = '1.8.2'

/** Host metrics from every node, scraped by Prometheus through the headless `node-exporter` Service. */
export function nodeExporter(): AddonManifest {
  const selector = { 'app.kubernetes.io/name': 'node-exporter' }
  return defineAddon('node-exporter', nodeExporterVersion, [
    kube<V1ServiceAccount>({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: 'node-exporter', namespace: monitoringNamespace },
    }),
    kube<V1Service>({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'node-exporter', namespace: monitoringNamespace },
      spec: {
        clusterIP: 'None',
        selector,
        ports: [{ name: 'metrics', port: 9100, targetPort: 'metrics', protocol: 'TCP' }],
      },
    }),
    kube<V1DaemonSet>({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: { name: 'node-exporter', namespace: monitoringNamespace },
      spec: {
        selector: { matchLabels: selector },
        updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '10%' } },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            serviceAccountName: 'node-exporter',
            automountServiceAccountToken: false,
            hostNetwork: true,
            hostPID: true,
            nodeSelector: { 'kubernetes.io/os': 'linux' },
            tolerations: tolerateEverything,
            securityContext: { runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534 },
            containers: [
              {
                name: 'node-exporter',
                image: `quay.io/prometheus/node-exporter:v${nodeExporterVersion}`,
                args: [
                  '--path.rootfs=/host/root',
                  '--path.procfs=/host/proc',
                  '--path.sysfs=/host/sys',
                  '--web.listen-address=:9100',
                  '--collector.filesystem.mount-points-exclude=^/(dev|proc|sys|run/containerd/.+|var/lib/kubelet/pods/.+)($|/)',
                ],
                ports: [{ name: 'metrics', containerPort: 9100, protocol: 'TCP' }],
                resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { memory: '128Mi' } },
                securityContext: {
                  allowPrivilegeEscalation: false,
                  capabilities: { drop: ['ALL'] },
                  readOnlyRootFilesystem: true,
                },
                volumeMounts: [
                  {
                    name: 'root',
                    mountPath: '/host/root',
                    readOnly: true,
                    mountPropagation: 'HostToContainer',
                  },
                  { name: 'proc', mountPath: '/host/proc', readOnly: true },
                  { name: 'sys', mountPath: '/host/sys', readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: 'root', hostPath: { path: '/' } },
              { name: 'proc', hostPath: { path: '/proc' } },
              { name: 'sys', hostPath: { path: '/sys' } },
            ],
          },
        },
      },
    }),
  ])
}
