import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls'
import { clusterAuthorityStore, clusterSecretGenerations, type Database } from '@kiln/db'
import { issueCertificate, loadClusterTrust, type MasterKeyring, openAuthority, Purpose } from '@kiln/pki'

export interface ClusterTrustCacheOptions {
  db: Database
  masterKey: MasterKeyring
  /** How long a cluster's TLS context (serving certificate, trusted CAs) is reused while its CAs stay the same. */
  contextTtlMs: number
  /**
   * How long a cluster's CA generations, read from Postgres, are believed: the most a started or
   * completed CA rotation takes to reach the API server.
   */
  trustTtlMs: number
  log: (event: Record<string, unknown>) => void
}

/** Serving certificates live a day; contexts are rebuilt well before. */
const servingCertTtlSeconds = 24 * 3600

interface CachedContext {
  generations: string
  expires: number
  context: Promise<SecureContext>
}

interface TrustedCas {
  generations: string
  certificates: Promise<X509Certificate[]>
}

/**
 * The TLS trust of the simulated API servers, per cluster, following its cluster-CA generations as
 * @kiln/pki's clusterTrust decides: every stored generation is trusted for client certificates, the
 * oldest signs the serving certificate (clients issued before a rotation trust only it), so a
 * rotation that starts breaks nothing and one that completes drops the old CA.
 *
 * Each cluster's generation numbers (a primary-key-only read) are re-read at most every
 * `trustTtlMs`; a change rebuilds the TLS context at the next handshake, and a connection whose
 * handshake predates the change has its client certificate checked again against the CAs trusted
 * now, once per connection and change.
 */
export class ClusterTrustCache {
  private readonly generations = new Map<string, { expires: number; value: Promise<string> }>()
  private readonly contexts = new Map<string, CachedContext>()
  private readonly cas = new Map<string, TrustedCas>()
  private readonly verified = new WeakMap<
    TLSSocket,
    { generations: string; trusted: boolean; notAfter: number }
  >()

  constructor(private readonly options: ClusterTrustCacheOptions) {}

  /** The cluster's CA generations ('1' or, while rotating, '1,2'), at most `trustTtlMs` old; '' when it has none. */
  generationsOf(clusterId: string): Promise<string> {
    const now = Date.now()
    const cached = this.generations.get(clusterId)
    if (cached && cached.expires > now) return cached.value
    const value = clusterSecretGenerations(this.options.db, clusterId, Purpose.clusterCa).then((g) =>
      g.join(','),
    )
    sweep(this.generations, now)
    this.generations.set(clusterId, { expires: now + this.options.trustTtlMs, value })
    // Neither a failure nor "no CA" is remembered: the cluster may be being created right now, and
    // names that are no cluster must not fill the cache.
    const forget = () => {
      if (this.generations.get(clusterId)?.value === value) this.generations.delete(clusterId)
    }
    value.then((generations) => generations === '' && forget(), forget)
    return value
  }

  /** The TLS context for a cluster's server name, rebuilt when its CAs change or it expires. */
  async contextFor(serverName: string, clusterId: string): Promise<SecureContext> {
    const generations = await this.generationsOf(clusterId)
    if (generations === '') throw new Error(`no cluster CA for '${serverName}'`)
    const cached = this.contexts.get(serverName)
    if (cached && cached.generations === generations && cached.expires > Date.now()) return cached.context
    const context = this.buildContext(serverName, clusterId)
    sweep(this.contexts, Date.now())
    this.contexts.set(serverName, {
      generations,
      expires: Date.now() + this.options.contextTtlMs,
      context,
    })
    // A failure is not remembered: the cluster may be being created right now.
    context.catch(() => {
      if (this.contexts.get(serverName)?.context === context) this.contexts.delete(serverName)
    })
    return context
  }

  /**
   * Whether the client certificate of a connection is signed by a CA the cluster trusts now and is
   * within its validity. The TLS handshake checked it against the CAs trusted then; this catches a
   * keep-alive connection that outlives a completed rotation (or its own certificate).
   */
  async clientTrusted(socket: TLSSocket, clusterId: string): Promise<boolean> {
    const generations = await this.generationsOf(clusterId)
    const now = Date.now()
    const known = this.verified.get(socket)
    if (known?.generations === generations) return known.trusted && now < known.notAfter
    const peer = socket.getPeerX509Certificate()
    if (peer === undefined) return false
    const certificates = await this.trustedCas(clusterId, generations)
    const trusted = certificates.some((ca) => peer.checkIssued(ca) && peer.verify(ca.publicKey))
    const notAfter = Date.parse(peer.validTo)
    this.verified.set(socket, { generations, trusted, notAfter })
    return trusted && now < notAfter
  }

  private trustedCas(clusterId: string, generations: string): Promise<X509Certificate[]> {
    const cached = this.cas.get(clusterId)
    if (cached?.generations === generations) return cached.certificates
    const certificates = clusterAuthorityStore(this.options.db)
      .authorityGenerations(clusterId, Purpose.clusterCa)
      .then((records) => records.map((r) => new X509Certificate(r.publicPem)))
    this.cas.set(clusterId, { generations, certificates })
    certificates.catch(() => {
      if (this.cas.get(clusterId)?.certificates === certificates) this.cas.delete(clusterId)
    })
    return certificates
  }

  private async buildContext(serverName: string, clusterId: string): Promise<SecureContext> {
    const { db, masterKey, log } = this.options
    const trust = await loadClusterTrust(clusterAuthorityStore(db), clusterId, Purpose.clusterCa)
    const serving = await issueCertificate({
      ca: openAuthority(clusterId, Purpose.clusterCa, trust.serving, masterKey),
      commonName: 'kube-apiserver',
      usage: 'server',
      dnsNames: [serverName, 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'localhost'],
      ipAddresses: ['127.0.0.1'],
      ttlSeconds: servingCertTtlSeconds,
    })
    log({
      msg: 'serving certificate issued',
      clusterId,
      serverName,
      notAfter: serving.notAfter,
      signedByGeneration: trust.serving.generation,
      trustedGenerations: trust.generations.map((g) => g.generation),
    })
    return createSecureContext({
      cert: serving.certPem,
      key: serving.keyPem,
      ca: trust.generations.map((g) => g.publicPem),
    })
  }
}

/** Drops expired entries once a cache grows large: clusters come and go. */
function sweep(cache: Map<string, { expires: number }>, now: number) {
  if (cache.size < 1000) return
  for (const [key, entry] of cache) if (entry.expires <= now) cache.delete(key)
}
