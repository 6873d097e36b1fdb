import { X509Certificate } from 'node:crypto'
import { caBundle } from './bundle.ts'
import { issueCertificate } from './certificates.ts'
import { signCsr } from './csr.ts'
import type { MasterKeyring } from './envelope.ts'
import { PkiError, PkiErrorCode } from './errors.ts'
import { type MaterialRecord, materialFromRecord, openCertificate } from './material.ts'
import { type CertificateAuthorityPurpose, Purpose } from './purposes.ts'
import type { CertificateAndKey } from './x509.ts'

/**
 * One stored generation of a cluster CA. A cluster starts with generation 1; starting a rotation adds
 * the next one, completing it deletes every older one (and so their sealed keys).
 */
export interface AuthorityRecord extends MaterialRecord {
  generation: number
}

/** The public side of a CA generation: enough to decide trust, nothing to sign with. */
export type PublicAuthorityRecord = Omit<AuthorityRecord, 'sealedKey'>

/** Reads a cluster's stored CA generations, in any order; packages/db implements it (`clusterAuthorityStore`). */
export interface AuthorityStore {
  authorityGenerations(
    clusterId: string,
    purpose: CertificateAuthorityPurpose,
  ): Promise<readonly AuthorityRecord[]>
}

/** `current` signs new credentials; `previous` is still trusted until the rotation completes. */
export type AuthorityRole = 'current' | 'previous'

/**
 * Which CA does what, in the order kubeadm's manual CA rotation uses, so nothing breaks mid-way:
 * every stored generation is trusted (client certificates from the old and the new CA authenticate);
 * the newest signs every new client credential; the oldest signs serving certificates until the
 * rotation completes, because a client issued before it started trusts only the old CA, while one
 * issued after holds the bundle and trusts either.
 */
export interface ClusterTrust<R extends PublicAuthorityRecord = AuthorityRecord> {
  /** Signs every credential issued now. */
  current: R
  /** Signs the API server's serving certificate. */
  serving: R
  /** Oldest first. */
  generations: R[]
  /** Every trusted CA certificate, oldest first; kubeconfigs embed them all. */
  caBundlePem: string
  /** More than one generation is stored: a rotation was started and not completed. */
  rotating: boolean
}

/** The trust a cluster's stored generations give, or undefined when it has none yet. */
export function clusterTrust<R extends PublicAuthorityRecord>(
  records: readonly R[],
): ClusterTrust<R> | undefined {
  const generations = [...records].sort((a, b) => a.generation - b.generation)
  const serving = generations[0]
  const current = generations[generations.length - 1]
  if (serving === undefined || current === undefined) return undefined
  for (const record of generations) {
    if (record.kind !== 'certificate') {
      throw new PkiError(
        PkiErrorCode.materialKindMismatch,
        `CA generation ${record.generation} is a ${record.kind}, not a certificate.`,
      )
    }
  }
  return {
    current,
    serving,
    generations,
    caBundlePem: caBundle(generations.map((g) => g.publicPem)),
    rotating: generations.length > 1,
  }
}

export const authorityRole = (
  trust: ClusterTrust<PublicAuthorityRecord>,
  generation: number,
): AuthorityRole => (generation === trust.current.generation ? 'current' : 'previous')

/** Opens one generation's sealed key (it is bound to the cluster, purpose and generation). */
export function openAuthority(
  clusterId: string,
  purpose: CertificateAuthorityPurpose,
  record: AuthorityRecord,
  keyring: MasterKeyring,
): CertificateAndKey {
  return openCertificate(clusterId, purpose, materialFromRecord(record), keyring, record.generation)
}

/** The trust of a cluster's CA for `purpose`; a PkiError `ca-missing` when it has none yet. */
export async function loadClusterTrust(
  store: AuthorityStore,
  clusterId: string,
  purpose: CertificateAuthorityPurpose = Purpose.clusterCa,
): Promise<ClusterTrust> {
  const trust = clusterTrust(await store.authorityGenerations(clusterId, purpose))
  if (trust === undefined) {
    throw new PkiError(PkiErrorCode.caMissing, `The cluster has no ${purpose} yet.`)
  }
  return trust
}

interface ClientCertificateOptions {
  /** Default 24 h; the caller enforces its own maximum. */
  ttlSeconds: number
  now?: Date
}

/** A new key pair and a certificate for a named user and groups. */
export interface NewClientCertificateRequest extends ClientCertificateOptions {
  commonName: string
  groups: readonly string[]
}

/** A certificate for the key in a PEM PKCS#10 CSR (Magnum's ca-sign); the CSR names the user and groups. */
export interface CsrClientCertificateRequest extends ClientCertificateOptions {
  csrPem: string
  /** Every group (O=) the CSR asks for must be one of these. */
  allowedGroups: readonly string[]
  /** Whether the CSR may name a `system:` user (default false). */
  allowSystemUsers?: boolean
}

export interface ClusterClientCertificate {
  certPem: string
  /** Every CA the cluster trusts now (both while the CA rotates): what a client should trust. */
  caBundlePem: string
  /** The Kubernetes user (CN) and groups (O) the certificate carries. */
  username: string
  groups: string[]
  notAfter: Date
  /** Lowercase hex. */
  serialNumber: string
  /** The CA generation that signed it. */
  generation: number
}

/**
 * The one way Kiln issues a cluster client credential (kubeconfigs, CSRs, the worker's own admin
 * certificates): signed by the cluster CA that is current now (the new one once a rotation started),
 * returned with the whole trust bundle. Given `commonName` and `groups` it generates the key; given
 * `csrPem` it certifies the requester's key, granting only `allowedGroups`.
 */
export async function issueClusterClientCertificate(
  store: AuthorityStore,
  keyring: MasterKeyring,
  clusterId: string,
  request: NewClientCertificateRequest,
): Promise<ClusterClientCertificate & { keyPem: string }>
export async function issueClusterClientCertificate(
  store: AuthorityStore,
  keyring: MasterKeyring,
  clusterId: string,
  request: CsrClientCertificateRequest,
): Promise<ClusterClientCertificate>
export async function issueClusterClientCertificate(
  store: AuthorityStore,
  keyring: MasterKeyring,
  clusterId: string,
  request: NewClientCertificateRequest | CsrClientCertificateRequest,
): Promise<ClusterClientCertificate & { keyPem?: string }> {
  const trust = await loadClusterTrust(store, clusterId, Purpose.clusterCa)
  const ca = openAuthority(clusterId, Purpose.clusterCa, trust.current, keyring)
  const common = { caBundlePem: trust.caBundlePem, generation: trust.current.generation }
  if ('csrPem' in request) {
    const signed = signCsr({
      ca,
      csrPem: request.csrPem,
      usage: 'client',
      ttlSeconds: request.ttlSeconds,
      allowedGroups: request.allowedGroups,
      allowSystemUsers: request.allowSystemUsers ?? false,
      now: request.now,
    })
    return {
      ...common,
      certPem: signed.certPem,
      username: signed.commonName,
      groups: signed.organizations,
      notAfter: signed.notAfter,
      serialNumber: serialOf(signed.certPem),
    }
  }
  const issued = await issueCertificate({
    ca,
    commonName: request.commonName,
    organizations: request.groups,
    usage: 'client',
    ttlSeconds: request.ttlSeconds,
    now: request.now,
  })
  return {
    ...common,
    certPem: issued.certPem,
    keyPem: issued.keyPem,
    username: request.commonName,
    groups: [...request.groups],
    notAfter: issued.notAfter,
    serialNumber: serialOf(issued.certPem),
  }
}

const serialOf = (certPem: string) => new X509Certificate(certPem).serialNumber.toLowerCase()
