import { createHash } from 'node:crypto'
import { groupVersionOf, type ResourceType } from './resources.ts'

// Just enough OpenAPI v3 for kubectl: it reads /openapi/v3 and a group version's document to learn
// whether the server validates fields itself (the `fieldValidation` parameter on PATCH). When it
// does, kubectl sends `fieldValidation=Strict` and needs no schemas of its own; without these
// documents `kubectl apply` stops with "failed to download openapi".

const pathKey = (t: Pick<ResourceType, 'group' | 'version'>) =>
  t.group === '' ? `api/${t.version}` : `apis/${t.group}/${t.version}`

const queryParameter = (name: string, description: string) => ({
  name,
  in: 'query',
  description,
  schema: { type: 'string', uniqueItems: true },
})

export function openApiGroupVersion(types: ResourceType[], group: string, version: string) {
  const served = types.filter((t) => t.group === group && t.version === version)
  if (served.length === 0) return undefined
  const paths: Record<string, unknown> = {}
  for (const t of served) {
    const base = `/${pathKey(t)}${t.namespaced ? '/namespaces/{namespace}' : ''}/${t.resource}`
    const gvk = { group: t.group, version: t.version, kind: t.kind }
    paths[`${base}/{name}`] = {
      get: { 'x-kubernetes-action': 'get', 'x-kubernetes-group-version-kind': gvk, responses: { '200': {} } },
      ...(t.readOnly
        ? {}
        : {
            put: {
              'x-kubernetes-action': 'put',
              'x-kubernetes-group-version-kind': gvk,
              responses: { '200': {} },
            },
            delete: {
              'x-kubernetes-action': 'delete',
              'x-kubernetes-group-version-kind': gvk,
              responses: { '200': {} },
            },
            patch: {
              'x-kubernetes-action': 'patch',
              'x-kubernetes-group-version-kind': gvk,
              parameters: [
                queryParameter('dryRun', 'When present, modifications are not persisted.'),
                queryParameter('fieldManager', 'The name of the actor making the change.'),
                queryParameter(
                  'fieldValidation',
                  'Ignore, Warn or Strict handling of unknown or duplicate fields.',
                ),
                queryParameter('force', 'Force an apply request to take fields other managers own.'),
              ],
              responses: { '200': {}, '201': {} },
            },
          }),
      parameters: [
        { name: 'name', in: 'path', required: true, schema: { type: 'string' } },
        ...(t.namespaced
          ? [{ name: 'namespace', in: 'path', required: true, schema: { type: 'string' } }]
          : []),
      ],
    }
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: groupVersionOf({ group, version }) },
    paths,
    components: { schemas: {} },
  }
}

export function openApiRoot(types: ResourceType[]) {
  const keys = [...new Set(types.map((t) => `${t.group}\u0000${t.version}`))]
  return {
    paths: Object.fromEntries(
      keys.map((key) => {
        const [group = '', version = ''] = key.split('\u0000')
        const hash = createHash('sha512')
          .update(JSON.stringify(openApiGroupVersion(types, group, version)))
          .digest('hex')
          .slice(0, 128)
          .toUpperCase()
        const path = pathKey({ group, version })
        return [path, { serverRelativeURL: `/openapi/v3/${path}?hash=${hash}` }]
      }),
    ),
  }
}
