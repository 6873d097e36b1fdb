import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { generateServiceAccountKeyPair } from '../src/index.ts'

describe('generateServiceAccountKeyPair', () => {
  it('gives an ECDSA P-256 pair in the encodings kube-apiserver reads, which signs and verifies tokens', async () => {
    const pair = await generateServiceAccountKeyPair()
    expect(pair.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    expect(pair.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/)
    const privateKey = createPrivateKey(pair.privateKeyPem)
    expect(privateKey.asymmetricKeyType).toBe('ec')
    expect(privateKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    // ES256, as service account tokens are then signed.
    const signature = sign('sha256', Buffer.from('header.payload'), privateKey)
    expect(
      verify('sha256', Buffer.from('header.payload'), createPublicKey(pair.publicKeyPem), signature),
    ).toBe(true)
    const other = await generateServiceAccountKeyPair()
    expect(
      verify('sha256', Buffer.from('header.payload'), createPublicKey(other.publicKeyPem), signature),
    ).toBe(false)
  })
})
