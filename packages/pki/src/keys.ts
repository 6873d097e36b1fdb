import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'

export interface KeyPair {
  publicKeyPem: string
  privateKeyPem: string
}

const generateKeyPairAsync = promisify(generateKeyPair)

/**
 * RSA 2048 keys come from node's OpenSSL, not node-forge: forge's pure-JS key generation takes
 * seconds per key and blocks the event loop; OpenSSL takes tens of milliseconds on the libuv pool.
 * Encodings match kubeadm's: PKCS#1 private keys, SubjectPublicKeyInfo public keys.
 */
export async function generateRsaKeyPair(): Promise<KeyPair> {
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicExponent: 0x10001,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
  })
  return { publicKeyPem: publicKey, privateKeyPem: privateKey }
}

/** The key pair kube-apiserver signs service account tokens with (--service-account-signing-key-file) and verifies them with. */
export const generateServiceAccountKeyPair = (): Promise<KeyPair> => generateRsaKeyPair()
