import { createPublicKey } from 'node:crypto'
import forge from 'node-forge'
import { loadCertificateAuthority } from './ca.ts'
import { type CertificateUsage, planLeafCertificate } from './certificates.ts'
import { errorMessage, PkiError, PkiErrorCode } from './errors.ts'
import { attributeValues, type CertificateAndKey, signCertificate } from './x509.ts'

export interface SignCsrRequest {
  ca: CertificateAndKey
  csrPem: string
  usage: CertificateUsage
  ttlSeconds: number
  /**
   * When set, every organization (group) the CSR asks for must be listed. When absent, any group is
   * granted: callers signing CSRs from users who are not cluster admins must set it (system:masters is
   * cluster-admin, and a certificate cannot be revoked).
   */
  allowedGroups?: readonly string[]
  /** SANs come from the caller, never from the CSR: the signer, not the requester, decides where a server may be reached. */
  dnsNames?: readonly string[]
  ipAddresses?: readonly string[]
  now?: Date
}

export interface SignedCertificate {
  certPem: string
  notAfter: Date
}

/** The smallest RSA modulus we sign; kubeadm and every current baseline require 2048. */
const minimumRsaBits = 2048

/**
 * Signs a certificate for the key in a CSR, like Magnum's ca-sign: the subject's common name and
 * organizations are copied; other subject attributes and every requested extension are ignored,
 * because the certificate's usages are the caller's decision.
 */
export function signCsr(request: SignCsrRequest): SignedCertificate {
  const ca = loadCertificateAuthority(request.ca)

  let csr: forge.pki.CertificateSigningRequest
  try {
    csr = forge.pki.certificationRequestFromPem(request.csrPem, true)
  } catch (cause) {
    throw new PkiError(
      PkiErrorCode.csrInvalid,
      `The CSR cannot be read (only RSA keys are supported): ${errorMessage(cause)}`,
      { cause },
    )
  }
  // The signature proves the requester holds the private key; without it anyone could get a certificate for someone else's key.
  if (!csrSignatureVerifies(csr)) {
    throw new PkiError(PkiErrorCode.csrInvalid, "The CSR's signature does not verify against its public key.")
  }

  const extensionRequest = csr.getAttribute({ name: 'extensionRequest' })
  const asksForCa = (extensionRequest?.extensions ?? []).some(
    (extension: { name?: string; cA?: boolean }) =>
      extension.name === 'basicConstraints' && extension.cA === true,
  )
  if (asksForCa) throw refused('The CSR asks for a CA certificate; only leaf certificates are signed.')

  const publicKey = csr.publicKey as forge.pki.rsa.PublicKey
  const bits = publicKey.n.bitLength()
  if (bits < minimumRsaBits) {
    throw refused(`The CSR's RSA key has ${bits} bits; at least ${minimumRsaBits} are required.`)
  }

  const commonNames = attributeValues(csr.subject.attributes, 'commonName')
  if (commonNames.length !== 1) {
    throw refused(
      `The CSR's subject must have exactly one common name (the user); it has ${commonNames.length}.`,
    )
  }
  const organizations = attributeValues(csr.subject.attributes, 'organizationName')
  if (request.allowedGroups !== undefined) {
    const allowed = new Set(request.allowedGroups)
    const forbidden = organizations.filter((group) => !allowed.has(group))
    if (forbidden.length > 0) {
      throw refused(`The CSR asks for groups that are not allowed: ${forbidden.join(', ')}.`)
    }
  }

  const plan = planLeafCertificate(ca, {
    subject: { commonName: commonNames[0]!, organizations },
    usage: request.usage,
    dnsNames: request.dnsNames ?? [],
    ipAddresses: request.ipAddresses ?? [],
    ttlSeconds: request.ttlSeconds,
    now: request.now ?? new Date(),
  })
  return {
    certPem: signCertificate({
      ...plan,
      publicKey: createPublicKey(forge.pki.publicKeyToPem(publicKey)),
      issuer: ca.issuer,
    }),
    notAfter: plan.notAfter,
  }
}

/** forge throws, rather than returning false, for a signature that does not decode or an unknown algorithm. */
function csrSignatureVerifies(csr: forge.pki.CertificateSigningRequest): boolean {
  try {
    return csr.verify()
  } catch {
    return false
  }
}

const refused = (message: string) => new PkiError(PkiErrorCode.csrRefused, message)
