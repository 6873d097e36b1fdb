import { createHmac } from 'node:crypto'
import { applyObjects } from '@kiln/addons'
import { clusterAuthorityStore, type Database } from '@kiln/db'
import type { ResolvedClusterSpec } from '@kiln/domain'
import type { BootstrapMaterial } from '@kiln/drivers'
import {
  type CertificateAuthorityPurpose,
  loadClusterTrust,
  type MasterKeyring,
  openAuthority,
  openKeyPair,
  Purpose,
} from '@kiln/pki'
import { clusterAdminKubeConfig } from './addons.ts'
import { clusterSecretStore } from './cluster-pki.ts'

// What bare-metal machines need to run kubeadm themselves, from the authorities the create's
// issue-certificates step generated. Drivers that provision finished nodes (the simulator) never ask.

/** kubeadm's defaults; the CNI add-ons assume the same pod network. */
const podSubnet = '10.244.0.0/16'
const serviceSubnet = '10.96.0.0/12'
const dayMs = 24 * 3600_000

/**
 * A bootstrap token per cluster and UTC day, derived from the cluster CA's key: every worker (and every
 * retry) computes the same one without storing it, and it changes daily. The cluster accepts it until
 * the end of the next day, so a token computed just before midnight still works for a day.
 */
export function joinTokenFor(clusterId: string, caKeyPem: string, now = new Date()) {
  const day = Math.floor(now.getTime() / dayMs)
  const digest = createHmac('sha256', caKeyPem).update(`kiln-bootstrap-token/${clusterId}/${day}`).digest()
  // [a-z0-9]{6}.[a-z0-9]{16}, as kubeadm requires.
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'
  const chars = [...digest].map((b) => alphabet[b % alphabet.length]).join('')
  return { id: chars.slice(0, 6), secret: chars.slice(6, 22), expires: new Date((day + 2) * dayMs) }
}

/** The Secret kube-apiserver's bootstrap-token authenticator reads (what `kubeadm token create` writes). */
export function bootstrapTokenSecret(token: ReturnType<typeof joinTokenFor>) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: `bootstrap-token-${token.id}`, namespace: 'kube-system' },
    type: 'bootstrap.kubernetes.io/token',
    stringData: {
      'token-id': token.id,
      'token-secret': token.secret,
      expiration: token.expires.toISOString().replace(/\.\d{3}Z$/, 'Z'),
      'usage-bootstrap-authentication': 'true',
      'usage-bootstrap-signing': 'true',
      'auth-extra-groups': 'system:bootstrappers:kubeadm:default-node-token',
    },
  }
}

export function bootstrapMaterialFor(db: Database, masterKey: MasterKeyring, clusterId: string) {
  return async (): Promise<BootstrapMaterial> => {
    const cluster = await db.cluster.findUniqueOrThrow({
      where: { id: clusterId },
      select: { id: true, name: true, spec: true, status: true, template: { select: { image: true } } },
    })
    const spec = cluster.spec as unknown as ResolvedClusterSpec
    const store = clusterAuthorityStore(db)
    const authority = async (purpose: CertificateAuthorityPurpose) => {
      const trust = await loadClusterTrust(store, clusterId, purpose)
      return { trust, current: openAuthority(clusterId, purpose, trust.current, masterKey) }
    }
    const [cluster_, etcd, frontProxy, serviceAccountRecord] = await Promise.all([
      authority(Purpose.clusterCa),
      authority(Purpose.etcdCa),
      authority(Purpose.frontProxyCa),
      clusterSecretStore(db).get(clusterId, Purpose.serviceAccount),
    ])
    if (!serviceAccountRecord) throw new Error(`Cluster ${clusterId} has no service-account key yet.`)
    const token = joinTokenFor(clusterId, cluster_.current.keyPem)
    const endpoint = (cluster.status as { endpoint?: string | null }).endpoint
    if (endpoint) {
      // The control plane runs: make sure it knows today's token before a machine presents it.
      // Before that, the first control plane's InitConfiguration creates it.
      await applyObjects(
        await clusterAdminKubeConfig(db, masterKey, cluster, 'joins'),
        [bootstrapTokenSecret(token)],
        { fieldManager: 'kiln' },
      )
    }
    return {
      kubernetesVersion: spec.kubernetesVersion,
      controlPlaneInitialized: Boolean(endpoint),
      clusterCaBundlePem: cluster_.trust.caBundlePem,
      clusterCa: cluster_.current,
      etcdCa: etcd.current,
      frontProxyCa: frontProxy.current,
      serviceAccount: openKeyPair(clusterId, Purpose.serviceAccount, serviceAccountRecord, masterKey),
      joinToken: `${token.id}.${token.secret}`,
      podSubnet,
      serviceSubnet,
      ...(cluster.template.image
        ? { image: cluster.template.image as NonNullable<BootstrapMaterial['image']> }
        : {}),
    }
  }
}
