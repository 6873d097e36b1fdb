import { randomBytes } from 'node:crypto'
import { inspect } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import {
  developmentMasterKeyBase64,
  generateServiceAccountKeyPair,
  type MasterKey,
  masterKeyringFromSettings,
  openPrivateKey,
  PkiErrorCode,
  parseMasterKey,
  rewrapPrivateKey,
  type SealedPrivateKey,
  sealPrivateKey,
} from '../src/index.ts'

const newMasterKey = () => parseMasterKey(randomBytes(32).toString('base64'))

/** Flips one bit of a base64 field. */
function flipBit(
  sealed: SealedPrivateKey,
  field: keyof Omit<SealedPrivateKey, 'v' | 'kid'>,
): SealedPrivateKey {
  const bytes = Buffer.from(sealed[field], 'base64')
  bytes[bytes.length - 1]! ^= 0x01
  return { ...sealed, [field]: bytes.toString('base64') }
}

let keyPem: string
let masterKey: MasterKey
beforeAll(async () => {
  keyPem = (await generateServiceAccountKeyPair()).privateKeyPem
  masterKey = newMasterKey()
})

describe('parseMasterKey', () => {
  it('reads 32 base64 bytes and derives a stable key id', () => {
    const base64 = randomBytes(32).toString('base64')
    const key = parseMasterKey(`${base64}\n`)
    expect(key.kid).toMatch(/^[0-9a-f]{16}$/)
    expect(parseMasterKey(base64).kid).toBe(key.kid)
    expect(newMasterKey().kid).not.toBe(key.kid)
  })

  it('does not print the key when logged or serialized', () => {
    const base64 = randomBytes(32).toString('base64')
    const key = parseMasterKey(base64)
    expect(JSON.stringify(key)).not.toContain(base64)
    expect(inspect(key)).not.toContain(base64)
    expect(inspect(key)).not.toContain(key.bytes.toString('hex').slice(0, 16))
  })

  it('names the problem with a key of the wrong length or encoding', () => {
    expect(() => parseMasterKey(randomBytes(16).toString('base64'))).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.masterKeyInvalid,
        message: expect.stringMatching(/16 bytes.*32/),
      }),
    )
    expect(() => parseMasterKey(randomBytes(33).toString('base64'))).toThrow(/33 bytes/)
    expect(() => parseMasterKey('not base64!')).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.masterKeyInvalid,
        message: expect.stringMatching(/base64/),
      }),
    )
    expect(() => parseMasterKey('')).toThrow(expect.objectContaining({ code: PkiErrorCode.masterKeyInvalid }))
  })
})

describe('sealPrivateKey and openPrivateKey', () => {
  it('round-trip', () => {
    const sealed = sealPrivateKey(keyPem, masterKey, 'cluster-1/cluster-ca')
    expect(sealed.v).toBe(1)
    expect(sealed.kid).toBe(masterKey.kid)
    expect(openPrivateKey(sealed, masterKey, 'cluster-1/cluster-ca')).toBe(keyPem)
  })

  it('uses 96-bit nonces, 128-bit tags and a 256-bit data key', () => {
    const sealed = sealPrivateKey(keyPem, masterKey)
    expect(Buffer.from(sealed.nonce, 'base64')).toHaveLength(12)
    expect(Buffer.from(sealed.wrapNonce, 'base64')).toHaveLength(12)
    expect(Buffer.from(sealed.tag, 'base64')).toHaveLength(16)
    expect(Buffer.from(sealed.wrapTag, 'base64')).toHaveLength(16)
    expect(Buffer.from(sealed.wrappedKey, 'base64')).toHaveLength(32)
  })

  it('seals the same key differently every time', () => {
    const first = sealPrivateKey(keyPem, masterKey)
    const second = sealPrivateKey(keyPem, masterKey)
    expect(second.nonce).not.toBe(first.nonce)
    expect(second.wrapNonce).not.toBe(first.wrapNonce)
    expect(second.wrappedKey).not.toBe(first.wrappedKey)
    expect(second.ciphertext).not.toBe(first.ciphertext)
  })

  it('holds no plaintext', () => {
    const serialized = JSON.stringify(sealPrivateKey(keyPem, masterKey))
    expect(serialized).not.toContain('PRIVATE KEY')
    const body = keyPem.split('\n').slice(1, -2)
    for (const line of body) expect(serialized).not.toContain(line.slice(0, 24))
    expect(serialized).not.toContain(Buffer.from(keyPem).toString('base64').slice(0, 40))
  })

  it('refuses to open with a master key it was not sealed with', () => {
    const sealed = sealPrivateKey(keyPem, masterKey)
    expect(() => openPrivateKey(sealed, newMasterKey())).toThrow(
      expect.objectContaining({
        code: PkiErrorCode.masterKeyUnknown,
        message: expect.stringContaining(masterKey.kid),
      }),
    )
    // A sealed key whose kid was edited to point at another master key still does not open.
    const other = newMasterKey()
    expect(() => openPrivateKey({ ...sealed, kid: other.kid }, other)).toThrow(
      expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
    )
  })

  it('refuses to open in another context', () => {
    const sealed = sealPrivateKey(keyPem, masterKey, 'cluster-1/cluster-ca')
    expect(() => openPrivateKey(sealed, masterKey, 'cluster-2/cluster-ca')).toThrow(
      expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
    )
  })

  it.each(['ciphertext', 'tag', 'nonce', 'wrappedKey', 'wrapTag', 'wrapNonce'] as const)(
    'detects a flipped bit in %s',
    (field) => {
      const sealed = sealPrivateKey(keyPem, masterKey)
      expect(() => openPrivateKey(flipBit(sealed, field), masterKey)).toThrow(
        expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
      )
    },
  )

  it('refuses truncated tags, garbage fields and unknown versions', () => {
    const sealed = sealPrivateKey(keyPem, masterKey)
    const shortTag = Buffer.from(sealed.tag, 'base64').subarray(0, 12).toString('base64')
    for (const broken of [
      { ...sealed, tag: shortTag },
      { ...sealed, ciphertext: sealed.ciphertext.slice(0, 40) },
      { ...sealed, wrappedKey: '***' },
      { ...sealed, v: 2 as 1 },
    ]) {
      expect(() => openPrivateKey(broken, masterKey)).toThrow(
        expect.objectContaining({ code: PkiErrorCode.sealedKeyCorrupt }),
      )
    }
  })
})

describe('rewrapPrivateKey', () => {
  it('moves a sealed key to a new master key without re-encrypting it', () => {
    const sealed = sealPrivateKey(keyPem, masterKey, 'c/admin')
    const next = newMasterKey()
    const rewrapped = rewrapPrivateKey(sealed, [next, masterKey], next)
    expect(rewrapped.kid).toBe(next.kid)
    expect(rewrapped.ciphertext).toBe(sealed.ciphertext)
    expect(rewrapped.wrappedKey).not.toBe(sealed.wrappedKey)
    expect(openPrivateKey(rewrapped, next, 'c/admin')).toBe(keyPem)
    expect(openPrivateKey(rewrapped, [masterKey, next], 'c/admin')).toBe(keyPem)
    expect(() => openPrivateKey(rewrapped, masterKey, 'c/admin')).toThrow(
      expect.objectContaining({ code: PkiErrorCode.masterKeyUnknown }),
    )
  })
})

describe('masterKeyringFromSettings', () => {
  const a = randomBytes(32).toString('base64')
  const b = randomBytes(32).toString('base64')
  const kid = (base64: string) => parseMasterKey(base64).kid

  it('reads KILN_MASTER_KEYS newest first, and the first seals', () => {
    const { keyring, development } = masterKeyringFromSettings({ masterKeys: ` ${b} , ${a}`, devMode: true })
    expect(development).toBe(false)
    expect(keyring.map((k) => k.kid)).toEqual([kid(b), kid(a)])
    const sealed = sealPrivateKey(keyPem, keyring, 'ctx')
    expect(sealed.kid).toBe(kid(b))
    expect(openPrivateKey(sealPrivateKey(keyPem, parseMasterKey(a), 'ctx'), keyring, 'ctx')).toBe(keyPem)
  })

  it('still accepts KILN_MASTER_KEY alone, and dev mode keeps the development key', () => {
    expect(masterKeyringFromSettings({ masterKey: a, devMode: false }).keyring.map((k) => k.kid)).toEqual([
      kid(a),
    ])
    const dev = masterKeyringFromSettings({ devMode: true })
    expect(dev).toMatchObject({ development: true })
    expect(dev.keyring.map((k) => k.kid)).toEqual([kid(developmentMasterKeyBase64)])
  })

  it('refuses no key outside dev mode, both variables, a bad entry, a repeated key and an empty list', () => {
    const refused = (settings: Parameters<typeof masterKeyringFromSettings>[0], message: RegExp) =>
      expect(() => masterKeyringFromSettings(settings)).toThrow(
        expect.objectContaining({
          code: PkiErrorCode.masterKeyInvalid,
          message: expect.stringMatching(message),
        }),
      )
    refused({ devMode: false }, /KILN_MASTER_KEYS: required outside dev mode/)
    refused({ masterKeys: a, masterKey: b, devMode: false }, /not both/)
    refused({ masterKeys: `${a},not-a-key`, devMode: false }, /KILN_MASTER_KEYS: key 2: .*base64/)
    refused({ masterKeys: `${a},${a}`, devMode: false }, /same key twice/)
    refused({ masterKeys: ' , ', devMode: true }, /lists no key/)
  })
})
