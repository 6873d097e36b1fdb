import type { V1EnvVar } from '@kubernetes/client-node'
import type { AddonInput } from '../model.ts'

/**
 * Whatever implements Services (kube-proxy, or Cilium in its place) cannot reach the API server
 * through the `kubernetes` Service it has yet to program: it is pointed at the control plane's
 * address directly, when the caller knows it. Without it, the in-cluster defaults apply.
 */
export function apiServerEnv(input: AddonInput): V1EnvVar[] {
  if (!input.apiServer) return []
  return [
    { name: 'KUBERNETES_SERVICE_HOST', value: input.apiServer.host },
    { name: 'KUBERNETES_SERVICE_PORT', value: String(input.apiServer.port) },
  ]
}
