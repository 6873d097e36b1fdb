import { createHash, X509Certificate } from 'node:crypto'
import { errorMessage, PkiError, PkiErrorCode } from './errors.ts'

/** The parts of a distinguished name Kubernetes reads: the user (CN) and groups (O). */
export interface DistinguishedName {
  commonName: string | undefined
  organizations: string[]
}

export interface CertificateInfo {
  subject: DistinguishedName
  issuer: DistinguishedName
  /** Lowercase hex. */
  serialNumber: string
  notBefore: Date
  notAfter: Date
  isCertificateAuthority: boolean
  dnsNames: string[]
  ipAddresses: string[]
  fingerprintSha256: string
}

/** Parses exactly one certificate with node's OpenSSL, which reads every key type (forge reads RSA only). */
export function parseCertificate(certPem: string): X509Certificate {
  const blocks = certPem.match(/-----BEGIN [^-]+-----/g) ?? []
  if (blocks.length !== 1 || blocks[0] !== '-----BEGIN CERTIFICATE-----') {
    throw new PkiError(
      PkiErrorCode.certificateInvalid,
      `Expected exactly one PEM CERTIFICATE block, found ${blocks.length === 0 ? 'none' : blocks.join(', ')}.`,
    )
  }
  try {
    return new X509Certificate(certPem)
  } catch (cause) {
    throw new PkiError(
      PkiErrorCode.certificateInvalid,
      `The certificate cannot be read: ${errorMessage(cause)}`,
      {
        cause,
      },
    )
  }
}

/** SHA-256 of the DER certificate, lowercase hex without colons. */
export function fingerprintSha256(certPem: string): string {
  return createHash('sha256').update(parseCertificate(certPem).raw).digest('hex')
}

export function certificateInfo(certPem: string): CertificateInfo {
  const cert = parseCertificate(certPem)
  const altNames = splitSubjectAltName(cert.subjectAltName)
  return {
    subject: distinguishedName(cert.subject),
    issuer: distinguishedName(cert.issuer),
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    isCertificateAuthority: cert.ca,
    dnsNames: altNames.filter((name) => name.startsWith('DNS:')).map((name) => name.slice('DNS:'.length)),
    ipAddresses: altNames
      .filter((name) => name.startsWith('IP Address:'))
      .map((name) => name.slice('IP Address:'.length)),
    fingerprintSha256: createHash('sha256').update(cert.raw).digest('hex'),
  }
}

/** Node prints names one attribute per line, values escaped as in RFC 2253 (`\,`, `\0A`). */
function distinguishedName(multiline: string): DistinguishedName {
  const attributes = multiline
    .split('\n')
    .filter((line) => line.includes('='))
    .map((line) => {
      const separator = line.indexOf('=')
      return { type: line.slice(0, separator), value: unescapeRfc2253(line.slice(separator + 1)) }
    })
  return {
    commonName: attributes.find((attribute) => attribute.type === 'CN')?.value,
    organizations: attributes
      .filter((attribute) => attribute.type === 'O')
      .map((attribute) => attribute.value),
  }
}

const unescapeRfc2253 = (value: string): string =>
  value.replace(/\\([0-9A-Fa-f]{2}|[\s\S])/g, (_, escaped: string) =>
    escaped.length === 2 ? String.fromCharCode(Number.parseInt(escaped, 16)) : escaped,
  )

/** Node joins entries with ', ' and quotes (as JSON) any value that holds a comma or quote. */
function splitSubjectAltName(subjectAltName: string | undefined): string[] {
  if (subjectAltName === undefined) return []
  const entry = /([^:,]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y
  const entries: string[] = []
  for (
    let match = entry.exec(subjectAltName);
    match !== null && match[0] !== '';
    match = entry.exec(subjectAltName)
  ) {
    const value = match[2]!
    entries.push(`${match[1]}:${value.startsWith('"') ? (JSON.parse(value) as string) : value}`)
  }
  return entries
}
