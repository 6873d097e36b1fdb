import { type FeatureValues, featureCatalogue, featureNames, type PartialFeatureValues } from '@kiln/domain'
import { describe, expect, it } from 'vitest'
import {
  type AddonInput,
  AddonLabel,
  type AddonManifest,
  type AddonNodeGroup,
  addonKindOf,
  desiredAddons,
  type KubeObject,
} from '../src/index.ts'

// Builders: catalogue defaults with the features and node groups a test cares about.
function features(over: PartialFeatureValues = {}): FeatureValues {
  const out: Record<string, unknown> = {}
  for (const name of featureNames) out[name] = { ...featureCatalogue[name].default, ...over[name] }
  return out as unknown as FeatureValues
}

const group = (name: string, over: Partial<AddonNodeGroup> = {}): AddonNodeGroup => ({
  name,
  role: 'worker',
  count: 3,
  gpuCount: 0,
  gpuEnabled: false,
  ...over,
})

const cluster = (over: Partial<AddonInput> & { features?: FeatureValues } = {}): AddonInput => ({
  clusterName: 'ml-1',
  kubernetesVersion: '1.31.4',
  features: features(),
  nodeGroups: [group('workers')],
  ...over,
})

const gpuCluster = () =>
  cluster({
    features: features({
      gpu: { enabled: true },
      ingress: { controller: 'traefik' },
      monitoring: { enabled: true, retentionDays: 15 },
      metricsServer: { enabled: true },
    }),
    nodeGroups: [
      group('workers', { count: 2 }),
      group('a100', {
        count: 1,
        gpuCount: 4,
        gpuEnabled: true,
        taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
      }),
      group('t4-off', { count: 2, gpuCount: 1, gpuEnabled: false }),
      group('t4-empty', { count: 0, gpuCount: 1, gpuEnabled: true }),
      group('cpu-switched-on', { count: 1, gpuCount: 0, gpuEnabled: true }),
    ],
  })

const names = (addons: AddonManifest[]) => addons.map((a) => a.name)
const addon = (addons: AddonManifest[], name: string) => {
  const found = addons.find((a) => a.name === name)
  if (!found) throw new Error(`no add-on ${name} in ${names(addons).join(', ')}`)
  return found
}
const object = (a: AddonManifest, kind: string, name: string): KubeObject => {
  const found = a.objects.find((o) => o.kind === kind && o.metadata.name === name)
  if (!found) throw new Error(`no ${kind}/${name} in ${a.name}`)
  return found
}

interface PodSpec {
  nodeSelector?: Record<string, string>
  tolerations?: { key?: string; operator?: string; effect?: string }[]
  affinity?: {
    nodeAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: {
        nodeSelectorTerms: { matchExpressions: { key: string; operator: string; values: string[] }[] }[]
      }
    }
    podAntiAffinity?: {
      preferredDuringSchedulingIgnoredDuringExecution?: { podAffinityTerm: { topologyKey: string } }[]
    }
  }
  containers: { name: string; image: string; args?: string[]; command?: string[] }[]
  initContainers?: { name: string; image: string }[]
}
interface Workload {
  replicas?: number
  selector: { matchLabels: Record<string, string> }
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec }
}
const workload = (o: KubeObject) => o['spec'] as Workload
const workloadKinds = ['Deployment', 'DaemonSet', 'StatefulSet']

const traefikDeployment = (input: AddonInput) =>
  workload(object(addon(desiredAddons(input), 'traefik'), 'Deployment', 'traefik'))

const allCombinations = (): AddonInput[] => {
  const inputs: AddonInput[] = []
  for (const plugin of ['calico', 'cilium', 'flannel'] as const)
    for (const controller of ['traefik', 'nginx', 'none'] as const)
      for (const on of [true, false]) {
        inputs.push(
          cluster({
            features: features({
              cni: { plugin },
              kubeProxyMode: { mode: plugin === 'cilium' && on ? 'none' : 'ipvs' },
              ingress: { controller },
              gpu: { enabled: on },
              monitoring: { enabled: on, retentionDays: 7 },
              metricsServer: { enabled: on },
              autoscaler: { enabled: on },
            }),
            nodeGroups: [
              group('workers'),
              group('edge', { role: 'ingress', count: 2 }),
              group('ops', { role: 'infra', count: 1 }),
              group('gpu', { gpuCount: 2, gpuEnabled: on }),
            ],
          }),
        )
      }
  return inputs
}

describe('desiredAddons', () => {
  it('plans the base, the device plugin, traefik, monitoring and metrics-server for a GPU cluster, and nothing else', () => {
    expect(names(desiredAddons(gpuCluster()))).toEqual([
      'coredns',
      'calico',
      'kube-proxy',
      'nvidia-device-plugin',
      'traefik',
      'prometheus',
      'node-exporter',
      'metrics-server',
    ])
  })

  it('pins versions and images', () => {
    const addons = desiredAddons(gpuCluster())
    expect(Object.fromEntries(addons.map((a) => [a.name, a.version]))).toEqual({
      coredns: '1.11.3',
      calico: '3.29.1',
      'kube-proxy': '1.31.4',
      'nvidia-device-plugin': '0.17.0',
      traefik: '3.2.3',
      prometheus: '3.1.0',
      'node-exporter': '1.8.2',
      'metrics-server': '0.7.2',
    })
    for (const input of allCombinations()) {
      for (const a of desiredAddons(input)) {
        for (const o of a.objects.filter((o) => workloadKinds.includes(o.kind))) {
          const pod = workload(o).template.spec
          for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
            expect(c.image, `${a.name} ${c.name}`).toMatch(
              /^[a-z0-9.-]+\/[a-z0-9./-]+:v\d+\.\d+\.\d+(-[a-z0-9]+)?$/,
            )
          }
        }
      }
    }
    const kubeProxy = workload(
      object(addon(desiredAddons(gpuCluster()), 'kube-proxy'), 'DaemonSet', 'kube-proxy'),
    )
    expect(kubeProxy.template.spec.containers[0]!.image).toBe('registry.k8s.io/kube-proxy:v1.31.4')
  })

  it('schedules the device plugin only on GPU-enabled groups that have GPUs, tolerating the GPU taint', () => {
    const plugin = workload(
      object(
        addon(desiredAddons(gpuCluster()), 'nvidia-device-plugin'),
        'DaemonSet',
        'nvidia-device-plugin-daemonset',
      ),
    )
    const terms =
      plugin.template.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution
        ?.nodeSelectorTerms
    expect(terms).toEqual([
      { matchExpressions: [{ key: 'kiln.dev/node-group', operator: 'In', values: ['a100', 't4-empty'] }] },
    ])
    expect(plugin.template.spec.tolerations).toContainEqual({
      key: 'nvidia.com/gpu',
      operator: 'Exists',
      effect: 'NoSchedule',
    })
    expect(plugin.template.spec.nodeSelector).toBeUndefined()
  })

  it('installs no device plugin when GPU support is off, or on but no group has GPUs', () => {
    const off = gpuCluster()
    off.features.gpu.enabled = false
    expect(names(desiredAddons(off))).not.toContain('nvidia-device-plugin')
    const noGpus = cluster({
      features: features({ gpu: { enabled: true } }),
      nodeGroups: [
        group('workers'),
        group('odd', { gpuEnabled: true, gpuCount: 0 }),
        group('off', { gpuCount: 8 }),
      ],
    })
    expect(names(desiredAddons(noGpus))).not.toContain('nvidia-device-plugin')
  })

  it('maps GPU mode operator to the same device plugin, marked with the mode', () => {
    const input = gpuCluster()
    input.features.gpu.mode = 'operator'
    const ds = object(
      addon(desiredAddons(input), 'nvidia-device-plugin'),
      'DaemonSet',
      'nvidia-device-plugin-daemonset',
    )
    expect(ds.metadata.annotations).toEqual({ 'kiln.dev/gpu-mode': 'operator' })
    expect(workload(ds).template.spec.containers[0]!.image).toBe('nvcr.io/nvidia/k8s-device-plugin:v0.17.0')
  })

  it('sizes and places traefik by the ingress and worker machines', () => {
    const traefik = (nodeGroups: AddonNodeGroup[]) => traefikDeployment(cluster({ nodeGroups }))
    const oneWorker = traefik([group('workers', { count: 1 })])
    expect(oneWorker.replicas).toBe(1)
    expect(oneWorker.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' })
    const threeWorkers = traefik([
      group('a', { count: 1 }),
      group('b', { count: 2 }),
      group('ops', { role: 'infra', count: 5 }),
    ])
    expect(threeWorkers.replicas).toBe(2)
    expect(threeWorkers.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' })

    const ingressOfThree = traefik([
      group('workers', { count: 10 }),
      group('edge', {
        role: 'ingress',
        count: 3,
        taints: [{ key: 'dedicated', value: 'ingress', effect: 'NoSchedule' }],
      }),
    ])
    expect(ingressOfThree.replicas).toBe(3)
    expect(ingressOfThree.template.spec.nodeSelector).toEqual({
      'kubernetes.io/os': 'linux',
      'node-role.kubernetes.io/ingress': '',
    })
    expect(ingressOfThree.template.spec.tolerations).toEqual([
      { key: 'dedicated', operator: 'Exists', effect: 'NoSchedule' },
    ])
    expect(
      ingressOfThree.template.spec.affinity?.podAntiAffinity
        ?.preferredDuringSchedulingIgnoredDuringExecution?.[0]?.podAffinityTerm.topologyKey,
    ).toBe('kubernetes.io/hostname')

    expect(
      traefik([
        group('edge-a', { role: 'ingress', count: 4 }),
        group('edge-b', { role: 'ingress', count: 4 }),
      ]).replicas,
    ).toBe(3)
    expect(
      traefik([group('workers', { count: 6 }), group('edge', { role: 'ingress', count: 0 })]).replicas,
    ).toBe(1)
  })

  it('switches the ingress controller: nginx gets its namespace, class and load balancer; none gets nothing', () => {
    const nginx = desiredAddons(cluster({ features: features({ ingress: { controller: 'nginx' } }) }))
    expect(names(nginx)).toContain('ingress-nginx')
    expect(names(nginx)).not.toContain('traefik')
    const a = addon(nginx, 'ingress-nginx')
    expect(object(a, 'Namespace', 'ingress-nginx')).toBeDefined()
    expect(object(a, 'IngressClass', 'nginx')['spec']).toEqual({ controller: 'k8s.io/ingress-nginx' })
    expect((object(a, 'Service', 'ingress-nginx-controller')['spec'] as { type: string }).type).toBe(
      'LoadBalancer',
    )
    expect(object(a, 'Deployment', 'ingress-nginx-controller').metadata.namespace).toBe('ingress-nginx')

    const t = addon(desiredAddons(cluster()), 'traefik')
    expect(new Set(t.objects.map((o) => o.kind))).toEqual(
      new Set([
        'Namespace',
        'ServiceAccount',
        'ClusterRole',
        'ClusterRoleBinding',
        'IngressClass',
        'Service',
        'Deployment',
      ]),
    )
    expect(
      t.objects.filter((o) => o.metadata.namespace).every((o) => o.metadata.namespace === 'ingress-traefik'),
    ).toBe(true)

    const none = desiredAddons(cluster({ features: features({ ingress: { controller: 'none' } }) }))
    expect(names(none)).toEqual(['coredns', 'calico', 'kube-proxy', 'metrics-server'])
  })

  it('keeps the asked retention and prefers infra nodes for Prometheus', () => {
    const addons = desiredAddons(gpuCluster())
    const prometheus = workload(object(addon(addons, 'prometheus'), 'StatefulSet', 'prometheus'))
    expect(prometheus.template.spec.containers[0]!.args).toContain('--storage.tsdb.retention.time=15d')
    expect(prometheus.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' })

    const infra = cluster({
      features: features({ monitoring: { enabled: true, retentionDays: 90 } }),
      nodeGroups: [group('workers'), group('ops', { role: 'infra', count: 2 })],
    })
    const onInfra = workload(object(addon(desiredAddons(infra), 'prometheus'), 'StatefulSet', 'prometheus'))
    expect(onInfra.template.spec.containers[0]!.args).toContain('--storage.tsdb.retention.time=90d')
    expect(onInfra.template.spec.nodeSelector).toEqual({
      'kubernetes.io/os': 'linux',
      'node-role.kubernetes.io/infra': '',
    })
    // The claim template never changes with the inputs: the API server refuses changes to it.
    const claims = (s: AddonInput) =>
      (
        object(addon(desiredAddons(s), 'prometheus'), 'StatefulSet', 'prometheus')['spec'] as {
          volumeClaimTemplates: unknown
        }
      ).volumeClaimTemplates
    expect(claims(infra)).toEqual(claims(gpuCluster()))

    const nodeExporter = workload(object(addon(addons, 'node-exporter'), 'DaemonSet', 'node-exporter'))
    expect(nodeExporter.template.spec.tolerations).toEqual([{ operator: 'Exists' }])
    expect(addon(addons, 'node-exporter').objects.every((o) => o.metadata.namespace === 'monitoring')).toBe(
      true,
    )
  })

  it('leaves kube-proxy out when Cilium replaces it, and passes the mode otherwise', () => {
    const none = desiredAddons(
      cluster({ features: features({ cni: { plugin: 'cilium' }, kubeProxyMode: { mode: 'none' } }) }),
    )
    expect(names(none)).toEqual(['coredns', 'cilium', 'traefik', 'metrics-server'])
    const ciliumConfig = object(addon(none, 'cilium'), 'ConfigMap', 'cilium-config')['data'] as Record<
      string,
      string
    >
    expect(ciliumConfig['kube-proxy-replacement']).toBe('true')

    const ipvs = desiredAddons(
      cluster({
        features: features({ cni: { plugin: 'cilium' }, kubeProxyMode: { mode: 'ipvs' } }),
        apiServer: { host: '10.0.0.10', port: 6443 },
      }),
    )
    const config = object(addon(ipvs, 'kube-proxy'), 'ConfigMap', 'kube-proxy')['data'] as Record<
      string,
      string
    >
    expect(config['config.conf']).toMatch(/^mode: ipvs$/m)
    expect(config['config.conf']).toMatch(/^clusterCIDR: 10\.244\.0\.0\/16$/m)
    expect(
      (object(addon(ipvs, 'cilium'), 'ConfigMap', 'cilium-config')['data'] as Record<string, string>)[
        'kube-proxy-replacement'
      ],
    ).toBe('false')
    const proxy = workload(object(addon(ipvs, 'kube-proxy'), 'DaemonSet', 'kube-proxy')).template.spec
      .containers[0] as unknown as {
      env: { name: string; value?: string }[]
    }
    expect(proxy.env).toContainEqual({ name: 'KUBERNETES_SERVICE_HOST', value: '10.0.0.10' })
  })

  it('runs the CNI and kube-proxy on every node, whatever its taints', () => {
    for (const plugin of ['calico', 'cilium', 'flannel'] as const) {
      const addons = desiredAddons(cluster({ features: features({ cni: { plugin } }) }))
      const cni = addon(addons, plugin)
      const daemonSets = cni.objects.filter((o) => o.kind === 'DaemonSet')
      expect(daemonSets).toHaveLength(1)
      expect(workload(daemonSets[0]!).template.spec.tolerations).toEqual([{ operator: 'Exists' }])
    }
    const proxy = workload(object(addon(desiredAddons(cluster()), 'kube-proxy'), 'DaemonSet', 'kube-proxy'))
    expect(proxy.template.spec.tolerations).toEqual([{ operator: 'Exists' }])
  })

  it('installs CoreDNS with two replicas and metrics-server without an APIService', () => {
    const addons = desiredAddons(cluster())
    const dns = addon(addons, 'coredns')
    expect(workload(object(dns, 'Deployment', 'coredns')).replicas).toBe(2)
    expect(new Set(dns.objects.map((o) => o.kind))).toEqual(
      new Set(['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'Deployment', 'Service']),
    )
    expect(
      dns.objects.every((o) => o.kind.startsWith('Cluster') || o.metadata.namespace === 'kube-system'),
    ).toBe(true)
    const metrics = addon(addons, 'metrics-server')
    expect(metrics.objects.map((o) => o.kind)).not.toContain('APIService')
    expect(object(metrics, 'Deployment', 'metrics-server').metadata.namespace).toBe('kube-system')
  })

  it('labels every object and pod template with the add-on, its version and the manager, never a selector', () => {
    for (const input of allCombinations()) {
      for (const a of desiredAddons(input)) {
        const expected = {
          [AddonLabel.managedBy]: 'kiln',
          [AddonLabel.addon]: a.name,
          [AddonLabel.version]: a.version,
        }
        for (const o of a.objects) {
          expect(o.metadata.labels, `${a.name} ${o.kind}/${o.metadata.name}`).toMatchObject(expected)
          if (workloadKinds.includes(o.kind)) {
            const w = workload(o)
            expect(w.template.metadata.labels).toMatchObject(expected)
            expect(w.template.metadata.labels).toMatchObject(w.selector.matchLabels)
            expect(Object.keys(w.selector.matchLabels)).not.toContain(AddonLabel.version)
          }
        }
      }
    }
  })

  it('names objects uniquely per kind and namespace, only with kinds in addonKinds, namespaced exactly when the kind is', () => {
    for (const input of allCombinations()) {
      const seen = new Map<string, string>()
      for (const a of desiredAddons(input)) {
        for (const o of a.objects) {
          const kind = addonKindOf(o.apiVersion, o.kind)
          expect(kind, `${o.apiVersion} ${o.kind}`).toBeDefined()
          expect(o.metadata.namespace !== undefined, `${o.kind}/${o.metadata.name}`).toBe(kind!.namespaced)
          expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9.:]*[a-z0-9])?$/)
          const key = `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`
          expect(seen.get(key), `${key} in ${a.name}`).toBeUndefined()
          seen.set(key, a.name)
        }
      }
    }
  })

  it('installs nothing for the autoscaler yet', () => {
    const on = cluster({ features: features({ autoscaler: { enabled: true } }) })
    expect(desiredAddons(on)).toEqual(desiredAddons(cluster()))
  })

  it('is pure: the same input gives the same plan, and the input is left alone', () => {
    const input = gpuCluster()
    const before = structuredClone(input)
    const first = desiredAddons(input)
    expect(desiredAddons(input)).toEqual(first)
    expect(input).toEqual(before)
    // Group order does not change the device plugin (no needless rollout).
    const reordered = { ...input, nodeGroups: [...input.nodeGroups].reverse() }
    expect(addon(desiredAddons(reordered), 'nvidia-device-plugin')).toEqual(
      addon(first, 'nvidia-device-plugin'),
    )
  })
})
