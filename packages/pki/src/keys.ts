import { generateKeyPair } from 'node:crypto'
import { promisify } from 'node:util'

export interface KeyPair {
  publicKeyPem: string
  privateKeyPem: string
}

const generateKeyPairAsync = promisify(generateKeyPair)

/**
 * ECDSA P-256 keys from node's OpenSSL (kubeadm's `encryptionAlgorithm: ECDSA-P256`): a fraction of a
 * millisecond each, where RSA 2048 costs over a hundred. Kubernetes accepts P-256 for CAs, serving and
 * client certificates and service account tokens (ES256). PKCS#8 private keys, SubjectPublicKeyInfo public keys.
 */
export async function generateEcKeyPair(): Promise<KeyPair> {
  const { publicKey, privateKey } = await generateKeyPairAsync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  })
  return { publicKeyPem: publicKey, privateKeyPem: privateKey }
}

/** The key pair kube-apiserver signs service account tokens with (--service-account-signing-key-file, ES256) and verifies them with. */
export const generateServiceAccountKeyPair = (): Promise<KeyPair> => generateEcKeyPair()
