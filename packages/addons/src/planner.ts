import { calico } from './manifests/calico.ts'
import { cilium } from './manifests/cilium.ts'
import { coredns } from './manifests/coredns.ts'
import { flannel } from './manifests/flannel.ts'
import { ingressNginx } from './manifests/ingress-nginx.ts'
import { kubeProxy } from './manifests/kube-proxy.ts'
import { metricsServer } from './manifests/metrics-server.ts'
import { nodeExporter } from './manifests/node-exporter.ts'
import { nvidiaDevicePlugin } from './manifests/nvidia-device-plugin.ts'
import { prometheus } from './manifests/prometheus.ts'
import { traefik } from './manifests/traefik.ts'
import type { AddonInput, AddonManifest } from './model.ts'
import { gpuGroups, infraPlacement, ingressPlacement } from './placement.ts'

/**
 * The add-ons a cluster should run, derived from its effective features (pure). The base — CoreDNS,
 * the CNI and kube-proxy (unless Cilium replaces it) — comes first, then each feature's add-ons.
 */
export function desiredAddons(input: AddonInput): AddonManifest[] {
  const { features } = input
  const addons: AddonManifest[] = [coredns()]

  const cni = features.cni.plugin
  addons.push(cni === 'calico' ? calico() : cni === 'cilium' ? cilium(input) : flannel())
  if (features.kubeProxyMode.mode !== 'none') addons.push(kubeProxy(input, features.kubeProxyMode.mode))

  const gpu = gpuGroups(input)
  if (features.gpu.enabled && gpu.length > 0) addons.push(nvidiaDevicePlugin(gpu, features.gpu))

  const ingress = features.ingress.controller
  if (ingress === 'traefik') addons.push(traefik(ingressPlacement(input)))
  if (ingress === 'nginx') addons.push(ingressNginx(ingressPlacement(input)))

  if (features.monitoring.enabled) {
    addons.push(
      prometheus({
        clusterName: input.clusterName,
        retentionDays: features.monitoring.retentionDays,
        placement: infraPlacement(input),
      }),
      nodeExporter(),
    )
  }

  if (features.metricsServer.enabled) addons.push(metricsServer())

  // features.autoscaler: nothing yet. cluster-autoscaler needs a cloud provider to add and remove
  // machines; Kiln's would be an `externalgrpc` provider backed by the driver, which does not exist.
  return addons
}
