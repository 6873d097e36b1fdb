import { createHash, type KeyObject, randomBytes, sign } from 'node:crypto'
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
  /** The DER of the issuer's subject Name, byte for byte: chain building compares names. */
  name: Buffer
  /** Becomes the authorityKeyIdentifier, which lets verifiers pick the right CA while an old and a new one share a name. */
  keyIdentifier: Buffer
  /** A node KeyObject: OpenSSL signs, in constant time; forge's pure-JS RSA does not promise that. */
  privateKey: KeyObject
}

export interface CertificateTemplate {
  subject: forge.pki.CertificateField[]
  publicKey: KeyObject
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

/**
 * RFC 5280 method 1: SHA-1 of the subjectPublicKey BIT STRING's contents (for RSA, the RSAPublicKey),
 * the identifier Go and OpenSSL compute too.
 */
export function keyIdentifierOf(publicKey: KeyObject): Buffer {
  return keyIdentifierOfSpki(publicKey.export({ type: 'spki', format: 'der' }))
}

/** The same identifier from a SubjectPublicKeyInfo's DER. */
export function keyIdentifierOfSpki(spki: Buffer): Buffer {
  const [, bitString] = derChildren(spki, readTlv(spki, 0))
  if (bitString === undefined || bitString.tag !== 0x03) throw new Error('Not a SubjectPublicKeyInfo.')
  // The first content octet counts unused bits; the key itself follows.
  return createHash('sha1')
    .update(spki.subarray(bitString.contentStart + 1, bitString.end))
    .digest()
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

/** forge's ASN.1 helpers that @types/node-forge leaves out; the certificate itself never passes through forge's RSA-only code. */
const forgePki = forge.pki as unknown as {
  distinguishedNameToAsn1(dn: { attributes: forge.pki.CertificateField[] }): forge.asn1.Asn1
  certificateExtensionsToAsn1(extensions: object[]): forge.asn1.Asn1
  certificateExtensionFromAsn1(extension: forge.asn1.Asn1): Record<string, unknown>
}

const { Class, Type } = forge.asn1
const asn1Der = (node: forge.asn1.Asn1): Buffer => Buffer.from(forge.asn1.toDer(node).getBytes(), 'binary')

/** RFC 5280: UTCTime through 2049, GeneralizedTime from 2050. */
const timeToAsn1 = (date: Date): forge.asn1.Asn1 =>
  date.getUTCFullYear() < 2050
    ? forge.asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, forge.asn1.dateToUtcTime(date))
    : forge.asn1.create(Class.UNIVERSAL, Type.GENERALIZEDTIME, false, forge.asn1.dateToGeneralizedTime(date))

/** The signature algorithm a key signs certificates with: SHA-256 everywhere, as kubeadm does (SHA-384 for P-384). */
export function signatureAlgorithmOf(privateKey: KeyObject): { digest: string; algorithmIdentifier: Buffer } {
  const algorithm = (oid: string, withNullParameters: boolean) =>
    asn1Der(
      forge.asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, [
        forge.asn1.create(Class.UNIVERSAL, Type.OID, false, forge.asn1.oidToDer(oid).getBytes()),
        ...(withNullParameters ? [forge.asn1.create(Class.UNIVERSAL, Type.NULL, false, '')] : []),
      ]),
    )
  if (privateKey.asymmetricKeyType === 'rsa') {
    return { digest: 'sha256', algorithmIdentifier: algorithm('1.2.840.113549.1.1.11', true) }
  }
  if (privateKey.asymmetricKeyType === 'ec') {
    const curve = privateKey.asymmetricKeyDetails?.namedCurve
    if (curve === 'prime256v1') {
      return { digest: 'sha256', algorithmIdentifier: algorithm('1.2.840.10045.4.3.2', false) }
    }
    if (curve === 'secp384r1') {
      return { digest: 'sha384', algorithmIdentifier: algorithm('1.2.840.10045.4.3.3', false) }
    }
  }
  throw new Error(
    `Unsupported signing key: ${privateKey.asymmetricKeyType} ${privateKey.asymmetricKeyDetails?.namedCurve ?? ''}`.trim(),
  )
}

/**
 * Builds the TBSCertificate from DER pieces (so the issuer Name is the CA's subject byte for byte and
 * any key type fits), then OpenSSL signs it: RSA keys sha256WithRSAEncryption, P-256 keys ecdsa-with-SHA256.
 */
export function signCertificate(template: CertificateTemplate): string {
  const spki = template.publicKey.export({ type: 'spki', format: 'der' })
  const subjectKeyIdentifier = keyIdentifierOfSpki(spki)
  const selfSigned = template.issuer.keyIdentifier.equals(subjectKeyIdentifier)
  // A certificate-less forge certificate fills in extension OIDs and values; nothing here touches a key.
  const scratch = forge.pki.createCertificate()
  scratch.setExtensions([
    ...template.extensions,
    {
      name: 'subjectKeyIdentifier',
      value: forge.asn1.create(
        Class.UNIVERSAL,
        Type.OCTETSTRING,
        false,
        subjectKeyIdentifier.toString('binary'),
      ),
    },
    ...(selfSigned
      ? []
      : [
          { name: 'authorityKeyIdentifier', keyIdentifier: template.issuer.keyIdentifier.toString('binary') },
        ]),
  ])
  scratch.setSubject(template.subject)
  const { digest, algorithmIdentifier } = signatureAlgorithmOf(template.issuer.privateKey)

  const tbs = derSequence([
    // version [0] EXPLICIT v3
    derTlv(0xa0, derTlv(0x02, Buffer.from([0x02]))),
    derTlv(0x02, Buffer.from(randomSerialNumber(), 'hex')),
    algorithmIdentifier,
    template.issuer.name,
    derSequence([
      asn1Der(timeToAsn1(wholeSeconds(template.notBefore))),
      asn1Der(timeToAsn1(wholeSeconds(template.notAfter))),
    ]),
    asn1Der(forgePki.distinguishedNameToAsn1(scratch.subject)),
    spki,
    asn1Der(forgePki.certificateExtensionsToAsn1(scratch.extensions)),
  ])
  // DER-encoded ECDSA-Sig-Value for EC keys, PKCS#1 v1.5 for RSA: what X.509 carries for each.
  const signature = sign(digest, tbs, template.issuer.privateKey)
  const der = derSequence([
    tbs,
    algorithmIdentifier,
    derTlv(0x03, Buffer.concat([Buffer.from([0]), signature])),
  ])
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}

/** One DER element's position: tag, where its contents start, where it ends. */
export interface DerElement {
  tag: number
  start: number
  contentStart: number
  end: number
}

/** Reads the (definite-length, single-byte-tag) DER element at `offset`. */
export function readTlv(der: Buffer, offset: number): DerElement {
  const tag = der[offset]
  let length = der[offset + 1]
  if (tag === undefined || length === undefined || (tag & 0x1f) === 0x1f) throw new Error('Malformed DER.')
  let contentStart = offset + 2
  if (length & 0x80) {
    const octets = length & 0x7f
    if (octets === 0 || octets > 4) throw new Error('Malformed DER length.')
    length = 0
    for (let i = 0; i < octets; i++) length = length * 256 + (der[contentStart + i] ?? Number.NaN)
    contentStart += octets
  }
  const end = contentStart + length
  if (!Number.isFinite(end) || end > der.length) throw new Error('Truncated DER.')
  return { tag, start: offset, contentStart, end }
}

/** The elements inside a constructed element. */
export function derChildren(der: Buffer, parent: DerElement): DerElement[] {
  const children: DerElement[] = []
  for (let offset = parent.contentStart; offset < parent.end; ) {
    const child = readTlv(der, offset)
    if (child.end > parent.end) throw new Error('Malformed DER nesting.')
    children.push(child)
    offset = child.end
  }
  return children
}

function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length])
  const octets: number[] = []
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest & 0xff)
  return Buffer.from([0x80 | octets.length, ...octets])
}

const derTlv = (tag: number, contents: Buffer): Buffer =>
  Buffer.concat([Buffer.from([tag]), derLength(contents.length), contents])
const derSequence = (elements: Buffer[]): Buffer => derTlv(0x30, Buffer.concat(elements))

/** The parts of a certificate a CA needs, read straight from its DER (forge's parser reads RSA keys only). */
export interface ParsedCertificateParts {
  /** The subject Name's DER, exactly as encoded. */
  subject: Buffer
  subjectPublicKeyInfo: Buffer
  notAfter: Date
  /** forge's decoded extensions (basicConstraints' cA, keyUsage's keyCertSign, subjectKeyIdentifier's hex...). */
  extensions: Record<string, unknown>[]
}

export function parseCertificateParts(der: Buffer): ParsedCertificateParts {
  const certificate = readTlv(der, 0)
  const [tbsElement] = derChildren(der, certificate)
  if (certificate.tag !== 0x30 || tbsElement?.tag !== 0x30) throw new Error('Not an X.509 certificate.')
  const fields = derChildren(der, tbsElement)
  // version is optional (v1 omits it).
  const rest = fields[0]?.tag === 0xa0 ? fields.slice(1) : fields
  const [, , , validity, subject, spki, ...optional] = rest
  if (validity === undefined || subject === undefined || spki === undefined) {
    throw new Error('The TBSCertificate is incomplete.')
  }
  const bytes = (element: DerElement) => der.subarray(element.start, element.end)
  const times = forge.asn1.fromDer(bytes(validity).toString('binary')).value as forge.asn1.Asn1[]
  const notAfterNode = times[1]
  if (notAfterNode === undefined || typeof notAfterNode.value !== 'string') throw new Error('No notAfter.')
  const notAfter =
    notAfterNode.type === Type.UTCTIME
      ? forge.asn1.utcTimeToDate(notAfterNode.value)
      : forge.asn1.generalizedTimeToDate(notAfterNode.value)
  const extensionsWrapper = optional.find((element) => element.tag === 0xa3)
  const extensionList = extensionsWrapper === undefined ? undefined : derChildren(der, extensionsWrapper)[0]
  const extensions =
    extensionList === undefined
      ? []
      : derChildren(der, extensionList).map((extension) =>
          forgePki.certificateExtensionFromAsn1(forge.asn1.fromDer(bytes(extension).toString('binary'))),
        )
  return {
    subject: Buffer.from(bytes(subject)),
    subjectPublicKeyInfo: Buffer.from(bytes(spki)),
    notAfter,
    extensions,
  }
}
