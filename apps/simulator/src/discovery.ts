import { groupVersionOf, type ResourceType } from './resources.ts'

// Discovery, both the legacy documents (/api, /apis, /apis/<group>/<version>) and the aggregated
// form (apidiscovery.k8s.io/v2 and v2beta1) kubectl 1.26+ asks for first, which saves it one
// request per group version.

const verbsOf = (t: ResourceType) =>
  t.readOnly
    ? ['get', 'list', 'watch']
    : ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']

const subresourcesOf = (t: ResourceType) => [
  ...(t.subresources?.status ? [{ name: 'status', kind: t.kind, group: t.group, version: t.version }] : []),
  ...(t.subresources?.scale ? [{ name: 'scale', kind: 'Scale', group: 'autoscaling', version: 'v1' }] : []),
]

export const apiVersions = (serverAddress: string) => ({
  kind: 'APIVersions',
  versions: ['v1'],
  serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
})

/** Groups in first-seen order, each with its versions (the first is preferred). */
function groupsOf(types: ResourceType[]) {
  const groups = new Map<string, string[]>()
  for (const t of types) {
    if (t.group === '') continue
    const versions = groups.get(t.group) ?? []
    if (!versions.includes(t.version)) versions.push(t.version)
    groups.set(t.group, versions)
  }
  return groups
}

const apiGroup = (name: string, versions: string[]) => ({
  name,
  versions: versions.map((version) => ({ groupVersion: `${name}/${version}`, version })),
  preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0] },
})

export function apiGroupList(types: ResourceType[]) {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: [...groupsOf(types)].map(([name, versions]) => apiGroup(name, versions)),
  }
}

export function apiGroupDocument(types: ResourceType[], group: string) {
  const versions = groupsOf(types).get(group)
  return versions ? { kind: 'APIGroup', apiVersion: 'v1', ...apiGroup(group, versions) } : undefined
}

export function apiResourceList(types: ResourceType[], group: string, version: string) {
  const served = types.filter((t) => t.group === group && t.version === version)
  if (served.length === 0) return undefined
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: groupVersionOf({ group, version }),
    resources: served.flatMap((t) => [
      {
        name: t.resource,
        singularName: t.singular,
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: verbsOf(t),
        ...(t.shortNames?.length ? { shortNames: t.shortNames } : {}),
        ...(t.categories?.length ? { categories: t.categories } : {}),
      },
      ...subresourcesOf(t).map((s) => ({
        name: `${t.resource}/${s.name}`,
        singularName: '',
        namespaced: t.namespaced,
        ...(s.group !== t.group ? { group: s.group, version: s.version } : {}),
        kind: s.kind,
        verbs: ['get', 'patch', 'update'],
      })),
    ]),
  }
}

/** The media type a client asked for, if it asked for aggregated discovery. */
export function aggregatedDiscoveryVersion(accept: string | undefined): 'v2' | 'v2beta1' | undefined {
  if (!accept) return undefined
  for (const part of accept.split(',')) {
    if (!/as=APIGroupDiscoveryList/.test(part) || !/g=apidiscovery\.k8s\.io/.test(part)) continue
    const version = /;\s*v=(v2beta1|v2)\b/.exec(part)?.[1]
    if (version === 'v2' || version === 'v2beta1') return version
  }
  return undefined
}

export const aggregatedContentType = (version: 'v2' | 'v2beta1') =>
  `application/json;g=apidiscovery.k8s.io;v=${version};as=APIGroupDiscoveryList`

/** `/api` (core only) or `/apis` (every named group) as one aggregated document. */
export function aggregatedDiscovery(types: ResourceType[], core: boolean, version: 'v2' | 'v2beta1') {
  const selected = types.filter((t) => (t.group === '') === core)
  const groups = new Map<string, Map<string, ResourceType[]>>()
  for (const t of selected) {
    const versions = groups.get(t.group) ?? new Map<string, ResourceType[]>()
    versions.set(t.version, [...(versions.get(t.version) ?? []), t])
    groups.set(t.group, versions)
  }
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${version}`,
    metadata: {},
    items: [...groups].map(([group, versions]) => ({
      metadata: { name: group, creationTimestamp: null },
      versions: [...versions].map(([v, served]) => ({
        version: v,
        resources: served.map((t) => ({
          resource: t.resource,
          responseKind: { group: t.group, version: t.version, kind: t.kind },
          scope: t.namespaced ? 'Namespaced' : 'Cluster',
          singularResource: t.singular,
          verbs: verbsOf(t),
          ...(t.shortNames?.length ? { shortNames: t.shortNames } : {}),
          ...(t.categories?.length ? { categories: t.categories } : {}),
          ...(subresourcesOf(t).length
            ? {
                subresources: subresourcesOf(t).map((s) => ({
                  subresource: s.name,
                  responseKind: { group: s.group, version: s.version, kind: s.kind },
                  verbs: ['get', 'patch', 'update'],
                })),
              }
            : {}),
        })),
        freshness: 'Current',
      })),
    })),
  }
}
