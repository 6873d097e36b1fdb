import { createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto'
import forge from 'node-forge'
import { errorMessage, PkiError, PkiErrorCode } from './errors.ts'
import { generateEcKeyPair } from './keys.ts'
import { type CertificateAuthorityPurpose, certificateAuthorityPurposes } from './purposes.ts'
import {
  type CertificateAndKey,
  clockSkewMs,
  type Issuer,
  keyIdentifierOf,
  keyIdentifierOfSpki,
  type ParsedCertificateParts,
  parseCertificateParts,
  signatureAlgorithmOf,
  signCertificate,
  subjectAttributes,
  wholeSeconds,
} from './x509.ts'

/** kubeadm's names, so a Kiln-built cluster's CAs look like a kubeadm-built cluster's. */
const kubeadmCommonNames: Record<CertificateAuthorityPurpose, string> = {
  'cluster-ca': 'kubernetes',
  'etcd-ca': 'etcd-ca',
  'front-proxy-ca': 'front-proxy-ca',
}

export interface GenerateCertificateAuthorityRequest {
  purpose: CertificateAuthorityPurpose
  /** Defaults to kubeadm's common name for the purpose. */
  commonName?: string
  validityDays: number
  now?: Date
}

/** A self-signed ECDSA P-256 CA, signed ecdsa-with-SHA256. */
export async function generateCertificateAuthority(
  request: GenerateCertificateAuthorityRequest,
): Promise<CertificateAndKey> {
  if (!certificateAuthorityPurposes.includes(request.purpose)) {
    throw new PkiError(
      PkiErrorCode.invalidRequest,
      `'${request.purpose}' is not a CA purpose; expected one of ${certificateAuthorityPurposes.join(', ')}.`,
    )
  }
  if (!Number.isInteger(request.validityDays) || request.validityDays <= 0) {
    throw new PkiError(
      PkiErrorCode.invalidRequest,
      `validityDays must be a positive whole number, got ${request.validityDays}.`,
    )
  }
  const commonName = request.commonName ?? kubeadmCommonNames[request.purpose]
  if (commonName.trim() === '') {
    throw new PkiError(PkiErrorCode.invalidRequest, 'A CA needs a non-empty common name.')
  }

  const keys = await generateEcKeyPair()
  const publicKey = createPublicKey(keys.publicKeyPem)
  const privateKey = createPrivateKey(keys.privateKeyPem)
  const now = wholeSeconds(request.now ?? new Date())
  const subject = subjectAttributes({ commonName, organizations: [] })
  const certPem = signCertificate({
    subject,
    publicKey,
    notBefore: new Date(now.getTime() - clockSkewMs),
    notAfter: new Date(now.getTime() + request.validityDays * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
    issuer: { name: nameDer(subject), keyIdentifier: keyIdentifierOf(publicKey), privateKey },
  })
  return { certPem, keyPem: keys.privateKeyPem }
}

/** A CA checked and parsed once, ready to sign. */
export interface LoadedCertificateAuthority {
  issuer: Issuer
  notAfter: Date
}

const caInvalid = (message: string, cause?: unknown) =>
  new PkiError(PkiErrorCode.caInvalid, message, cause === undefined ? undefined : { cause })

export function loadCertificateAuthority(ca: CertificateAndKey): LoadedCertificateAuthority {
  let x509: X509Certificate
  let cert: ParsedCertificateParts
  try {
    x509 = new X509Certificate(ca.certPem)
    cert = parseCertificateParts(Buffer.from(x509.raw))
  } catch (cause) {
    throw caInvalid(`The CA certificate cannot be read: ${errorMessage(cause)}`, cause)
  }
  const basicConstraints = extensionOf<{ cA?: boolean }>(cert, 'basicConstraints')
  if (basicConstraints?.cA !== true) {
    throw caInvalid('The CA certificate is not a CA: its basicConstraints do not set cA.')
  }
  const keyUsage = extensionOf<{ keyCertSign?: boolean }>(cert, 'keyUsage')
  if (keyUsage !== undefined && keyUsage.keyCertSign !== true) {
    throw caInvalid('The CA certificate may not sign certificates: its keyUsage lacks keyCertSign.')
  }

  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(ca.keyPem)
  } catch (cause) {
    throw caInvalid(
      `The CA private key cannot be read (an unencrypted PEM is expected): ${errorMessage(cause)}`,
      cause,
    )
  }
  // A mismatched key signs certificates that nothing verifies; better to fail here than in a TLS handshake.
  if (!x509.checkPrivateKey(privateKey)) {
    throw caInvalid('The CA private key does not belong to the CA certificate.')
  }
  try {
    signatureAlgorithmOf(privateKey)
  } catch (cause) {
    throw caInvalid(
      `The CA key cannot sign (RSA, ECDSA P-256 and P-384 CAs can): ${errorMessage(cause)}`,
      cause,
    )
  }

  const subjectKeyIdentifier = extensionOf<{ subjectKeyIdentifier?: string }>(cert, 'subjectKeyIdentifier')
  return {
    issuer: {
      name: cert.subject,
      // The CA's own identifier when it has one (it may come from another tool that computes it differently).
      keyIdentifier:
        subjectKeyIdentifier?.subjectKeyIdentifier !== undefined
          ? Buffer.from(subjectKeyIdentifier.subjectKeyIdentifier, 'hex')
          : keyIdentifierOfSpki(cert.subjectPublicKeyInfo),
      privateKey,
    },
    notAfter: cert.notAfter,
  }
}

const extensionOf = <T>(cert: ParsedCertificateParts, name: string): T | undefined =>
  cert.extensions.find((extension) => extension.name === name) as T | undefined

/** A subject's DER, which a self-signed certificate repeats as its issuer. */
const nameDer = (attributes: forge.pki.CertificateField[]): Buffer => {
  const scratch = forge.pki.createCertificate()
  scratch.setSubject(attributes)
  const dn = (
    forge.pki as unknown as { distinguishedNameToAsn1(dn: unknown): forge.asn1.Asn1 }
  ).distinguishedNameToAsn1(scratch.subject)
  return Buffer.from(forge.asn1.toDer(dn).getBytes(), 'binary')
}
