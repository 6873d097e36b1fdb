import { type KeyObject, randomBytes, sign } from 'node:crypto'
import forge from 'node-forge'

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  certPem: string
  keyPem: string
}

/** Whom a certificate names: kube-apiserver reads the user from the common name and groups from organizations. */
export interface SubjectName {
  commonName: string
  organizations: readonly string[]
}

/** The signing side of a certificate. */
export interface Issuer {
  /** The issuer's subject attributes, decoded so forge re-encodes them byte for byte: chain building compares names. */
  name: forge.pki.CertificateField[]
  /** Binary string; becomes the authorityKeyIdentifier, which lets verifiers pick the right CA while an old and a new one share a name. */
  keyIdentifier: string
  /** A node KeyObject: OpenSSL signs, in constant time; forge's pure-JS RSA does not promise that. */
  privateKey: KeyObject
}

export interface CertificateTemplate {
  subject: forge.pki.CertificateField[]
  publicKey: forge.pki.rsa.PublicKey
  notBefore: Date
  notAfter: Date
  /** node-forge extension descriptors; subject and authority key identifiers are added here. */
  extensions: object[]
  issuer: Issuer
}

/** Backdating notBefore keeps a fresh certificate usable on a machine whose clock runs a little behind ours. */
export const clockSkewMs = 60_000

const utf8String = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class

/** X.509 times have whole seconds; truncating first makes the notAfter we report equal the one in the certificate. */
export const wholeSeconds = (date: Date): Date => new Date(Math.floor(date.getTime() / 1000) * 1000)

export function subjectAttributes(name: SubjectName): forge.pki.CertificateField[] {
  // UTF8String, not forge's default PrintableString: PrintableString cannot hold '@' or '_' (alice@example.com),
  // and Go's parser rejects a PrintableString that holds them.
  return [
    ...name.organizations.map((value) => ({ name: 'organizationName', value, valueTagClass: utf8String })),
    { name: 'commonName', value: name.commonName, valueTagClass: utf8String },
  ]
}

/** Parsed attributes carry raw UTF-8 bytes, but forge encodes values again on output; decode them so they survive. */
export function reusableAttributes(attributes: forge.pki.CertificateField[]): forge.pki.CertificateField[] {
  return attributes.map((attribute) =>
    (attribute.valueTagClass as unknown) === forge.asn1.Type.UTF8 && typeof attribute.value === 'string'
      ? { ...attribute, value: forge.util.decodeUtf8(attribute.value) }
      : attribute,
  )
}

/** The values of one attribute (e.g. every organizationName) as JavaScript strings. */
export function attributeValues(attributes: forge.pki.CertificateField[], name: string): string[] {
  return reusableAttributes(attributes)
    .filter((attribute) => attribute.name === name && typeof attribute.value === 'string')
    .map((attribute) => attribute.value as string)
}

/** RFC 5280 method 1: SHA-1 of the RSAPublicKey, the identifier Go and OpenSSL compute too. */
export function keyIdentifierOf(publicKey: forge.pki.rsa.PublicKey): string {
  const fingerprint = forge.pki.getPublicKeyFingerprint(publicKey, {
    type: 'RSAPublicKey',
    md: forge.md.sha1.create(),
  }) as forge.util.ByteStringBuffer
  return fingerprint.getBytes()
}

/**
 * 128 random bits (RFC 5280 allows up to 20 octets). The top bit is cleared so DER reads the serial
 * as positive, and the first octet is non-zero so the encoding stays minimal, which Go's parser requires.
 */
export function randomSerialNumber(): string {
  const bytes = randomBytes(16)
  bytes[0] = bytes[0]! & 0x7f || 0x01
  return bytes.toString('hex')
}

// Missing from @types/node-forge; cert.sign uses it the same way.
const getTBSCertificate = (
  forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 }
).getTBSCertificate

export function signCertificate(template: CertificateTemplate): string {
  const cert = forge.pki.createCertificate()
  cert.serialNumber = randomSerialNumber()
  // The public key must be set before the extensions: forge derives the subjectKeyIdentifier from it.
  cert.publicKey = template.publicKey
  cert.validity.notBefore = wholeSeconds(template.notBefore)
  cert.validity.notAfter = wholeSeconds(template.notAfter)
  cert.setSubject(template.subject)
  cert.setIssuer(template.issuer.name)
  const selfSigned = template.issuer.keyIdentifier === keyIdentifierOf(template.publicKey)
  cert.setExtensions([
    ...template.extensions,
    { name: 'subjectKeyIdentifier' },
    ...(selfSigned ? [] : [{ name: 'authorityKeyIdentifier', keyIdentifier: template.issuer.keyIdentifier }]),
  ])
  // forge builds the ASN.1; OpenSSL signs (what forge's cert.sign does, minus forge's RSA).
  cert.signatureOid = forge.pki.oids.sha256WithRSAEncryption!
  cert.siginfo.algorithmOid = forge.pki.oids.sha256WithRSAEncryption!
  cert.tbsCertificate = getTBSCertificate(cert)
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary')
  cert.signature = sign('sha256', tbs, template.issuer.privateKey).toString('binary')
  // forge writes CRLF line endings; everything else in a cluster writes LF.
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n')
}

export const forgePublicKey = (publicKeyPem: string) =>
  forge.pki.publicKeyFromPem(publicKeyPem) as forge.pki.rsa.PublicKey
