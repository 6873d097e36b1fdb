import { createPublicKey } from 'node:crypto'
import { isIP } from 'node:net'
import type forge from 'node-forge'
import { type LoadedCertificateAuthority, loadCertificateAuthority } from './ca.ts'
import { PkiError, PkiErrorCode } from './errors.ts'
import { generateEcKeyPair } from './keys.ts'
import {
  type CertificateAndKey,
  clockSkewMs,
  type SubjectName,
  signCertificate,
  subjectAttributes,
  wholeSeconds,
} from './x509.ts'

/** What a leaf certificate authenticates: a TLS server (needs SANs) or a client (a user, a kubelet, a component). */
export type CertificateUsage = 'server' | 'client'

export interface IssueCertificateRequest {
  ca: CertificateAndKey
  commonName: string
  /** Kubernetes groups, e.g. system:masters. */
  organizations?: readonly string[]
  usage: CertificateUsage
  dnsNames?: readonly string[]
  ipAddresses?: readonly string[]
  ttlSeconds: number
  now?: Date
}

export interface IssuedCertificate extends CertificateAndKey {
  /** The real end of validity: the requested TTL, or the CA's notAfter if that comes first. */
  notAfter: Date
}

/** A new ECDSA P-256 key and a certificate for it signed by `ca`. */
export async function issueCertificate(request: IssueCertificateRequest): Promise<IssuedCertificate> {
  const ca = loadCertificateAuthority(request.ca)
  // Validate before generating a key: a bad request should cost nothing.
  const plan = planLeafCertificate(ca, {
    subject: { commonName: request.commonName, organizations: request.organizations ?? [] },
    usage: request.usage,
    dnsNames: request.dnsNames ?? [],
    ipAddresses: request.ipAddresses ?? [],
    ttlSeconds: request.ttlSeconds,
    now: request.now ?? new Date(),
  })
  const keys = await generateEcKeyPair()
  const certPem = signCertificate({
    ...plan,
    publicKey: createPublicKey(keys.publicKeyPem),
    issuer: ca.issuer,
  })
  return { certPem, keyPem: keys.privateKeyPem, notAfter: plan.notAfter }
}

export interface LeafRequest {
  subject: SubjectName
  usage: CertificateUsage
  dnsNames: readonly string[]
  ipAddresses: readonly string[]
  ttlSeconds: number
  now: Date
}

export interface LeafPlan {
  subject: forge.pki.CertificateField[]
  notBefore: Date
  notAfter: Date
  extensions: object[]
}

// RFC 1123 labels; a leading '*.' allows a wildcard.
const dnsNamePattern = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i

const invalidRequest = (message: string) => new PkiError(PkiErrorCode.invalidRequest, message)

/** Everything about a leaf certificate except its key, checked; shared by issueCertificate and signCsr. */
export function planLeafCertificate(ca: LoadedCertificateAuthority, request: LeafRequest): LeafPlan {
  const { subject, usage, dnsNames, ipAddresses, ttlSeconds } = request
  if (subject.commonName.trim() === '') throw invalidRequest('A certificate needs a non-empty common name.')
  if (subject.organizations.some((group) => group.trim() === '')) {
    throw invalidRequest('Organizations (groups) must be non-empty.')
  }
  if (usage !== 'server' && usage !== 'client') {
    throw invalidRequest(`usage must be 'server' or 'client', got '${usage}'.`)
  }
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    throw invalidRequest(`ttlSeconds must be a positive whole number, got ${ttlSeconds}.`)
  }
  const badDnsName = dnsNames.find((name) => name.length > 253 || !dnsNamePattern.test(name))
  if (badDnsName !== undefined) throw invalidRequest(`'${badDnsName}' is not a valid DNS name.`)
  const badIp = ipAddresses.find((address) => isIP(address) === 0)
  if (badIp !== undefined) throw invalidRequest(`'${badIp}' is not an IPv4 or IPv6 address.`)
  // Clients ignore a server certificate's common name since Go 1.15; without SANs it matches nothing.
  if (usage === 'server' && dnsNames.length === 0 && ipAddresses.length === 0) {
    throw invalidRequest('A server certificate needs at least one DNS name or IP address.')
  }

  const now = wholeSeconds(request.now)
  if (now.getTime() >= ca.notAfter.getTime()) {
    throw new PkiError(PkiErrorCode.caExpired, `The CA expired at ${ca.notAfter.toISOString()}.`)
  }
  // A certificate outliving its CA would fail verification after the CA expires anyway; say so in notAfter.
  const notAfter = new Date(Math.min(now.getTime() + ttlSeconds * 1000, ca.notAfter.getTime()))

  const altNames = [
    ...dnsNames.map((value) => ({ type: 2, value })),
    ...ipAddresses.map((ip) => ({ type: 7, ip })),
  ]
  return {
    subject: subjectAttributes(subject),
    notBefore: new Date(now.getTime() - clockSkewMs),
    notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false, critical: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      usage === 'server'
        ? { name: 'extKeyUsage', serverAuth: true }
        : { name: 'extKeyUsage', clientAuth: true },
      ...(altNames.length > 0 ? [{ name: 'subjectAltName', altNames }] : []),
    ],
  }
}
