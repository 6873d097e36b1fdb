import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto'
import { PkiError, PkiErrorCode } from './errors.ts'

/**
 * A private key at rest, envelope-encrypted: a fresh data key encrypts the PEM, the master key
 * encrypts (wraps) the data key. Rotating the master key rewraps 32 bytes per key and leaves the
 * ciphertext alone. Both layers are AES-256-GCM; binary fields are base64.
 */
export interface SealedPrivateKey {
  v: 1
  /** Which master key wrapped the data key. */
  kid: string
  wrapNonce: string
  wrappedKey: string
  wrapTag: string
  nonce: string
  ciphertext: string
  tag: string
}

/** A 256-bit key-encryption key with its id. The bytes are non-enumerable, so logging a MasterKey does not print them. */
export interface MasterKey {
  readonly kid: string
  readonly bytes: Buffer
}

const keyBytes = 32
const nonceBytes = 12
const tagBytes = 16

/**
 * Reads a master key from base64 (e.g. `openssl rand -base64 32`). The key id is derived from the key,
 * so configuration needs no separate id, and a sealed key names the master key it needs.
 */
export function parseMasterKey(base64: string): MasterKey {
  const text = base64.trim()
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new PkiError(
      PkiErrorCode.masterKeyInvalid,
      'The master key is not valid base64; generate one with `openssl rand -base64 32`.',
    )
  }
  const bytes = Buffer.from(text, 'base64')
  if (bytes.length !== keyBytes) {
    throw new PkiError(
      PkiErrorCode.masterKeyInvalid,
      `The master key decodes to ${bytes.length} bytes; AES-256 needs exactly ${keyBytes}. ` +
        'Generate one with `openssl rand -base64 32`.',
    )
  }
  // A hash of the key under a fixed label: it identifies the key without revealing anything usable about it.
  const kid = createHash('sha256').update('kiln-pki-master-key-id\0').update(bytes).digest('hex').slice(0, 16)
  const masterKey = { kid } as MasterKey
  Object.defineProperty(masterKey, 'bytes', { value: bytes, enumerable: false })
  return Object.freeze(masterKey)
}

/**
 * The current master key, or every master key still in use while they rotate, newest first: the
 * first seals, any of them opens.
 */
export type MasterKeyring = MasterKey | readonly MasterKey[]

/** Every key of a keyring, newest first. */
export const keyringKeys = (keyring: MasterKeyring): readonly MasterKey[] =>
  Array.isArray(keyring) ? keyring : [keyring as MasterKey]

/** The key that seals: the newest (first) of the keyring. */
export function sealingKey(keyring: MasterKeyring): MasterKey {
  const newest = keyringKeys(keyring)[0]
  if (newest === undefined) {
    throw new PkiError(PkiErrorCode.masterKeyInvalid, 'The master keyring is empty; nothing can seal.')
  }
  return newest
}

/**
 * `context` (e.g. the cluster id and purpose) is authenticated but not stored: a sealed key copied
 * to another cluster's row fails to open there.
 */
export function sealPrivateKey(keyPem: string, keyring: MasterKeyring, context = ''): SealedPrivateKey {
  const dataKey = randomBytes(keyBytes)
  try {
    const data = encrypt(dataKey, Buffer.from(keyPem, 'utf8'), dataAssociatedData(context))
    return {
      v: 1,
      ...wrapDataKey(dataKey, sealingKey(keyring)),
      nonce: data.nonce,
      ciphertext: data.ciphertext,
      tag: data.tag,
    }
  } finally {
    dataKey.fill(0)
  }
}

export function openPrivateKey(sealed: SealedPrivateKey, keyring: MasterKeyring, context = ''): string {
  const dataKey = unwrapDataKey(sealed, keyring)
  try {
    return decrypt(
      dataKey,
      { nonce: sealed.nonce, ciphertext: sealed.ciphertext, tag: sealed.tag },
      dataAssociatedData(context),
    ).toString('utf8')
  } finally {
    dataKey.fill(0)
  }
}

/** Master-key rotation: the same ciphertext, its data key wrapped by `masterKey`. */
export function rewrapPrivateKey(
  sealed: SealedPrivateKey,
  keyring: MasterKeyring,
  masterKey: MasterKey,
): SealedPrivateKey {
  const dataKey = unwrapDataKey(sealed, keyring)
  try {
    return { ...sealed, ...wrapDataKey(dataKey, masterKey) }
  } finally {
    dataKey.fill(0)
  }
}

// Versioned labels keep the two layers' ciphertexts from being swapped for each other.
const dataAssociatedData = (context: string) => Buffer.from(`kiln-pki-sealed-key/v1/data/${context}`, 'utf8')
const wrapAssociatedData = (kid: string) => Buffer.from(`kiln-pki-sealed-key/v1/wrap/${kid}`, 'utf8')

function wrapDataKey(dataKey: Buffer, masterKey: MasterKey) {
  const wrapped = encrypt(masterKey.bytes, dataKey, wrapAssociatedData(masterKey.kid))
  return {
    kid: masterKey.kid,
    wrapNonce: wrapped.nonce,
    wrappedKey: wrapped.ciphertext,
    wrapTag: wrapped.tag,
  }
}

function unwrapDataKey(sealed: SealedPrivateKey, keyring: MasterKeyring): Buffer {
  if (typeof sealed !== 'object' || sealed === null || sealed.v !== 1) {
    throw corrupt('The sealed key is not a version 1 sealed key.')
  }
  const masterKeys = keyringKeys(keyring)
  const masterKey = masterKeys.find((candidate) => candidate.kid === sealed.kid)
  if (masterKey === undefined) {
    throw new PkiError(
      PkiErrorCode.masterKeyUnknown,
      `The key was sealed with master key '${sealed.kid}', which is not configured (have: ${masterKeys.map((k) => k.kid).join(', ') || 'none'}).`,
    )
  }
  const dataKey = decrypt(
    masterKey.bytes,
    { nonce: sealed.wrapNonce, ciphertext: sealed.wrappedKey, tag: sealed.wrapTag },
    wrapAssociatedData(masterKey.kid),
  )
  if (dataKey.length !== keyBytes) throw corrupt('The sealed key holds a data key of the wrong length.')
  return dataKey
}

interface Encrypted {
  nonce: string
  ciphertext: string
  tag: string
}

function encrypt(key: Buffer, plaintext: Buffer, associatedData: Buffer): Encrypted {
  // A random 96-bit nonce per encryption; each data key encrypts once, and a master key would need
  // billions of wraps before a collision becomes plausible.
  const nonce = randomBytes(nonceBytes)
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: tagBytes })
  cipher.setAAD(associatedData)
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return {
    nonce: nonce.toString('base64'),
    ciphertext: ciphertext.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
  }
}

function decrypt(key: Buffer, encrypted: Encrypted, associatedData: Buffer): Buffer {
  const nonce = decodeBase64(encrypted.nonce)
  const tag = decodeBase64(encrypted.tag)
  const ciphertext = decodeBase64(encrypted.ciphertext)
  // Node accepts shorter GCM tags unless told the length; a truncated tag is easier to forge.
  if (nonce.length !== nonceBytes || tag.length !== tagBytes) {
    throw corrupt('The sealed key has a nonce or tag of the wrong length.')
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: tagBytes })
    decipher.setAAD(associatedData)
    decipher.setAuthTag(tag)
    return Buffer.concat([decipher.update(ciphertext), decipher.final()])
  } catch (cause) {
    throw new PkiError(
      PkiErrorCode.sealedKeyCorrupt,
      'The sealed key does not authenticate: it was altered, or is opened with the wrong master key or context.',
      { cause },
    )
  }
}

function decodeBase64(text: unknown): Buffer {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    throw corrupt('The sealed key has a field that is not base64.')
  }
  return Buffer.from(text, 'base64')
}

const corrupt = (message: string) => new PkiError(PkiErrorCode.sealedKeyCorrupt, message)

/**
 * A well-known key for local development only (dev mode): anything sealed with it is readable by
 * anyone who has this source code.
 */
export const developmentMasterKeyBase64 = createHash('sha256')
  .update('kiln development master key')
  .digest('base64')

/** What a process's configuration says about master keys (KILN_MASTER_KEYS, KILN_MASTER_KEY, KILN_DEV_MODE). */
export interface MasterKeySettings {
  /** KILN_MASTER_KEYS: comma-separated base64 keys, newest first. */
  masterKeys?: string | undefined
  /** KILN_MASTER_KEY: one key (the keyring before rotation existed). */
  masterKey?: string | undefined
  devMode: boolean
}

/**
 * The keyring a process runs with: KILN_MASTER_KEYS (newest first), else KILN_MASTER_KEY, else in
 * dev mode (only) the development key. Without any it refuses, naming the variables, so no process
 * starts with keys it cannot seal. Both variables at once are refused: which one wins would be a guess.
 */
export function masterKeyringFromSettings(settings: MasterKeySettings): {
  keyring: readonly MasterKey[]
  development: boolean
} {
  const invalid = (detail: string) =>
    new PkiError(PkiErrorCode.masterKeyInvalid, `Invalid configuration:\n  ${detail}`)
  if (settings.masterKeys && settings.masterKey) {
    throw invalid(
      '/KILN_MASTER_KEYS: set either KILN_MASTER_KEYS or KILN_MASTER_KEY, not both (KILN_MASTER_KEYS lists every key, newest first).',
    )
  }
  if (settings.masterKeys) {
    const keyring = settings.masterKeys
      .split(',')
      .map((text) => text.trim())
      .filter((text) => text.length > 0)
      .map((text, index) => {
        try {
          return parseMasterKey(text)
        } catch (error) {
          throw invalid(`/KILN_MASTER_KEYS: key ${index + 1}: ${(error as Error).message}`)
        }
      })
    if (keyring.length === 0) throw invalid('/KILN_MASTER_KEYS: lists no key.')
    const kids = keyring.map((key) => key.kid)
    if (new Set(kids).size !== kids.length) throw invalid('/KILN_MASTER_KEYS: lists the same key twice.')
    return { keyring, development: false }
  }
  if (settings.masterKey) return { keyring: [parseMasterKey(settings.masterKey)], development: false }
  if (settings.devMode) return { keyring: [parseMasterKey(developmentMasterKeyBase64)], development: true }
  throw invalid(
    '/KILN_MASTER_KEYS: required outside dev mode (32 random bytes, base64: `openssl rand -base64 32`; comma-separated, newest first, while keys rotate; KILN_MASTER_KEY for one key); set KILN_DEV_MODE=true only on a development machine.',
  )
}

/** The sealing key a process runs with (the newest of masterKeyringFromSettings). */
export function masterKeyFromSettings(settings: MasterKeySettings): {
  masterKey: MasterKey
  development: boolean
} {
  const { keyring, development } = masterKeyringFromSettings(settings)
  return { masterKey: sealingKey(keyring), development }
}
