/** The closed set of reasons this package refuses or fails; callers branch on `code`, never on messages. */
export const PkiErrorCode = {
  /** An argument is out of range or malformed (a TTL of 0, an empty common name, a bad IP address). */
  invalidRequest: 'invalid-request',
  /** The CA certificate or key cannot be parsed, is not a CA, or the key does not belong to the certificate. */
  caInvalid: 'ca-invalid',
  /** The cluster has no CA for the purpose (yet): its create operation has not issued one. */
  caMissing: 'ca-missing',
  /** The CA's validity ended before the requested issuance time. */
  caExpired: 'ca-expired',
  /** The CSR cannot be parsed or its self-signature does not verify. */
  csrInvalid: 'csr-invalid',
  /** The CSR is well-formed but asks for something we do not grant (a CA, a group, a weak key). */
  csrRefused: 'csr-refused',
  certificateInvalid: 'certificate-invalid',
  masterKeyInvalid: 'master-key-invalid',
  /** A sealed key names a master key id that is not in the keyring. */
  masterKeyUnknown: 'master-key-unknown',
  /** A sealed key failed authentication: tampered, truncated, or opened with the wrong key or context. */
  sealedKeyCorrupt: 'sealed-key-corrupt',
  /** Stored material is a certificate where a key pair was expected, or the reverse. */
  materialKindMismatch: 'material-kind-mismatch',
} as const
export type PkiErrorCode = (typeof PkiErrorCode)[keyof typeof PkiErrorCode]

export class PkiError extends Error {
  readonly code: PkiErrorCode

  constructor(code: PkiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PkiError'
    this.code = code
  }
}

/** node-forge throws plain Errors (and sometimes strings); PkiError messages quote them. */
export const errorMessage = (error: unknown): string =>
  error instanceof Error ? error.message : String(error)
