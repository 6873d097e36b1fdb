import type { FeatureValues } from '@kiln/domain'
import type { V1DaemonSet } from '@kubernetes/client-node'
import type { AddonManifest, AddonNodeGroup } from '../model.ts'
import { defineAddon, kube } from '../objects.ts'
import { nodeGroupLabel, tolerationsFor } from '../placement.ts'
import { kubeSystem } from './cluster-network.ts'

export const nvidiaDevicePluginVersion = '0.17.0'

/** GPU machines are tainted with this key so that only pods asking for GPUs land on them. */
export const gpuTaintKey = 'nvidia.com/gpu'

/**
 * The NVIDIA device plugin, which advertises `nvidia.com/gpu` on the nodes of the GPU groups and only
 * there (required node affinity on their `kiln.dev/node-group`). Mode `operator` installs the same
 * device plugin for now: the GPU operator brings its own CRDs, Node Feature Discovery and driver
 * containers, while Kiln's GPU machine images already carry the driver and container toolkit. The
 * mode is recorded in an annotation so the switch is visible.
 */
export function nvidiaDevicePlugin(
  groups: readonly AddonNodeGroup[],
  gpu: FeatureValues['gpu'],
): AddonManifest {
  const selector = { 'app.kubernetes.io/name': 'nvidia-device-plugin' }
  // Sorted so that listing the groups in another order does not roll the DaemonSet.
  const names = groups.map((g) => g.name).sort()
  return defineAddon('nvidia-device-plugin', nvidiaDevicePluginVersion, [
    kube<V1DaemonSet>({
      apiVersion: 'apps/v1',
      kind: 'DaemonSet',
      metadata: {
        name: 'nvidia-device-plugin-daemonset',
        namespace: kubeSystem,
        annotations: { 'kiln.dev/gpu-mode': gpu.mode },
      },
      spec: {
        selector: { matchLabels: selector },
        updateStrategy: { type: 'RollingUpdate' },
        template: {
          metadata: { labels: { ...selector } },
          spec: {
            priorityClassName: 'system-node-critical',
            tolerations: tolerationsFor(groups, [{ key: gpuTaintKey, effect: 'NoSchedule' }]),
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    { matchExpressions: [{ key: nodeGroupLabel, operator: 'In', values: names }] },
                  ],
                },
              },
            },
            containers: [
              {
                name: 'nvidia-device-plugin-ctr',
                image: `nvcr.io/nvidia/k8s-device-plugin:v${nvidiaDevicePluginVersion}`,
                env: [{ name: 'FAIL_ON_INIT_ERROR', value: 'false' }],
                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
                volumeMounts: [{ name: 'device-plugin', mountPath: '/var/lib/kubelet/device-plugins' }],
              },
            ],
            volumes: [{ name: 'device-plugin', hostPath: { path: '/var/lib/kubelet/device-plugins' } }],
          },
        },
      },
    }),
  ])
}
