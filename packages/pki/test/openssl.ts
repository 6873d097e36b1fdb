import { execFileSync } from 'node:child_process'

/** OpenSSL's command line, when installed, reads what node's X509Certificate does not expose (key usage bits, criticality). */
// openssl and kubectl are installed by scripts/test-tools.sh: these tests never skip.

export function opensslExtensions(certPem: string): string {
  return execFileSync(
    'openssl',
    [
      'x509',
      '-noout',
      '-ext',
      'basicConstraints,keyUsage,extendedKeyUsage,subjectAltName,subjectKeyIdentifier,authorityKeyIdentifier',
    ],
    { input: certPem, encoding: 'utf8' },
  )
}

/** The value lines under one extension heading, e.g. `X509v3 Key Usage: critical`. */
export function extension(text: string, heading: string): { critical: boolean; value: string } | undefined {
  const lines = text.split('\n')
  const index = lines.findIndex((line) => line.startsWith(`X509v3 ${heading}:`))
  if (index === -1) return undefined
  return { critical: lines[index]!.includes('critical'), value: (lines[index + 1] ?? '').trim() }
}
