/**
 * Every piece of PKI material a cluster owns has a named purpose, as in Cluster API's util/secret:
 * the purpose is the storage key (one per cluster) and decides what kind of material it is.
 */
export const Purpose = {
  /** Signs the API server's serving certificate and every client certificate users and kubelets present. */
  clusterCa: 'cluster-ca',
  /** Signs etcd's serving and peer certificates and the API server's etcd client certificate. */
  etcdCa: 'etcd-ca',
  /** Signs the client certificate the API server presents to aggregated API servers. */
  frontProxyCa: 'front-proxy-ca',
  /** Not a certificate: the key pair that signs and verifies service account tokens. */
  serviceAccount: 'service-account',
  /** The cluster-admin client certificate in the kubeconfig Kiln hands out. */
  admin: 'admin',
} as const
export type Purpose = (typeof Purpose)[keyof typeof Purpose]

export type CertificateAuthorityPurpose =
  | typeof Purpose.clusterCa
  | typeof Purpose.etcdCa
  | typeof Purpose.frontProxyCa

export const certificateAuthorityPurposes: readonly CertificateAuthorityPurpose[] = [
  Purpose.clusterCa,
  Purpose.etcdCa,
  Purpose.frontProxyCa,
]

export type MaterialKind = 'certificate' | 'key-pair'

export const materialKindOf = (purpose: Purpose): MaterialKind =>
  purpose === Purpose.serviceAccount ? 'key-pair' : 'certificate'
