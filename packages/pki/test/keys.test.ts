import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { generateServiceAccountKeyPair } from '../src/index.ts'

describe('generateServiceAccountKeyPair', () => {
  it('gives an RSA 2048 pair in the encodings kube-apiserver reads, which signs and verifies tokens', async () => {
    const pair = await generateServiceAccountKeyPair()
    expect(pair.privateKeyPem).toMatch(/^-----BEGIN RSA PRIVATE KEY-----\n/)
    expect(pair.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----\n/)
    const privateKey = createPrivateKey(pair.privateKeyPem)
    expect(privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048)
    // RS256, as service account tokens are signed.
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
