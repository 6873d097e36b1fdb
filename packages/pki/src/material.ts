import { type MasterKeyring, openPrivateKey, type SealedPrivateKey, sealPrivateKey } from './envelope.ts'
import { PkiError, PkiErrorCode } from './errors.ts'
import type { KeyPair } from './keys.ts'
import { type MaterialKind, materialKindOf, type Purpose } from './purposes.ts'
import type { CertificateAndKey } from './x509.ts'

/** What is kept per cluster and purpose: the public half in clear, the private key sealed. */
export type StoredMaterial =
  | { kind: 'certificate'; certPem: string; sealedKey: SealedPrivateKey }
  | { kind: 'key-pair'; publicKeyPem: string; sealedKey: SealedPrivateKey }

/** Storage for PKI material, one entry per cluster and purpose; implemented by packages/db. */
export interface PkiStore {
  get(clusterId: string, purpose: Purpose): Promise<StoredMaterial | undefined>
  /** Stores `material` unless an entry exists; returns whichever entry is stored afterwards. */
  insertIfAbsent(clusterId: string, purpose: Purpose, material: StoredMaterial): Promise<StoredMaterial>
}

/**
 * The material for a purpose, generated on first use. Safe to race: two callers may both generate,
 * but insertIfAbsent keeps one and both return it, so a cluster never ends up with two CAs.
 */
export async function lookupOrGenerate(
  store: PkiStore,
  clusterId: string,
  purpose: Purpose,
  generate: () => Promise<StoredMaterial> | StoredMaterial,
): Promise<StoredMaterial> {
  const existing = await store.get(clusterId, purpose)
  if (existing !== undefined) return expectKind(existing, materialKindOf(purpose), purpose)
  const generated = expectKind(await generate(), materialKindOf(purpose), purpose)
  return expectKind(
    await store.insertIfAbsent(clusterId, purpose, generated),
    materialKindOf(purpose),
    purpose,
  )
}

/**
 * Seals the private key, bound to the cluster, purpose and generation it belongs to (a CA rotation
 * adds generation 2, 3 …; the first generation's context predates rotation and stays as it was).
 */
export function sealMaterial(
  clusterId: string,
  purpose: Purpose,
  material: CertificateAndKey | KeyPair,
  keyring: MasterKeyring,
  generation = 1,
): StoredMaterial {
  const context = sealingContext(clusterId, purpose, generation)
  const stored: StoredMaterial =
    'certPem' in material
      ? {
          kind: 'certificate',
          certPem: material.certPem,
          sealedKey: sealPrivateKey(material.keyPem, keyring, context),
        }
      : {
          kind: 'key-pair',
          publicKeyPem: material.publicKeyPem,
          sealedKey: sealPrivateKey(material.privateKeyPem, keyring, context),
        }
  return expectKind(stored, materialKindOf(purpose), purpose)
}

export function openCertificate(
  clusterId: string,
  purpose: Purpose,
  stored: StoredMaterial,
  keyring: MasterKeyring,
  generation = 1,
): CertificateAndKey {
  const material = expectKind(stored, 'certificate', purpose)
  return {
    certPem: material.certPem,
    keyPem: openPrivateKey(material.sealedKey, keyring, sealingContext(clusterId, purpose, generation)),
  }
}

export function openKeyPair(
  clusterId: string,
  purpose: Purpose,
  stored: StoredMaterial,
  keyring: MasterKeyring,
): KeyPair {
  const material = expectKind(stored, 'key-pair', purpose)
  return {
    publicKeyPem: material.publicKeyPem,
    privateKeyPem: openPrivateKey(material.sealedKey, keyring, sealingContext(clusterId, purpose)),
  }
}

const sealingContext = (clusterId: string, purpose: Purpose, generation = 1) => {
  if (!Number.isInteger(generation) || generation < 1) {
    throw new PkiError(
      PkiErrorCode.invalidRequest,
      `generation must be a positive whole number, got ${generation}.`,
    )
  }
  return generation === 1 ? `${clusterId}/${purpose}` : `${clusterId}/${purpose}#${generation}`
}

function expectKind<K extends MaterialKind>(
  material: StoredMaterial,
  kind: K,
  purpose: Purpose,
): Extract<StoredMaterial, { kind: K }> {
  if (material.kind !== kind) {
    throw new PkiError(
      PkiErrorCode.materialKindMismatch,
      `Material for '${purpose}' must be a ${kind}, got a ${material.kind}.`,
    )
  }
  return material as Extract<StoredMaterial, { kind: K }>
}

/** Material as a store keeps it: one public PEM column (certificate or public key) and the sealed key. */
export interface MaterialRecord {
  kind: MaterialKind
  publicPem: string
  sealedKey: unknown
}

export const materialFromRecord = (record: MaterialRecord): StoredMaterial =>
  record.kind === 'certificate'
    ? { kind: 'certificate', certPem: record.publicPem, sealedKey: record.sealedKey as SealedPrivateKey }
    : { kind: 'key-pair', publicKeyPem: record.publicPem, sealedKey: record.sealedKey as SealedPrivateKey }

export const recordFromMaterial = (material: StoredMaterial): MaterialRecord => ({
  kind: material.kind,
  publicPem: material.kind === 'certificate' ? material.certPem : material.publicKeyPem,
  sealedKey: material.sealedKey,
})
