import { type CrdSchema, schemaOf } from './crd-schema.ts'

// The resource types a simulated API server serves: the built-in ones below, plus whatever the
// cluster's CustomResourceDefinitions declare. Discovery, routing and storage all read this table,
// so a type added here is served, listed in discovery and stored without further code.

export interface ResourceType {
  /** '' for the core group. */
  group: string
  version: string
  /** Plural, as in URLs. */
  resource: string
  singular: string
  kind: string
  listKind: string
  namespaced: boolean
  shortNames?: string[]
  categories?: string[]
  subresources?: { status?: boolean; scale?: boolean }
  /** Not stored: computed from Kiln's books (nodes) or the workloads (pods of a controller). */
  readOnly?: boolean
  /** Additional printer columns of a CRD version, for `kubectl get`. */
  printerColumns?: PrinterColumn[]
  /** A CRD version's structural schema, compiled on first use (custom resources only). */
  schema?: () => CrdSchema | undefined
  /** The version a CRD's objects are stored in; each served version only changes apiVersion (conversion None). */
  storageVersion?: string
}

export interface PrinterColumn {
  name: string
  type: string
  jsonPath: string
  description?: string
  priority?: number
  format?: string
}

export const groupVersionOf = (t: Pick<ResourceType, 'group' | 'version'>) =>
  t.group === '' ? t.version : `${t.group}/${t.version}`

const builtin = (
  group: string,
  version: string,
  kind: string,
  resource: string,
  namespaced: boolean,
  extra: Partial<ResourceType> = {},
): ResourceType => ({
  group,
  version,
  resource,
  singular: kind.toLowerCase(),
  kind,
  listKind: `${kind}List`,
  namespaced,
  ...extra,
})

const workload = { categories: ['all'], subresources: { status: true, scale: true } }

export const builtinResources: readonly ResourceType[] = [
  builtin('', 'v1', 'Namespace', 'namespaces', false, { shortNames: ['ns'], subresources: { status: true } }),
  builtin('', 'v1', 'Node', 'nodes', false, { shortNames: ['no'], readOnly: true }),
  builtin('', 'v1', 'Pod', 'pods', true, {
    shortNames: ['po'],
    categories: ['all'],
    subresources: { status: true },
  }),
  builtin('', 'v1', 'Service', 'services', true, {
    shortNames: ['svc'],
    categories: ['all'],
    subresources: { status: true },
  }),
  builtin('', 'v1', 'Endpoints', 'endpoints', true, { shortNames: ['ep'] }),
  builtin('', 'v1', 'ConfigMap', 'configmaps', true, { shortNames: ['cm'] }),
  builtin('', 'v1', 'Secret', 'secrets', true),
  builtin('', 'v1', 'ServiceAccount', 'serviceaccounts', true, { shortNames: ['sa'] }),
  builtin('', 'v1', 'Event', 'events', true, { shortNames: ['ev'] }),
  builtin('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true, { shortNames: ['pvc'] }),
  builtin('', 'v1', 'PersistentVolume', 'persistentvolumes', false, { shortNames: ['pv'] }),
  builtin('', 'v1', 'LimitRange', 'limitranges', true, { shortNames: ['limits'] }),
  builtin('', 'v1', 'ResourceQuota', 'resourcequotas', true, { shortNames: ['quota'] }),
  builtin('apps', 'v1', 'Deployment', 'deployments', true, { shortNames: ['deploy'], ...workload }),
  builtin('apps', 'v1', 'DaemonSet', 'daemonsets', true, {
    shortNames: ['ds'],
    categories: ['all'],
    subresources: { status: true },
  }),
  builtin('apps', 'v1', 'StatefulSet', 'statefulsets', true, { shortNames: ['sts'], ...workload }),
  builtin('apps', 'v1', 'ReplicaSet', 'replicasets', true, { shortNames: ['rs'], ...workload }),
  builtin('batch', 'v1', 'Job', 'jobs', true, { categories: ['all'], subresources: { status: true } }),
  builtin('batch', 'v1', 'CronJob', 'cronjobs', true, {
    shortNames: ['cj'],
    categories: ['all'],
    subresources: { status: true },
  }),
  builtin('rbac.authorization.k8s.io', 'v1', 'Role', 'roles', true),
  builtin('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', true),
  builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', false),
  builtin('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false),
  builtin('networking.k8s.io', 'v1', 'Ingress', 'ingresses', true, {
    shortNames: ['ing'],
    subresources: { status: true },
  }),
  builtin('networking.k8s.io', 'v1', 'IngressClass', 'ingressclasses', false),
  builtin('networking.k8s.io', 'v1', 'NetworkPolicy', 'networkpolicies', true, { shortNames: ['netpol'] }),
  builtin('policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets', true, {
    shortNames: ['pdb'],
    subresources: { status: true },
  }),
  builtin('autoscaling', 'v2', 'HorizontalPodAutoscaler', 'horizontalpodautoscalers', true, {
    shortNames: ['hpa'],
    categories: ['all'],
    subresources: { status: true },
  }),
  builtin('scheduling.k8s.io', 'v1', 'PriorityClass', 'priorityclasses', false, { shortNames: ['pc'] }),
  builtin('storage.k8s.io', 'v1', 'StorageClass', 'storageclasses', false, { shortNames: ['sc'] }),
  builtin('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
  builtin('apiextensions.k8s.io', 'v1', 'CustomResourceDefinition', 'customresourcedefinitions', false, {
    shortNames: ['crd', 'crds'],
    categories: ['api-extensions'],
    subresources: { status: true },
  }),
  builtin('apiregistration.k8s.io', 'v1', 'APIService', 'apiservices', false, {
    categories: ['api-extensions'],
    subresources: { status: true },
  }),
]

interface CrdVersion {
  name?: unknown
  served?: unknown
  storage?: unknown
  subresources?: { status?: unknown; scale?: unknown }
  additionalPrinterColumns?: unknown
  schema?: { openAPIV3Schema?: unknown }
}

/** Kubernetes' version priority: GA before beta before alpha, higher numbers first, others last by name. */
function byVersionPriority(a: string, b: string): number {
  const rank = (v: string) => {
    const m = /^v(\d+)(?:(alpha|beta)(\d+))?$/.exec(v)
    if (!m) return undefined
    return [m[2] === undefined ? 2 : m[2] === 'beta' ? 1 : 0, Number(m[1]), Number(m[3] ?? 0)]
  }
  const [ra, rb] = [rank(a), rank(b)]
  if (!ra || !rb) return ra ? -1 : rb ? 1 : a.localeCompare(b)
  for (let i = 0; i < 3; i++) if (ra[i] !== rb[i]) return rb[i]! - ra[i]!
  return 0
}

/**
 * The resource types one CustomResourceDefinition serves (one per served version), in version
 * priority, so discovery prefers the version kube-apiserver would (v1beta2 over v1beta1).
 */
export function resourcesOfCrd(crd: Record<string, unknown>): ResourceType[] {
  const spec = (crd.spec ?? {}) as {
    group?: unknown
    scope?: unknown
    names?: {
      plural?: unknown
      singular?: unknown
      kind?: unknown
      listKind?: unknown
      shortNames?: unknown
      categories?: unknown
    }
    versions?: unknown
  }
  const names = spec.names ?? {}
  if (typeof spec.group !== 'string' || typeof names.plural !== 'string' || typeof names.kind !== 'string')
    return []
  const versions = Array.isArray(spec.versions) ? (spec.versions as CrdVersion[]) : []
  const storage = versions.find((v) => v.storage === true)?.name
  const meta = (crd.metadata ?? {}) as { uid?: unknown; resourceVersion?: unknown; name?: unknown }
  const strings = (v: unknown) =>
    Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string') : undefined
  return versions
    .filter((v) => typeof v.name === 'string' && v.served !== false)
    .map((v) => ({
      group: spec.group as string,
      version: v.name as string,
      resource: names.plural as string,
      singular: typeof names.singular === 'string' ? names.singular : (names.kind as string).toLowerCase(),
      kind: names.kind as string,
      listKind: typeof names.listKind === 'string' ? names.listKind : `${names.kind as string}List`,
      namespaced: spec.scope !== 'Cluster',
      shortNames: strings(names.shortNames),
      categories: strings(names.categories),
      subresources: {
        status: v.subresources?.status !== undefined,
        scale: v.subresources?.scale !== undefined,
      },
      printerColumns: Array.isArray(v.additionalPrinterColumns)
        ? (v.additionalPrinterColumns as PrinterColumn[]).filter(
            (c) => typeof c?.name === 'string' && typeof c?.jsonPath === 'string',
          )
        : undefined,
      storageVersion: typeof storage === 'string' ? storage : (v.name as string),
      schema: () => {
        const raw = v.schema?.openAPIV3Schema
        if (raw === undefined) return undefined
        return schemaOf(
          `${String(meta.uid ?? meta.name)}/${String(meta.resourceVersion)}/${v.name as string}`,
          raw,
        )
      },
    }))
    .sort((a, b) => byVersionPriority(a.version, b.version))
}

/** Every type a cluster serves: the built-ins, then its CRDs' (a CRD cannot shadow a built-in). */
export function resourceTypes(crds: Record<string, unknown>[]): ResourceType[] {
  const taken = new Set(builtinResources.map((t) => `${t.group}/${t.resource}`))
  return [
    ...builtinResources,
    ...crds.flatMap(resourcesOfCrd).filter((t) => !taken.has(`${t.group}/${t.resource}`)),
  ]
}

export const crdType = builtinResources.find((t) => t.resource === 'customresourcedefinitions')!
