// Named exports only: signing internals carry node-forge types, and node-forge stays inside this package.
export { caBundle } from './bundle.ts'
export { type GenerateCertificateAuthorityRequest, generateCertificateAuthority } from './ca.ts'
export {
  type CertificateInfo,
  certificateInfo,
  type DistinguishedName,
  fingerprintSha256,
} from './certificate-info.ts'
export {
  type CertificateUsage,
  type IssueCertificateRequest,
  type IssuedCertificate,
  issueCertificate,
} from './certificates.ts'
export {
  type AuthorityRecord,
  type AuthorityRole,
  type AuthorityStore,
  authorityRole,
  type ClusterClientCertificate,
  type ClusterTrust,
  type CsrClientCertificateRequest,
  clusterTrust,
  issueClusterClientCertificate,
  loadClusterTrust,
  type NewClientCertificateRequest,
  openAuthority,
  type PublicAuthorityRecord,
} from './cluster-authority.ts'
export { type SignCsrRequest, type SignedCertificate, signCsr } from './csr.ts'
export {
  developmentMasterKeyBase64,
  keyringKeys,
  type MasterKey,
  type MasterKeyring,
  type MasterKeySettings,
  masterKeyFromSettings,
  masterKeyringFromSettings,
  openPrivateKey,
  parseMasterKey,
  rewrapPrivateKey,
  type SealedPrivateKey,
  sealingKey,
  sealPrivateKey,
} from './envelope.ts'
export { PkiError, PkiErrorCode } from './errors.ts'
export { generateServiceAccountKeyPair, type KeyPair } from './keys.ts'
export { type RenderKubeconfigRequest, renderKubeconfig } from './kubeconfig.ts'
export {
  lookupOrGenerate,
  type MaterialRecord,
  materialFromRecord,
  openCertificate,
  openKeyPair,
  type PkiStore,
  recordFromMaterial,
  type StoredMaterial,
  sealMaterial,
} from './material.ts'
export {
  type CertificateAuthorityPurpose,
  certificateAuthorityPurposes,
  type MaterialKind,
  materialKindOf,
  Purpose,
} from './purposes.ts'
export type { CertificateAndKey, SubjectName } from './x509.ts'
