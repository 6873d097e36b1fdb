/** A kind an add-on may produce, with what the API server needs to address it (no discovery). */
export interface AddonKind {
  apiVersion: string
  kind: string
  /** The resource's URL segment. */
  plural: string
  namespaced: boolean
}

/**
 * Every kind any add-on may produce, in the order they are applied within a phase (and pruned in
 * reverse). Pruning lists exactly these kinds, so a planner that emitted another kind would leave it
 * behind when it went away: the reconciler refuses objects of kinds not listed here.
 */
export const addonKinds: readonly AddonKind[] = [
  { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRole',
    plural: 'clusterroles',
    namespaced: false,
  },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'ClusterRoleBinding',
    plural: 'clusterrolebindings',
    namespaced: false,
  },
  { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
  { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', plural: 'roles', namespaced: true },
  {
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    plural: 'rolebindings',
    namespaced: true,
  },
  { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps', namespaced: true },
  { apiVersion: 'v1', kind: 'Service', plural: 'services', namespaced: true },
  { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', plural: 'ingressclasses', namespaced: false },
  { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments', namespaced: true },
  { apiVersion: 'apps/v1', kind: 'DaemonSet', plural: 'daemonsets', namespaced: true },
  { apiVersion: 'apps/v1', kind: 'StatefulSet', plural: 'statefulsets', namespaced: true },
]

/** The API group of an apiVersion: '' for the core group (`v1`), `apps` for `apps/v1`. */
export const apiGroupOf = (apiVersion: string): string =>
  apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : ''

/** The addonKinds entry for an apiVersion and kind. */
export const addonKindOf = (apiVersion: string, kind: string): AddonKind | undefined =>
  addonKinds.find((k) => k.apiVersion === apiVersion && k.kind === kind)
