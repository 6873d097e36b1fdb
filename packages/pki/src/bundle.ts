import { parseCertificate } from './certificate-info.ts'
import { PkiError, PkiErrorCode } from './errors.ts'

const certificateBlock = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g

/**
 * One PEM bundle of CA certificates, in order, without duplicates. During CA rotation clients must
 * trust both the old and the new CA, so every consumer of CA data takes a bundle. Inputs may be
 * bundles themselves. Anything but certificates is refused: a private key pasted into a bundle
 * would be handed to every client.
 */
export function caBundle(certsPem: readonly string[]): string {
  const seen = new Set<string>()
  const certificates: string[] = []
  for (const pem of certsPem) {
    const blocks = pem.match(certificateBlock) ?? []
    const rest = pem.replace(certificateBlock, '').trim()
    if (blocks.length === 0 || rest !== '') {
      throw new PkiError(
        PkiErrorCode.certificateInvalid,
        'A CA bundle entry must hold only PEM CERTIFICATE blocks' +
          (rest.includes('-----BEGIN') ? `; found ${rest.match(/-----BEGIN [^-]+-----/)?.[0]}.` : '.'),
      )
    }
    for (const block of blocks) {
      const certificate = parseCertificate(block)
      if (seen.has(certificate.fingerprint256)) continue
      seen.add(certificate.fingerprint256)
      certificates.push(certificate.toString().trim())
    }
  }
  if (certificates.length === 0)
    throw new PkiError(PkiErrorCode.invalidRequest, 'A CA bundle needs at least one certificate.')
  return certificates.map((certificate) => `${certificate}\n`).join('')
}
