import { createPublicKey, type KeyObject, verify } from 'node:crypto'
import forge from 'node-forge'
import { loadCertificateAuthority } from './ca.ts'
import { type CertificateUsage, planLeafCertificate } from './certificates.ts'
import { errorMessage, PkiError, PkiErrorCode } from './errors.ts'
import { type CertificateAndKey, type DerElement, derChildren, readTlv, signCertificate } from './x509.ts'

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
  /**
   * Whether the common name may be a Kubernetes system user (`system:…`: components, nodes, service
   * accounts). Default true; set false for callers who are not cluster admins.
   */
  allowSystemUsers?: boolean
  /** SANs come from the caller, never from the CSR: the signer, not the requester, decides where a server may be reached. */
  dnsNames?: readonly string[]
  ipAddresses?: readonly string[]
  now?: Date
}

export interface SignedCertificate {
  certPem: string
  notAfter: Date
  /** The CSR's common name (the Kubernetes user) and organizations (its groups), as certified. */
  commonName: string
  organizations: string[]
}

/** The smallest RSA modulus we sign; kubeadm and every current baseline require 2048. */
const minimumRsaBits = 2048

/**
 * Signs a certificate for the key in a CSR, like Magnum's ca-sign: the subject's common name and
 * organizations are copied; other subject attributes and every requested extension are ignored,
 * because the certificate's usages are the caller's decision. RSA (2048 bits or more) and ECDSA
 * P-256/P-384 keys are accepted, as Kubernetes' own CSR signer does.
 */
export function signCsr(request: SignCsrRequest): SignedCertificate {
  const ca = loadCertificateAuthority(request.ca)
  const csr = parseCsr(request.csrPem)

  // The signature proves the requester holds the private key; without it anyone could get a certificate for someone else's key.
  if (!csrSignatureVerifies(csr)) {
    throw new PkiError(PkiErrorCode.csrInvalid, "The CSR's signature does not verify against its public key.")
  }
  if (csr.asksForCa) throw refused('The CSR asks for a CA certificate; only leaf certificates are signed.')

  if (csr.commonNames.length !== 1) {
    throw refused(
      `The CSR's subject must have exactly one common name (the user); it has ${csr.commonNames.length}.`,
    )
  }
  const commonName = csr.commonNames[0]!
  if (request.allowSystemUsers === false && commonName.startsWith('system:')) {
    throw refused(
      `The CSR's common name '${commonName}' is a reserved Kubernetes system user, which you may not request.`,
    )
  }
  const organizations = csr.organizations
  if (request.allowedGroups !== undefined) {
    const allowed = new Set(request.allowedGroups)
    const forbidden = organizations.filter((group) => !allowed.has(group))
    if (forbidden.length > 0) {
      throw refused(`The CSR asks for groups that are not allowed: ${forbidden.join(', ')}.`)
    }
  }

  const plan = planLeafCertificate(ca, {
    subject: { commonName, organizations },
    usage: request.usage,
    dnsNames: request.dnsNames ?? [],
    ipAddresses: request.ipAddresses ?? [],
    ttlSeconds: request.ttlSeconds,
    now: request.now ?? new Date(),
  })
  return {
    certPem: signCertificate({ ...plan, publicKey: csr.publicKey, issuer: ca.issuer }),
    notAfter: plan.notAfter,
    commonName,
    organizations,
  }
}

/** A PKCS#10 request read straight from its DER: forge's parser reads RSA keys only. */
interface ParsedCsr {
  /** The CertificationRequestInfo's DER, which the signature covers. */
  signedPart: Buffer
  signatureAlgorithm: string
  signature: Buffer
  publicKey: KeyObject
  commonNames: string[]
  organizations: string[]
  asksForCa: boolean
}

const oid = {
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  extensionRequest: '1.2.840.113549.1.9.14',
  basicConstraints: '2.5.29.19',
}

/** The signature algorithms a CSR may use, with the key type that must make them. SHA-1 is not among them. */
const signatureAlgorithms: Record<string, { digest: string; keyType: 'rsa' | 'ec' }> = {
  '1.2.840.113549.1.1.11': { digest: 'sha256', keyType: 'rsa' },
  '1.2.840.113549.1.1.12': { digest: 'sha384', keyType: 'rsa' },
  '1.2.840.113549.1.1.13': { digest: 'sha512', keyType: 'rsa' },
  '1.2.840.10045.4.3.2': { digest: 'sha256', keyType: 'ec' },
  '1.2.840.10045.4.3.3': { digest: 'sha384', keyType: 'ec' },
  '1.2.840.10045.4.3.4': { digest: 'sha512', keyType: 'ec' },
}

const supportedCurves = new Set(['prime256v1', 'secp384r1'])

const invalid = (message: string, cause?: unknown) =>
  new PkiError(
    PkiErrorCode.csrInvalid,
    cause === undefined ? message : `${message}: ${errorMessage(cause)}`,
    cause === undefined ? undefined : { cause },
  )
const refused = (message: string) => new PkiError(PkiErrorCode.csrRefused, message)

function csrDer(csrPem: string): Buffer {
  const labels = csrPem.match(/-----BEGIN [^-]+-----/g) ?? []
  const label = labels[0]
  if (
    labels.length !== 1 ||
    (label !== '-----BEGIN CERTIFICATE REQUEST-----' && label !== '-----BEGIN NEW CERTIFICATE REQUEST-----')
  ) {
    throw invalid(
      `Expected exactly one PEM CERTIFICATE REQUEST block, found ${labels.length === 0 ? 'none' : labels.join(', ')}.`,
    )
  }
  const body = /-----BEGIN [^-]+-----([\s\S]*?)-----END [^-]+-----/.exec(csrPem)?.[1]
  const base64 = (body ?? '').replace(/\s+/g, '')
  if (base64 === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
    throw invalid('The CERTIFICATE REQUEST block is not base64.')
  }
  return Buffer.from(base64, 'base64')
}

function parseCsr(csrPem: string): ParsedCsr {
  const der = csrDer(csrPem)
  try {
    const outer = readTlv(der, 0)
    if (outer.tag !== 0x30 || outer.end !== der.length) throw new Error('not a single DER SEQUENCE')
    const [info, algorithm, signature] = derChildren(der, outer)
    if (info?.tag !== 0x30 || algorithm?.tag !== 0x30 || signature?.tag !== 0x03) {
      throw new Error('not a CertificationRequest')
    }
    const [version, subject, spki, attributes] = derChildren(der, info)
    if (version?.tag !== 0x02 || subject?.tag !== 0x30 || spki?.tag !== 0x30) {
      throw new Error('the CertificationRequestInfo is incomplete')
    }
    const algorithmOid = derChildren(der, algorithm)[0]
    if (algorithmOid?.tag !== 0x06) throw new Error('no signature algorithm')
    // The BIT STRING's first octet counts unused bits, which a signature never has.
    if (der[signature.contentStart] !== 0) throw new Error('the signature has unused bits')

    let publicKey: KeyObject
    try {
      publicKey = createPublicKey({ key: bytes(der, spki), format: 'der', type: 'spki' })
    } catch (cause) {
      throw refused(`The CSR's public key is not one we can use: ${errorMessage(cause)}`)
    }
    checkKey(publicKey)

    const names = attributeValues(der, subject)
    return {
      signedPart: bytes(der, info),
      signatureAlgorithm: oidOf(der, algorithmOid),
      signature: der.subarray(signature.contentStart + 1, signature.end),
      publicKey,
      commonNames: names.filter((name) => name.type === oid.commonName).map((name) => name.value),
      organizations: names.filter((name) => name.type === oid.organizationName).map((name) => name.value),
      asksForCa: attributes?.tag === 0xa0 && requestsCa(der, attributes),
    }
  } catch (cause) {
    if (cause instanceof PkiError) throw cause
    throw invalid('The CSR cannot be read', cause)
  }
}

function checkKey(publicKey: KeyObject) {
  const type = publicKey.asymmetricKeyType
  if (type === 'rsa') {
    const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < minimumRsaBits) {
      throw refused(`The CSR's RSA key has ${bits} bits; at least ${minimumRsaBits} are required.`)
    }
    return
  }
  if (type === 'ec') {
    const curve = publicKey.asymmetricKeyDetails?.namedCurve ?? 'an unnamed curve'
    if (supportedCurves.has(curve)) return
    throw refused(`The CSR's ECDSA key is on ${curve}; P-256 and P-384 are accepted.`)
  }
  throw refused(
    `The CSR's key is ${type ?? 'of an unknown type'}; RSA and ECDSA (P-256, P-384) are accepted.`,
  )
}

function csrSignatureVerifies(csr: ParsedCsr): boolean {
  const algorithm = signatureAlgorithms[csr.signatureAlgorithm]
  if (algorithm === undefined) {
    throw refused(
      `The CSR is signed with algorithm ${csr.signatureAlgorithm}; RSA PKCS#1 v1.5 and ECDSA with SHA-256, -384 or -512 are accepted.`,
    )
  }
  if (algorithm.keyType !== csr.publicKey.asymmetricKeyType) return false
  try {
    return verify(algorithm.digest, csr.signedPart, csr.publicKey, csr.signature)
  } catch {
    return false
  }
}

const bytes = (der: Buffer, element: DerElement) => der.subarray(element.start, element.end)
const oidOf = (der: Buffer, element: DerElement) =>
  forge.asn1.derToOid(der.subarray(element.contentStart, element.end).toString('binary'))

/** Every attribute of a Name (SEQUENCE OF SET OF AttributeTypeAndValue), as type OID and string value. */
function attributeValues(der: Buffer, name: DerElement): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = []
  for (const set of derChildren(der, name)) {
    if (set.tag !== 0x31) throw new Error('a Name holds something other than a SET')
    for (const pair of derChildren(der, set)) {
      const [type, value] = derChildren(der, pair)
      if (pair.tag !== 0x30 || type?.tag !== 0x06 || value === undefined) {
        throw new Error('a Name holds a malformed attribute')
      }
      const typeOid = oidOf(der, type)
      if (typeOid === oid.commonName || typeOid === oid.organizationName) {
        out.push({
          type: typeOid,
          value: decodeString(value.tag, der.subarray(value.contentStart, value.end)),
        })
      }
    }
  }
  return out
}

function decodeString(tag: number, contents: Buffer): string {
  switch (tag) {
    case 0x0c: // UTF8String
      return new TextDecoder('utf-8', { fatal: true }).decode(contents)
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString, read as Latin-1 as Go and OpenSSL do
      return contents.toString('latin1')
    case 0x1e: // BMPString, UTF-16 big-endian
      return new TextDecoder('utf-16be', { fatal: true }).decode(contents)
    default:
      throw new Error(`a name attribute has an unsupported string type (tag 0x${tag.toString(16)})`)
  }
}

/** Whether the attributes' extensionRequest asks for basicConstraints cA=TRUE. */
function requestsCa(der: Buffer, attributes: DerElement): boolean {
  for (const attribute of derChildren(der, attributes)) {
    const [type, values] = derChildren(der, attribute)
    if (type?.tag !== 0x06 || values?.tag !== 0x31 || oidOf(der, type) !== oid.extensionRequest) continue
    for (const extensions of derChildren(der, values)) {
      for (const extension of derChildren(der, extensions)) {
        const parts = derChildren(der, extension)
        const [extensionId] = parts
        const value = parts[parts.length - 1]
        if (extensionId?.tag !== 0x06 || value?.tag !== 0x04) continue
        if (oidOf(der, extensionId) !== oid.basicConstraints) continue
        const constraints = readTlv(der, value.contentStart)
        const [cA] = derChildren(der, constraints)
        if (cA?.tag === 0x01 && der[cA.contentStart] !== 0) return true
      }
    }
  }
  return false
}
