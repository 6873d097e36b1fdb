import { type AddonInput, addonKubeConfig, desiredAddons, reconcileAddons } from '@kiln/addons'
import { clusterAuthorityStore, type Database } from '@kiln/db'
import type { ResolvedClusterSpec } from '@kiln/domain'
import { DriverError } from '@kiln/drivers'
import { issueClusterClientCertificate, type MasterKeyring } from '@kiln/pki'
import type { WorkerMetrics } from './metrics.ts'

// The `install-addons` step of create, feature changes, upgrades and node-group changes: the add-ons the
// cluster's effective features ask for, applied server-side to the cluster's own API server (the
// simulated one here, a real one on other backends), and whatever Kiln applied before and no longer
// wants pruned. Kiln authenticates as a short-lived cluster admin, like any other client.

const addonManager = 'kiln:addon-manager'
const credentialTtlSeconds = 15 * 60

type ClusterForAddons = NonNullable<Awaited<ReturnType<typeof loadCluster>>>

// Read afresh: earlier steps of the same run wrote the endpoint and may have changed node groups.
const loadCluster = (db: Database, clusterId: string) =>
  db.cluster.findUnique({
    where: { id: clusterId },
    select: {
      id: true,
      name: true,
      spec: true,
      status: true,
      nodeGroups: {
        select: {
          id: true,
          name: true,
          role: true,
          count: true,
          machineClass: true,
          features: true,
          taints: true,
        },
        orderBy: { createdAt: 'asc' },
      },
    },
  })

/** The planner's view of a cluster: effective features, and per group its role, size and GPUs. */
export async function addonInputOf(db: Database, cluster: ClusterForAddons): Promise<AddonInput> {
  const spec = cluster.spec as unknown as ResolvedClusterSpec
  const classes = new Map(
    (
      await db.machineClass.findMany({
        where: { name: { in: cluster.nodeGroups.map((g) => g.machineClass) } },
        select: { name: true, gpuCount: true },
      })
    ).map((c) => [c.name, c.gpuCount]),
  )
  return {
    clusterName: cluster.name,
    kubernetesVersion: spec.kubernetesVersion,
    features: spec.features,
    nodeGroups: cluster.nodeGroups.map((g) => {
      const own = (g.features ?? {}) as { gpu?: { enabled?: boolean } }
      return {
        name: g.name,
        role: g.role,
        count: g.count,
        gpuCount: classes.get(g.machineClass) ?? 0,
        gpuEnabled: own.gpu?.enabled ?? spec.features.gpu.enabled,
        taints: Array.isArray(g.taints)
          ? (g.taints as unknown as AddonInput['nodeGroups'][number]['taints'])
          : [],
      }
    }),
  }
}

/**
 * A kubeconfig for the cluster's own API server as a short-lived cluster admin (issued from the
 * current CA). Waits (retryably) while the cluster has no endpoint yet.
 */
export async function clusterAdminKubeConfig(
  db: Database,
  masterKey: MasterKeyring,
  cluster: { id: string; name: string; status: unknown },
  purpose: string,
) {
  const status = (cluster.status ?? {}) as { endpoint?: string | null; tlsServerName?: string | null }
  if (!status.endpoint)
    throw new DriverError(
      'ERR_TRANSIENT',
      `The cluster has no API endpoint yet; ${purpose} wait for the control plane.`,
    )
  const credential = await issueClusterClientCertificate(clusterAuthorityStore(db), masterKey, cluster.id, {
    commonName: addonManager,
    groups: ['system:masters'],
    ttlSeconds: credentialTtlSeconds,
  })
  return addonKubeConfig({
    server: status.endpoint,
    ...(status.tlsServerName ? { tlsServerName: status.tlsServerName } : {}),
    caPem: credential.caBundlePem,
    certPem: credential.certPem,
    keyPem: credential.keyPem,
    user: addonManager,
    clusterName: cluster.name,
  })
}

export async function installAddons(
  db: Database,
  masterKey: MasterKeyring,
  clusterId: string,
  options: { withoutNodeGroup?: string; firstInstall?: boolean; metrics?: WorkerMetrics | undefined } = {},
): Promise<{ message: string }> {
  const loaded = await loadCluster(db, clusterId)
  if (!loaded) throw new DriverError('ERR_INVALID_REQUEST', `Cluster ${clusterId} no longer exists.`)
  // A group being removed keeps its row until its operation finishes; plan without it.
  const cluster = {
    ...loaded,
    nodeGroups: loaded.nodeGroups.filter((g) => g.id !== options.withoutNodeGroup),
  }
  const input = await addonInputOf(db, cluster)
  const desired = desiredAddons(input)
  const kubeConfig = await clusterAdminKubeConfig(db, masterKey, cluster, 'add-ons')
  const addons = desired.map((a) => a.name)
  const result = await reconcileAddons(kubeConfig, desired, {
    fieldManager: 'kiln',
    // While a cluster is created its features cannot change, so no earlier attempt applied anything
    // this one does not want: there is nothing to prune.
    prune: !options.firstInstall,
  }).catch((error: unknown) => {
    options.metrics?.addonsApplied(addons, 'failed')
    throw error
  })
  options.metrics?.addonsApplied(addons, 'succeeded')
  const names = desired.map((a) => `${a.name} ${a.version}`).join(', ')
  return {
    message: `${desired.length} add-ons applied (${names})${result.pruned.length > 0 ? `; pruned ${result.pruned.length} objects` : ''}.`,
  }
}
