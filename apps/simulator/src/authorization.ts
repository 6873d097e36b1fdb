import type { ResourceType } from './resources.ts'
import type { KubeObject, ObjectStore } from './store.ts'

// RBAC as kube-apiserver evaluates it, from the cluster's own Roles, ClusterRoles and bindings:
// `system:masters` may do anything; everyone else what a binding grants them.

export interface Caller {
  user: string
  groups: string[]
}

export interface RequestAttributes {
  verb: string
  group: string
  resource: string
  subresource?: string
  namespace?: string
  name?: string
}

interface PolicyRule {
  apiGroups?: string[]
  resources?: string[]
  verbs?: string[]
  resourceNames?: string[]
}

interface Subject {
  kind?: string
  name?: string
  namespace?: string
}

const matches = (list: string[] | undefined, value: string) =>
  (list ?? []).some((item) => item === '*' || item === value)

function allows(rule: PolicyRule, a: RequestAttributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource
  return (
    matches(rule.verbs, a.verb) &&
    matches(rule.apiGroups, a.group) &&
    (matches(rule.resources, resource) || (rule.resources ?? []).includes(`*/${a.subresource ?? ''}`)) &&
    (!rule.resourceNames?.length || (a.name !== undefined && rule.resourceNames.includes(a.name)))
  )
}

function bindsCaller(binding: KubeObject, caller: Caller): boolean {
  const subjects = (binding.subjects ?? []) as Subject[]
  const groups = [...caller.groups, 'system:authenticated']
  return subjects.some(
    (s) =>
      (s.kind === 'User' && s.name === caller.user) || (s.kind === 'Group' && groups.includes(s.name ?? '')),
  )
}

export async function authorize(
  store: ObjectStore,
  clusterId: string,
  types: ResourceType[],
  caller: Caller,
  attributes: RequestAttributes,
): Promise<boolean> {
  if (caller.groups.includes('system:masters')) return true
  const typeOf = (resource: string) =>
    types.find((t) => t.group === 'rbac.authorization.k8s.io' && t.resource === resource)!
  const rulesOf = async (roleRef: { kind?: string; name?: string }, namespace?: string) => {
    const role =
      roleRef.kind === 'ClusterRole'
        ? await store.get(clusterId, typeOf('clusterroles'), '', String(roleRef.name))
        : await store.get(clusterId, typeOf('roles'), namespace ?? '', String(roleRef.name))
    return (role?.rules ?? []) as PolicyRule[]
  }
  for (const binding of await store.list(clusterId, typeOf('clusterrolebindings'))) {
    if (!bindsCaller(binding, caller)) continue
    for (const rule of await rulesOf(binding.roleRef as { kind?: string; name?: string }))
      if (allows(rule, attributes)) return true
  }
  if (attributes.namespace) {
    for (const binding of await store.list(clusterId, typeOf('rolebindings'), attributes.namespace)) {
      if (!bindsCaller(binding, caller)) continue
      for (const rule of await rulesOf(
        binding.roleRef as { kind?: string; name?: string },
        attributes.namespace,
      ))
        if (allows(rule, attributes)) return true
    }
  }
  return false
}
