import type { Taint } from '@kiln/domain'
import type { V1Affinity, V1Toleration } from '@kubernetes/client-node'
import type { AddonInput, AddonNodeGroup } from './model.ts'

/** Every node carries its node group's name under this label. */
export const nodeGroupLabel = 'kiln.dev/node-group'
/** Nodes of ingress and infra groups carry `node-role.kubernetes.io/<role>: ""`. */
export const nodeRoleLabel = (role: string) => `node-role.kubernetes.io/${role}`

/** Node agents (CNI, kube-proxy, node-exporter) run on every node, whatever its taints. */
export const tolerateEverything: V1Toleration[] = [{ operator: 'Exists' }]

/** Tolerations for the taints of the groups a workload is placed on (by key and effect, any value). */
export function tolerationsFor(
  groups: readonly AddonNodeGroup[],
  extra: readonly Taint[] = [],
): V1Toleration[] {
  const seen = new Set<string>()
  const out: V1Toleration[] = []
  for (const taint of [...extra, ...groups.flatMap((g) => g.taints ?? [])]) {
    const id = `${taint.key}:${taint.effect}`
    if (seen.has(id)) continue
    seen.add(id)
    out.push({ key: taint.key, operator: 'Exists', effect: taint.effect })
  }
  return out
}

/** Prefer (never require) one replica per node, so a small cluster still runs them all. */
export function spreadOverNodes(selector: Record<string, string>): V1Affinity {
  return {
    podAntiAffinity: {
      preferredDuringSchedulingIgnoredDuringExecution: [
        {
          weight: 100,
          podAffinityTerm: {
            labelSelector: { matchLabels: selector },
            topologyKey: 'kubernetes.io/hostname',
          },
        },
      ],
    },
  }
}

const machinesOf = (groups: readonly AddonNodeGroup[]) => groups.reduce((sum, g) => sum + g.count, 0)

export interface Placement {
  replicas: number
  nodeSelector?: Record<string, string>
  tolerations: V1Toleration[]
}

/** At most this many ingress controller replicas, however many ingress machines there are. */
export const maxIngressReplicas = 3

/**
 * The ingress controller runs on ingress nodes, one replica per machine (1 to 3), when the cluster
 * has an ingress group; otherwise on workers: 2 replicas once there are 2 worker machines, else 1.
 */
export function ingressPlacement(input: AddonInput): Placement {
  const ingress = input.nodeGroups.filter((g) => g.role === 'ingress')
  if (ingress.length > 0) {
    return {
      replicas: Math.min(maxIngressReplicas, Math.max(1, machinesOf(ingress))),
      nodeSelector: { [nodeRoleLabel('ingress')]: '' },
      tolerations: tolerationsFor(ingress),
    }
  }
  const workers = machinesOf(input.nodeGroups.filter((g) => g.role === 'worker'))
  return { replicas: workers >= 2 ? 2 : 1, tolerations: [] }
}

/** Monitoring prefers infra nodes when the cluster has an infra group. */
export function infraPlacement(input: AddonInput): Omit<Placement, 'replicas'> {
  const infra = input.nodeGroups.filter((g) => g.role === 'infra')
  if (infra.length === 0) return { tolerations: [] }
  return { nodeSelector: { [nodeRoleLabel('infra')]: '' }, tolerations: tolerationsFor(infra) }
}

/** The groups whose machines have GPUs and whose effective gpu.enabled is on. */
export const gpuGroups = (input: AddonInput): AddonNodeGroup[] =>
  input.nodeGroups.filter((g) => g.gpuEnabled && g.gpuCount > 0)
