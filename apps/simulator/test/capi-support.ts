import { join } from 'node:path'
import {
  type ClusterApiStandIn,
  type StandInOptions,
  startClusterApiStandIn,
} from '../src/capi/controller.ts'
import { type SimulatedCluster, startSimulatedCluster } from './support.ts'

const root = join(import.meta.dirname, '../../..')

/** The vendored official CRDs: Cluster API core, kubeadm bootstrap and control plane, CAPO. */
export const clusterApiCrdDirs = [
  'vendor/cluster-api-crds/cluster-api-v1.14.0/core/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-v1.14.0/bootstrap/kubeadm/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-v1.14.0/controlplane/kubeadm/config/crd/bases',
  'vendor/cluster-api-crds/cluster-api-provider-openstack-v0.14.7/config/crd/bases',
].map((dir) => join(root, dir))

/** The simulated ClusterClass kiln-simulated and its templates. */
export const simulatedClusterClass = join(root, 'deploy/capi/simulated/clusterclass.yaml')

const established = [
  'clusters.cluster.x-k8s.io',
  'clusterclasses.cluster.x-k8s.io',
  'machinedeployments.cluster.x-k8s.io',
  'machines.cluster.x-k8s.io',
  'machinehealthchecks.cluster.x-k8s.io',
  'kubeadmconfigs.bootstrap.cluster.x-k8s.io',
  'kubeadmconfigtemplates.bootstrap.cluster.x-k8s.io',
  'kubeadmcontrolplanes.controlplane.cluster.x-k8s.io',
  'kubeadmcontrolplanetemplates.controlplane.cluster.x-k8s.io',
  'openstackclusters.infrastructure.cluster.x-k8s.io',
  'openstackclustertemplates.infrastructure.cluster.x-k8s.io',
  'openstackmachines.infrastructure.cluster.x-k8s.io',
  'openstackmachinetemplates.infrastructure.cluster.x-k8s.io',
]

export interface ManagementCluster {
  /** The simulated cluster serving as the management cluster (real kubectl through `mgmt.kubectl`). */
  mgmt: SimulatedCluster
  kubeconfigPath: string
  /** Creates a namespace and applies the simulated ClusterClass into it. */
  namespace(name: string): Promise<void>
  standIn: ClusterApiStandIn
  /** Every line the stand-in logged (creations, deletions, phases, failed passes). */
  standInLog: Record<string, unknown>[]
  close(): Promise<void>
}

/** Test delays: a Machine is Running about half a second after it is created. */
export const testDelays = { bootstrap: 50, infrastructure: 100, node: 100, deletion: 100 }

/**
 * A Cluster API management cluster for tests: a simulated cluster with the official CRDs installed
 * with the real kubectl, and the stand-in for Cluster API's controllers connected to it over HTTPS
 * with the issued kubeconfig, as the real controllers would be.
 */
export async function startManagementCluster(
  options: { name?: string; standIn?: Partial<Omit<StandInOptions, 'kubeconfig'>> } = {},
): Promise<ManagementCluster> {
  const mgmt = await startSimulatedCluster({ name: options.name ?? 'capi-mgmt' })
  const must = async (what: string, run: Promise<{ code: number; stdout: string; stderr: string }>) => {
    const result = await run
    if (result.code !== 0) throw new Error(`${what}: ${result.stderr || result.stdout}`)
    return result
  }
  try {
    await must(
      'installing the Cluster API CRDs',
      mgmt.kubectl(['apply', '--server-side', ...clusterApiCrdDirs.flatMap((dir) => ['-f', dir])]),
    )
    for (const crd of established) await must(`waiting for ${crd}`, mgmt.waitEstablished(crd))
  } catch (error) {
    await mgmt.close()
    throw error
  }
  const standInLog: Record<string, unknown>[] = []
  const standIn = startClusterApiStandIn({
    intervalMs: 50,
    delays: testDelays,
    ...options.standIn,
    kubeconfig: mgmt.kubeconfig,
    log: (entry) => {
      standInLog.push(entry)
      options.standIn?.log?.(entry)
    },
  })
  return {
    mgmt,
    kubeconfigPath: mgmt.kubeconfig,
    standIn,
    standInLog,
    async namespace(name) {
      await must(`creating namespace ${name}`, mgmt.kubectl(['create', 'namespace', name]))
      await must(
        `applying the ClusterClass into ${name}`,
        mgmt.kubectl(['apply', '--server-side', '-n', name, '-f', simulatedClusterClass]),
      )
    },
    async close() {
      await standIn.stop()
      await mgmt.close()
    },
  }
}

/**
 * A capi backend's config for a simulated management cluster: the ClusterClass kiln-simulated, and
 * workload clusters reached at the simulated API server by TLS server name.
 */
export function simulatedCapiBackend(
  kubeconfigPath: string,
  apiServerUrl: string,
  options: { namespace?: string; waitSeconds?: number } = {},
) {
  return {
    kubeconfig: { file: kubeconfigPath },
    namespace: options.namespace ?? 'kiln-clusters',
    clusterClass: 'kiln-simulated',
    controlPlaneEndpoint: { server: apiServerUrl, tlsServerName: '{clusterId}.clusters.sim.kiln.internal' },
    ...(options.waitSeconds ? { waitSeconds: options.waitSeconds } : {}),
  }
}
