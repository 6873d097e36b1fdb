import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto'
import forge from 'node-forge'
import { errorMessage, PkiError, PkiErrorCode } from './errors.ts'
import { generateRsaKeyPair } from './keys.ts'
import { type CertificateAuthorityPurpose, certificateAuthorityPurposes } from './purposes.ts'
import {
  type CertificateAndKey,
  clockSkewMs,
  forgePublicKey,
  type Issuer,
  keyIdentifierOf,
  reusableAttributes,
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

/** A self-signed RSA 2048 CA. */
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

  const keys = await generateRsaKeyPair()
  const publicKey = forgePublicKey(keys.publicKeyPem)
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
    issuer: { name: subject, keyIdentifier: keyIdentifierOf(publicKey), privateKey },
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
  let cert: forge.pki.Certificate
  try {
    cert = forge.pki.certificateFromPem(ca.certPem)
  } catch (cause) {
    throw caInvalid(
      `The CA certificate cannot be read (only RSA CAs can sign): ${errorMessage(cause)}`,
      cause,
    )
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
  if (!new X509Certificate(ca.certPem).checkPrivateKey(privateKey)) {
    throw caInvalid('The CA private key does not belong to the CA certificate.')
  }

  const subjectKeyIdentifier = extensionOf<{ subjectKeyIdentifier?: string }>(cert, 'subjectKeyIdentifier')
  return {
    issuer: {
      name: reusableAttributes(cert.subject.attributes),
      // The CA's own identifier when it has one (it may come from another tool that computes it differently).
      keyIdentifier:
        subjectKeyIdentifier?.subjectKeyIdentifier !== undefined
          ? forge.util.hexToBytes(subjectKeyIdentifier.subjectKeyIdentifier)
          : keyIdentifierOf(cert.publicKey as forge.pki.rsa.PublicKey),
      privateKey,
    },
    notAfter: cert.validity.notAfter,
  }
}

/** forge returns null for an absent extension (its types say undefined). */
const extensionOf = <T>(cert: forge.pki.Certificate, name: string): T | undefined =>
  (cert.getExtension(name) ?? undefined) as T | undefined
