import { randomBytes, randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Database } from '@kiln/db'
import { parse as parseYaml } from 'yaml'
import { authorize, type Caller } from './authorization.ts'
import { decodeBuiltin } from './builtin-schema.ts'
import type { FieldCause } from './crd-schema.ts'
import {
  aggregatedContentType,
  aggregatedDiscovery,
  aggregatedDiscoveryVersion,
  apiGroupDocument,
  apiGroupList,
  apiResourceList,
  apiVersions,
} from './discovery.ts'
import {
  type ClusterView,
  listNodes,
  matchesFieldSelector,
  matchesSelector,
  parseFieldSelector,
  parseLabelSelector,
  requiredLabels,
  requiredName,
  SelectorError,
  status,
  versionInfo,
} from './kube.ts'
import { ApplyConflictError, recordUpdate, serverSideApply, unmanagedMetadata } from './managed-fields.ts'
import { openApiGroupVersion, openApiRoot } from './openapi.ts'
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from './patch.ts'
import { decodeProtobuf } from './protobuf.ts'
import { builtinResources, crdType, groupVersionOf, type ResourceType, resourceTypes } from './resources.ts'
import {
  type KubeObject,
  type ListNarrowing,
  type ObjectStore,
  StoreConflict,
  type StoreEvent,
} from './store.ts'
import { table } from './tables.ts'
import {
  jobStatus,
  podsOf,
  type SchedulableNode,
  scheduledPod,
  workloadKinds,
  workloadStatus,
} from './workloads.ts'

// The Kubernetes REST API of one simulated cluster, generically over every resource type:
// get, list (label and field selectors), watch, create, update, patch (JSON, merge, strategic
// merge, server-side apply) and delete, with the status and scale subresources. JSON on the wire.

const maxBodyBytes = 3 * 1024 * 1024
const protectedNamespaces = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease'])

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message)
  }
}

export interface RestContext {
  db: Database
  store: ObjectStore
  cluster: ClusterView
  caller: Caller
  /** host:port clients used, for /api's serverAddressByClientCIDRs. */
  serverAddress: string
}

interface Target {
  type: ResourceType
  namespace?: string
  name?: string
  subresource?: string
}

const typeCaches = new WeakMap<ObjectStore, Map<string, Promise<ResourceType[]>>>()
const seeded = new WeakMap<ObjectStore, Map<string, Promise<void>>>()

/** The types a cluster serves; recomputed when one of its CRDs changes. */
function typesOf(store: ObjectStore, clusterId: string): Promise<ResourceType[]> {
  let cache = typeCaches.get(store)
  if (!cache) {
    const fresh = new Map<string, Promise<ResourceType[]>>()
    cache = fresh
    typeCaches.set(store, fresh)
    store.onChange((e) => {
      if (e.group === crdType.group && e.resource === crdType.resource) fresh.delete(e.clusterId)
    })
  }
  let types = cache.get(clusterId)
  if (!types) {
    types = store.list(clusterId, crdType).then((crds) => resourceTypes(crds))
    cache.set(clusterId, types)
    types.catch(() => cache.delete(clusterId))
  }
  return types
}

const rfc3339 = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** What kubeadm leaves in a new cluster: its namespaces, default service accounts, the API service, admin RBAC. */
function initialObjects(cluster: ClusterView): { resource: string; group: string; object: KubeObject }[] {
  const created = rfc3339(cluster.createdAt)
  const meta = (name: string, namespace?: string, labels?: Record<string, string>) => ({
    name,
    ...(namespace ? { namespace } : {}),
    uid: randomUUID(),
    creationTimestamp: created,
    ...(labels ? { labels } : {}),
  })
  const namespaces = ['default', 'kube-node-lease', 'kube-public', 'kube-system']
  const everything = [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }]
  const readOnly = ['get', 'list', 'watch']
  const bootstrap = { 'kubernetes.io/bootstrapping': 'rbac-defaults' }
  return [
    ...namespaces.map((name) => ({
      group: '',
      resource: 'namespaces',
      object: {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: meta(name, undefined, { 'kubernetes.io/metadata.name': name }),
        spec: { finalizers: ['kubernetes'] },
        status: { phase: 'Active' },
      },
    })),
    ...namespaces.map((namespace) => ({
      group: '',
      resource: 'serviceaccounts',
      object: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta('default', namespace) },
    })),
    {
      group: '',
      resource: 'services',
      object: {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: meta('kubernetes', 'default', { component: 'apiserver', provider: 'kubernetes' }),
        spec: {
          type: 'ClusterIP',
          clusterIP: '10.96.0.1',
          clusterIPs: ['10.96.0.1'],
          ports: [{ name: 'https', port: 443, protocol: 'TCP', targetPort: 6443 }],
        },
      },
    },
    ...[
      { name: 'cluster-admin', rules: [...everything, { nonResourceURLs: ['*'], verbs: ['*'] }] },
      {
        name: 'admin',
        rules: everything.map((r) => ({
          ...r,
          apiGroups: ['', 'apps', 'batch', 'networking.k8s.io', 'rbac.authorization.k8s.io', 'policy'],
        })),
      },
      {
        name: 'edit',
        rules: [
          {
            apiGroups: ['', 'apps', 'batch', 'networking.k8s.io', 'policy'],
            resources: ['*'],
            verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
          },
        ],
      },
      {
        name: 'view',
        rules: [
          {
            apiGroups: ['', 'apps', 'batch', 'networking.k8s.io', 'policy'],
            resources: ['*'],
            verbs: readOnly,
          },
        ],
      },
    ].map(({ name, rules }) => ({
      group: 'rbac.authorization.k8s.io',
      resource: 'clusterroles',
      object: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: meta(name, undefined, bootstrap),
        rules,
      },
    })),
    {
      group: 'rbac.authorization.k8s.io',
      resource: 'clusterrolebindings',
      object: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: meta('cluster-admin', undefined, bootstrap),
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'Group', name: 'system:masters' }],
      },
    },
  ]
}

/** A cluster's first request stores what a new cluster has; a cluster with any object is left alone. */
function ensureSeeded(ctx: RestContext): Promise<void> {
  let clusters = seeded.get(ctx.store)
  if (!clusters) {
    clusters = new Map()
    seeded.set(ctx.store, clusters)
  }
  const known = clusters.get(ctx.cluster.id)
  if (known) return known
  const seeding = (async () => {
    if (await ctx.store.hasObjects(ctx.cluster.id)) return
    for (const { group, resource, object } of initialObjects(ctx.cluster)) {
      const type = typeByResource(group, resource)
      await ctx.store.create(ctx.cluster.id, type, object as KubeObject).catch((error: unknown) => {
        if (!(error instanceof StoreConflict)) throw error
      })
    }
  })()
  clusters.set(ctx.cluster.id, seeding)
  seeding.catch(() => clusters.delete(ctx.cluster.id))
  return seeding
}

// ---- the wire ------------------------------------------------------------------------------

export function send(res: ServerResponse, code: number, body: unknown, contentType = 'application/json') {
  const text = JSON.stringify(body)
  res.writeHead(code, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, private',
  })
  res.end(res.req.method === 'HEAD' ? undefined : text)
}

async function readBody(req: IncomingMessage): Promise<string> {
  return (await readBytes(req)).toString('utf8')
}

async function readBytes(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > maxBodyBytes) throw new ApiError(413, 'RequestEntityTooLarge', 'request entity too large')
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

async function readObject(req: IncomingMessage, yaml = false): Promise<unknown> {
  if ((req.headers['content-type'] ?? '').startsWith('application/vnd.kubernetes.protobuf')) {
    let decoded: Record<string, unknown> | undefined
    try {
      decoded = decodeProtobuf(await readBytes(req))
    } catch (error) {
      throw new ApiError(
        400,
        'BadRequest',
        `the body of the request was in an unknown format: ${(error as Error).message}`,
      )
    }
    if (decoded) return decoded
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml',
    )
  }
  const text = await readBody(req)
  if (text.trim() === '') return undefined
  try {
    // Apply bodies are YAML by media type, but clients (kubectl, client-node) send JSON, which is
    // YAML too and parses many times faster as JSON.
    if (!yaml) return JSON.parse(text)
    try {
      return JSON.parse(text)
    } catch {
      return parseYaml(text)
    }
  } catch (error) {
    throw new ApiError(
      400,
      'BadRequest',
      `the body of the request was in an unknown format: ${(error as Error).message}`,
    )
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v)

const qualified = (t: ResourceType) => (t.group === '' ? t.resource : `${t.resource}.${t.group}`)
const kindQualified = (t: ResourceType) => (t.group === '' ? t.kind : `${t.kind}.${t.group}`)

const notFound = (t: ResourceType, name: string) =>
  new ApiError(404, 'NotFound', `${qualified(t)} "${name}" not found`, {
    name,
    group: t.group,
    kind: t.resource,
  })

type Cause = { field: string; message: string; reason?: string }

const invalid = (t: ResourceType, name: string, causes: Cause[]) =>
  new ApiError(
    422,
    'Invalid',
    // apimachinery's aggregate: one error as is, several in brackets.
    `${kindQualified(t)} "${name}" is invalid: ${causes.length === 1 ? '' : '['}${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}${causes.length === 1 ? '' : ']'}`,
    {
      name,
      group: t.group,
      kind: t.kind,
      causes: causes.map((c) => ({
        reason: c.reason ?? 'FieldValueInvalid',
        message: c.message,
        field: c.field,
      })),
    },
  )

// ---- routing -------------------------------------------------------------------------------

/** Answers one authenticated request: Kubernetes errors become Status bodies, anything else is thrown. */
export async function serveKubernetesApi(req: IncomingMessage, res: ServerResponse, ctx: RestContext) {
  try {
    await route(req, res, ctx)
  } catch (error) {
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (error instanceof ApiError)
      return send(res, error.code, status(error.code, error.reason, error.message, error.details))
    if (error instanceof SelectorError) return send(res, 400, status(400, 'BadRequest', error.message))
    if (error instanceof PatchError) return send(res, 422, status(422, 'Invalid', error.message))
    throw error
  }
}

async function route(req: IncomingMessage, res: ServerResponse, ctx: RestContext) {
  const url = new URL(req.url ?? '/', 'https://localhost')
  const path = url.pathname.replace(/\/+$/, '') || '/'
  const method = req.method ?? 'GET'
  const accept = req.headers.accept

  if (method === 'GET' || method === 'HEAD') {
    if (path === '/version') return send(res, 200, versionInfo(ctx.cluster))
    if (path === '/api' || path === '/apis') {
      const types = await typesOf(ctx.store, ctx.cluster.id)
      const aggregated = aggregatedDiscoveryVersion(accept)
      if (aggregated)
        return send(
          res,
          200,
          aggregatedDiscovery(types, path === '/api', aggregated),
          aggregatedContentType(aggregated),
        )
      return send(res, 200, path === '/api' ? apiVersions(ctx.serverAddress) : apiGroupList(types))
    }
    const groupOnly = /^\/apis\/([^/]+)$/.exec(path)
    if (groupOnly) {
      const doc = apiGroupDocument(await typesOf(ctx.store, ctx.cluster.id), groupOnly[1]!)
      if (doc) return send(res, 200, doc)
    }
    const groupVersion = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path)
    if (groupVersion) {
      const group = groupVersion[2] ?? ''
      const version = groupVersion[1] ?? groupVersion[3]!
      const list = apiResourceList(await typesOf(ctx.store, ctx.cluster.id), group, version)
      if (list) return send(res, 200, list)
    }
    if (path === '/openapi/v3') return send(res, 200, openApiRoot(await typesOf(ctx.store, ctx.cluster.id)))
    const openApi = /^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path)
    if (openApi) {
      const doc = openApiGroupVersion(
        await typesOf(ctx.store, ctx.cluster.id),
        openApi[2] ?? '',
        openApi[1] ?? openApi[3]!,
      )
      if (doc) return send(res, 200, doc)
    }
  }

  const target = await resolveTarget(path, ctx)
  if (!target)
    return send(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'))
  await ensureSeeded(ctx)

  const watching =
    (method === 'GET' && ['true', '1'].includes(url.searchParams.get('watch') ?? '')) || undefined
  const verb = verbOf(method, target, watching)
  if (!verb)
    return send(
      res,
      405,
      status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource'),
    )
  const allowed = await authorize(
    ctx.store,
    ctx.cluster.id,
    await typesOf(ctx.store, ctx.cluster.id),
    ctx.caller,
    {
      verb,
      group: target.type.group,
      resource: target.type.resource,
      subresource: target.subresource,
      namespace: target.namespace,
      name: target.name,
    },
  )
  if (!allowed) {
    const scope = target.namespace ? `in the namespace "${target.namespace}"` : 'at the cluster scope'
    const resource = target.subresource
      ? `${target.type.resource}/${target.subresource}`
      : target.type.resource
    throw new ApiError(
      403,
      'Forbidden',
      `${qualified(target.type)}${target.name ? ` "${target.name}"` : ''} is forbidden: User "${ctx.caller.user}" cannot ${verb} resource "${resource}" in API group "${target.type.group}" ${scope}`,
      { ...(target.name ? { name: target.name } : {}), group: target.type.group, kind: target.type.resource },
    )
  }
  if (target.type.readOnly && !['get', 'list', 'watch'].includes(verb))
    throw new ApiError(
      405,
      'MethodNotAllowed',
      `${target.type.resource} are managed by Kiln and cannot be changed through this API`,
    )

  switch (verb) {
    case 'get':
      return getOne(req, res, ctx, target, url)
    case 'list':
      return listAll(req, res, ctx, target, url)
    case 'watch':
      return watch(req, res, ctx, target, url)
    case 'create':
      return create(req, res, ctx, target, url)
    case 'update':
      return update(req, res, ctx, target, url)
    case 'patch':
      return patch(req, res, ctx, target, url)
    case 'delete':
      return remove(req, res, ctx, target, url)
    case 'deletecollection':
      return removeCollection(req, res, ctx, target, url)
  }
}

function verbOf(method: string, target: Target, watching: true | undefined) {
  const collection = target.name === undefined
  switch (method) {
    case 'GET':
    case 'HEAD':
      return watching ? 'watch' : collection ? 'list' : 'get'
    case 'POST':
      return collection ? 'create' : undefined
    case 'PUT':
      return collection ? undefined : 'update'
    case 'PATCH':
      return collection ? undefined : 'patch'
    case 'DELETE':
      return collection ? 'deletecollection' : 'delete'
    default:
      return undefined
  }
}

async function resolveTarget(path: string, ctx: RestContext): Promise<Target | undefined> {
  const match = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/(.+)$/.exec(path)
  if (!match) return undefined
  const group = match[2] ?? ''
  const version = match[1] ?? match[3]!
  const parts = match[4]!.split('/').map((p) => decodeURIComponent(p))
  let namespace: string | undefined
  // `namespaces/<ns>/<resource>…` is namespaced; `namespaces/<ns>[/status|finalize]` is the namespace.
  if (
    parts[0] === 'namespaces' &&
    parts.length >= 3 &&
    !(parts.length === 3 && ['status', 'finalize'].includes(parts[2]!))
  ) {
    namespace = parts[1]
    parts.splice(0, 2)
  }
  const [resource, name, subresource, ...rest] = parts
  if (rest.length > 0) return undefined
  const types = await typesOf(ctx.store, ctx.cluster.id)
  const type = types.find((t) => t.group === group && t.version === version && t.resource === resource)
  if (!type) return undefined
  if (namespace !== undefined && !type.namespaced) return undefined
  if (subresource !== undefined) {
    const known =
      (subresource === 'status' && type.subresources?.status) ||
      (subresource === 'scale' && type.subresources?.scale) ||
      (subresource === 'finalize' && type.resource === 'namespaces')
    if (!known) return undefined
  }
  return { type, namespace, name, subresource }
}

// ---- reading -------------------------------------------------------------------------------

async function schedulableNodes(ctx: RestContext): Promise<SchedulableNode[]> {
  const nodes = await listNodes(ctx.db, ctx.cluster)
  return nodes.map((n) => ({
    name: n.metadata.name,
    labels: n.metadata.labels ?? {},
    taints: (n.spec as { taints?: SchedulableNode['taints'] }).taints ?? [],
    ready:
      ((n.status as { conditions: { type: string; status: string }[] }).conditions.find(
        (c) => c.type === 'Ready',
      )?.status ?? 'False') === 'True',
  }))
}

/** Lazily loads what decoration needs, once per request. */
class ReadScope {
  private nodes?: Promise<SchedulableNode[]>
  constructor(readonly ctx: RestContext) {}
  schedulable() {
    this.nodes ??= schedulableNodes(this.ctx)
    return this.nodes
  }
}

const typeByResource = (group: string, resource: string) =>
  builtinResources.find((t) => t.group === group && t.resource === resource)!
const jobType = typeByResource('batch', 'jobs')
const isJob = (type: ResourceType) => type === jobType

/** The pods the controllers run for every workload in scope (one namespace, or all). */
async function controllerPods(
  ctx: RestContext,
  namespace: string | undefined,
  nodes: SchedulableNode[],
): Promise<KubeObject[]> {
  const workloads = await Promise.all(
    [
      ...['deployments', 'statefulsets', 'daemonsets', 'replicasets'].map((r) => typeByResource('apps', r)),
      jobType,
    ].map((type) => ctx.store.list(ctx.cluster.id, type, namespace)),
  )
  return workloads.flat().flatMap((w) => podsOf(w, nodes))
}

/**
 * A custom resource as the requested version serves it: stored in the CRD's storage version, and
 * with conversion strategy None only apiVersion differs, as in Kubernetes.
 */
function servedAs(type: ResourceType, object: KubeObject): KubeObject {
  const apiVersion = groupVersionOf(type)
  return object.apiVersion === apiVersion ? object : { ...object, apiVersion }
}

/**
 * A custom resource's schema applied to a write: unknown fields pruned, defaults filled in, then
 * validated against the requested version's schema; stored in the storage version.
 */
function conformToSchema(
  type: ResourceType,
  object: KubeObject,
): { object: KubeObject; causes: FieldCause[] } {
  const schema = type.schema?.()
  let conformed = servedAs(type, object)
  let causes: FieldCause[] = []
  if (schema) {
    conformed = schema.normalize(conformed)
    causes = schema.validate(conformed)
  }
  const apiVersion = groupVersionOf({ group: type.group, version: type.storageVersion! })
  return { object: { ...conformed, apiVersion }, causes }
}

/** What the cluster's controllers would have filled in: workload status, CRD and namespace status. */
async function decorate(scope: ReadScope, type: ResourceType, object: KubeObject): Promise<KubeObject> {
  if (type.storageVersion) return servedAs(type, object)
  if (workloadKinds.has(type.kind) && type.group === 'apps') {
    const pods = podsOf(object, await scope.schedulable())
    return { ...object, status: workloadStatus(object, pods) }
  }
  if (isJob(type)) return { ...object, status: jobStatus(object, podsOf(object, await scope.schedulable())) }
  if (type.kind === 'Pod') return scheduledPod(object, await scope.schedulable())
  if (type.resource === 'customresourcedefinitions') {
    const spec = (object.spec ?? {}) as { names?: unknown; versions?: { name: string; storage?: boolean }[] }
    const at = String(object.metadata.creationTimestamp)
    return {
      ...object,
      status: {
        conditions: [
          {
            type: 'NamesAccepted',
            status: 'True',
            reason: 'NoConflicts',
            message: 'no conflicts found',
            lastTransitionTime: at,
          },
          {
            type: 'Established',
            status: 'True',
            reason: 'InitialNamesAccepted',
            message: 'the initial names have been accepted',
            lastTransitionTime: at,
          },
        ],
        acceptedNames: spec.names ?? {},
        storedVersions: (spec.versions ?? []).filter((v) => v.storage).map((v) => v.name),
      },
    }
  }
  if (type.resource === 'namespaces') return { ...object, status: { phase: 'Active' } }
  if (type.resource === 'services' && (object.spec as { type?: string })?.type === 'LoadBalancer') {
    const ip = String((object.spec as { clusterIP?: string }).clusterIP ?? '10.96.0.2').split('.')
    return {
      ...object,
      status: { loadBalancer: { ingress: [{ ip: `172.31.${ip[2]}.${ip[3]}`, ipMode: 'VIP' }] } },
    }
  }
  return object
}

/**
 * What a write answers: the object as stored. Controllers have not acted on it yet, so workloads
 * and pods carry no fresh status (as from kube-apiserver), which also spares every write a read
 * of the nodes.
 */
function written(ctx: RestContext, type: ResourceType, object: KubeObject): Promise<KubeObject> | KubeObject {
  if (type.kind === 'Pod' || isJob(type) || (type.group === 'apps' && workloadKinds.has(type.kind)))
    return object
  return decorate(new ReadScope(ctx), type, object)
}

/** Objects of a type in scope, stored and synthesized (nodes, controllers' pods), decorated. */
async function objectsOf(
  scope: ReadScope,
  type: ResourceType,
  namespace: string | undefined,
  narrow?: ListNarrowing,
): Promise<KubeObject[]> {
  const { ctx } = scope
  if (type.resource === 'nodes') return (await listNodes(ctx.db, ctx.cluster)) as unknown as KubeObject[]
  const stored = await ctx.store.list(ctx.cluster.id, type, namespace, narrow)
  const decorated = await Promise.all(stored.map((o) => decorate(scope, type, o)))
  if (type.resource !== 'pods' || type.group !== '') return decorated
  const synthesized = await controllerPods(ctx, namespace, await scope.schedulable())
  return [...decorated, ...synthesized].sort(
    (a, b) =>
      String(a.metadata.namespace).localeCompare(String(b.metadata.namespace)) ||
      a.metadata.name.localeCompare(b.metadata.name),
  )
}

async function findOne(scope: ReadScope, target: Target): Promise<KubeObject | undefined> {
  const { ctx } = scope
  const name = target.name!
  if (target.type.resource === 'nodes' || target.type.resource === 'pods') {
    if (target.type.resource === 'pods') {
      const stored = await ctx.store.get(ctx.cluster.id, target.type, target.namespace ?? '', name)
      if (stored) return decorate(scope, target.type, stored)
    }
    return (await objectsOf(scope, target.type, target.namespace)).find((o) => o.metadata.name === name)
  }
  const stored = await ctx.store.get(
    ctx.cluster.id,
    target.type,
    target.type.namespaced ? (target.namespace ?? '') : '',
    name,
  )
  return stored ? decorate(scope, target.type, stored) : undefined
}

const wantsTable = (req: IncomingMessage) => /as=Table/.test(req.headers.accept ?? '')

/**
 * A request's label and field selectors: what the store narrows in SQL (exact labels, a name),
 * and the whole selector as a test, which synthesized objects and every remaining requirement
 * (set-based, !=, exists) still go through.
 */
function selection(url: URL): { narrow: ListNarrowing; matches: (o: KubeObject) => boolean } {
  const labelSelector = url.searchParams.get('labelSelector')
  const fieldSelector = url.searchParams.get('fieldSelector')
  // Both parsed up front: a malformed selector is refused even when SQL leaves nothing to match.
  const requirements = labelSelector ? parseLabelSelector(labelSelector) : []
  const fields = fieldSelector ? parseFieldSelector(fieldSelector) : []
  const name = requiredName(fields)
  return {
    narrow: { labels: requiredLabels(requirements), ...(name === undefined ? {} : { name }) },
    matches: (o: KubeObject) =>
      matchesSelector((o.metadata.labels ?? {}) as Record<string, string>, requirements) &&
      matchesFieldSelector(o, fields),
  }
}

function scaleOf(object: KubeObject): KubeObject {
  const spec = (object.spec ?? {}) as {
    replicas?: number
    selector?: { matchLabels?: Record<string, string> }
  }
  const st = (object.status ?? {}) as { replicas?: number }
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: object.metadata.name,
      namespace: object.metadata.namespace,
      uid: object.metadata.uid,
      resourceVersion: object.metadata.resourceVersion,
      creationTimestamp: object.metadata.creationTimestamp,
    },
    spec: { replicas: spec.replicas ?? 1 },
    status: {
      replicas: st.replicas ?? 0,
      selector: Object.entries(spec.selector?.matchLabels ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    },
  }
}

async function getOne(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const object = await findOne(new ReadScope(ctx), target)
  if (!object) throw notFound(target.type, target.name!)
  const shown = target.subresource === 'scale' ? scaleOf(object) : object
  if (wantsTable(req))
    return send(
      res,
      200,
      table(
        target.type,
        [shown],
        String(shown.metadata.resourceVersion ?? ''),
        url.searchParams.get('includeObject') ?? 'Metadata',
      ),
    )
  return send(res, 200, shown)
}

async function listAll(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RestContext,
  target: Target,
  url: URL,
) {
  const resourceVersion = String(await ctx.store.currentVersion(ctx.cluster.id))
  const { narrow, matches } = selection(url)
  const objects = (await objectsOf(new ReadScope(ctx), target.type, target.namespace, narrow)).filter(matches)
  if (wantsTable(req))
    return send(
      res,
      200,
      table(target.type, objects, resourceVersion, url.searchParams.get('includeObject') ?? 'Metadata'),
    )
  return send(res, 200, {
    kind: target.type.listKind,
    apiVersion: groupVersionOf(target.type),
    metadata: { resourceVersion },
    items: objects.map((o) => ({ ...o, apiVersion: groupVersionOf(target.type), kind: target.type.kind })),
  })
}

// ---- watching ------------------------------------------------------------------------------

async function watch(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const { type } = target
  const { narrow, matches } = selection(url)
  const asTable = wantsTable(req)
  const includeObject = url.searchParams.get('includeObject') ?? 'Metadata'
  const scope = new ReadScope(ctx)
  const inScope = (e: { clusterId: string; group: string; resource: string; namespace: string }) =>
    e.clusterId === ctx.cluster.id &&
    e.group === type.group &&
    e.resource === type.resource &&
    (target.namespace === undefined || e.namespace === target.namespace)

  const pending: StoreEvent[] = []
  let live = false
  let lastSent = 0
  let closed = false
  const write = async (kind: string, object: KubeObject, version: number) => {
    if (closed || version <= lastSent) return
    lastSent = Math.max(lastSent, version)
    if (!matches(object)) return
    const shown = kind === 'DELETED' ? servedAs(type, object) : await decorate(scope, type, object)
    const body = asTable ? table(type, [shown], String(version), includeObject) : shown
    res.write(`${JSON.stringify({ type: kind, object: body })}\n`)
  }
  // Pods of controllers change when their workloads do: diff the synthesized set on every such event.
  let synthesized = new Map<string, KubeObject>()
  const podsOfWorkloads = async () => {
    const pods = await controllerPods(ctx, target.namespace, await schedulableNodes(ctx))
    return new Map(pods.map((p) => [`${p.metadata.namespace}/${p.metadata.name}`, p]))
  }
  const watchesPods = type.group === '' && type.resource === 'pods'
  let podDiff = Promise.resolve()
  const onWorkloadChange = (e: StoreEvent) => {
    podDiff = podDiff.then(async () => {
      const next = await podsOfWorkloads()
      for (const [key, pod] of next)
        if (!synthesized.has(key)) await emitSynthesized('ADDED', pod, e.resourceVersion)
      for (const [key, pod] of synthesized)
        if (!next.has(key)) await emitSynthesized('DELETED', pod, e.resourceVersion)
      synthesized = next
    })
  }
  const emitSynthesized = async (kind: string, pod: KubeObject, version: number) => {
    if (closed || !matches(pod)) return
    const object = { ...pod, metadata: { ...pod.metadata, resourceVersion: String(version) } }
    res.write(
      `${JSON.stringify({ type: kind, object: asTable ? table(type, [object], String(version), includeObject) : object })}\n`,
    )
  }

  let chain = Promise.resolve()
  const unsubscribe = ctx.store.onChange((event) => {
    if (
      watchesPods &&
      event.clusterId === ctx.cluster.id &&
      (event.group === 'apps' || (event.group === 'batch' && event.resource === 'jobs')) &&
      (target.namespace === undefined || event.namespace === target.namespace)
    )
      onWorkloadChange(event)
    if (!inScope(event)) return
    if (!live) pending.push(event)
    else chain = chain.then(() => write(event.type, event.object, event.resourceVersion))
  })
  const timeoutSeconds = Number(url.searchParams.get('timeoutSeconds') ?? 0)
  const timer = setTimeout(() => res.end(), (timeoutSeconds > 0 ? timeoutSeconds : 1800) * 1000)
  const close = () => {
    closed = true
    clearTimeout(timer)
    unsubscribe()
  }
  req.on('close', close)
  res.on('close', close)

  res.writeHead(200, {
    'Content-Type': 'application/json',
    'Cache-Control': 'no-cache, private',
    'Transfer-Encoding': 'chunked',
  })
  res.flushHeaders()
  const from = url.searchParams.get('resourceVersion')
  if (watchesPods) synthesized = await podsOfWorkloads()
  if (!from || from === '0') {
    // No starting point: the current state as ADDED events, then changes.
    const current = await ctx.store.currentVersion(ctx.cluster.id)
    for (const object of await objectsOf(scope, type, target.namespace, narrow))
      await write('ADDED', object, Number(object.metadata.resourceVersion ?? 0) || current)
    lastSent = Math.max(lastSent, current)
  } else {
    lastSent = Number(from)
    if (type.resource !== 'nodes')
      for (const event of await ctx.store.changesSince(ctx.cluster.id, type, target.namespace, Number(from)))
        await write(event.type, event.object, event.resourceVersion)
  }
  live = true
  for (const event of pending.splice(0)) await write(event.type, event.object, event.resourceVersion)
}

// ---- writing -------------------------------------------------------------------------------

function fieldManagerOf(req: IncomingMessage, url: URL): string {
  const explicit = url.searchParams.get('fieldManager')
  if (explicit) {
    if (explicit.length > 128)
      throw new ApiError(422, 'Invalid', 'fieldManager: Too long: may not be longer than 128')
    return explicit
  }
  // What kube-apiserver does: the user agent's program name.
  return (req.headers['user-agent'] ?? 'unknown').split('/')[0]!.slice(0, 128)
}

const dryRun = (url: URL) => url.searchParams.getAll('dryRun').includes('All')

const specOf = (o: KubeObject) => {
  const { metadata: _m, status: _s, apiVersion: _a, kind: _k, ...rest } = o
  return JSON.stringify(rest)
}

const nameRule = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

/** The checks and defaults of kube-apiserver's registry that clients notice. */
function validate(type: ResourceType, object: KubeObject, moreCauses: Cause[] = []) {
  const name = object.metadata.name
  const causes: Cause[] = []
  // RBAC objects only need to be valid path segments (system:coredns); the rest DNS subdomains.
  const validName =
    type.group === 'rbac.authorization.k8s.io'
      ? name !== '' && name !== '.' && name !== '..' && !/[/%]/.test(name)
      : nameRule.test(name) && name.length <= 253
  if (!validName)
    causes.push({
      field: 'metadata.name',
      message: `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
    })
  if (type.group === 'apps' && workloadKinds.has(type.kind)) {
    const spec = (object.spec ?? {}) as {
      selector?: { matchLabels?: Record<string, string> }
      template?: { metadata?: { labels?: Record<string, string> } }
    }
    if (!spec.selector)
      causes.push({ field: 'spec.selector', message: 'Required value', reason: 'FieldValueRequired' })
    else {
      const labels = spec.template?.metadata?.labels ?? {}
      const mismatch = Object.entries(spec.selector.matchLabels ?? {}).some(([k, v]) => labels[k] !== v)
      if (mismatch)
        causes.push({
          field: 'spec.template.metadata.labels',
          message: 'Invalid value: `selector` does not match template `labels`',
        })
    }
  }
  if (type.kind === 'CustomResourceDefinition') {
    const spec = (object.spec ?? {}) as { group?: string; names?: { plural?: string } }
    if (spec.group && spec.names?.plural && name !== `${spec.names.plural}.${spec.group}`)
      causes.push({
        field: 'metadata.name',
        message: `Invalid value: "${name}": must be spec.names.plural+"."+spec.group`,
      })
  }
  // A custom resource's schema causes follow the metadata ones, as kube-apiserver lists them.
  causes.push(...moreCauses)
  if (causes.length > 0) throw invalid(type, name, causes)
}

function withDefaults(type: ResourceType, object: KubeObject): KubeObject {
  if (type.group === '' && type.resource === 'services') {
    const spec = { ...((object.spec ?? {}) as Record<string, unknown>) }
    spec.type ??= 'ClusterIP'
    if (spec.clusterIP === undefined && spec.type !== 'ExternalName') {
      const bytes = randomBytes(2)
      spec.clusterIP = `10.96.${bytes[0]}.${(bytes[1]! % 253) + 2}`
      spec.clusterIPs = [spec.clusterIP]
    }
    if (Array.isArray(spec.ports))
      spec.ports = (spec.ports as Record<string, unknown>[]).map((p) => ({
        protocol: 'TCP',
        targetPort: p.port,
        ...p,
      }))
    return { ...object, spec }
  }
  if (type.group === '' && type.resource === 'secrets') {
    const { stringData, ...rest } = object as KubeObject & { stringData?: Record<string, string> }
    const data = { ...((rest.data ?? {}) as Record<string, string>) }
    for (const [k, v] of Object.entries(stringData ?? {})) data[k] = Buffer.from(String(v)).toString('base64')
    return {
      ...rest,
      type: rest.type ?? 'Opaque',
      ...(Object.keys(data).length ? { data } : {}),
    } as KubeObject
  }
  if (type.resource === 'namespaces')
    return {
      ...object,
      metadata: {
        ...object.metadata,
        labels: {
          ...((object.metadata.labels ?? {}) as object),
          'kubernetes.io/metadata.name': object.metadata.name,
        },
      },
      spec: { finalizers: ['kubernetes'] },
    }
  if (
    type.group === 'apps' &&
    (type.kind === 'Deployment' || type.kind === 'StatefulSet' || type.kind === 'ReplicaSet')
  ) {
    const spec = (object.spec ?? {}) as Record<string, unknown>
    if (spec.replicas === undefined) return { ...object, spec: { ...spec, replicas: 1 } }
  }
  return object
}

async function requireNamespace(ctx: RestContext, namespace: string) {
  const ns = await ctx.store.get(ctx.cluster.id, typeByResource('', 'namespaces'), '', namespace)
  if (!ns)
    throw new ApiError(404, 'NotFound', `namespaces "${namespace}" not found`, {
      name: namespace,
      kind: 'namespaces',
    })
}

/** Checks identity (kind, apiVersion, name, namespace) of a body against the URL. */
function identify(type: ResourceType, target: Target, body: unknown): KubeObject {
  if (!isRecord(body)) throw new ApiError(400, 'BadRequest', 'the body of the request must be an object')
  const apiVersion = body.apiVersion ?? groupVersionOf(type)
  const kind = body.kind ?? type.kind
  if (kind !== type.kind || apiVersion !== groupVersionOf(type))
    throw new ApiError(
      400,
      'BadRequest',
      `the API version in the data (${String(apiVersion)}) does not match the expected API version (${groupVersionOf(type)})`,
    )
  const metadata = isRecord(body.metadata) ? { ...body.metadata } : {}
  if (type.namespaced) {
    if (metadata.namespace !== undefined && metadata.namespace !== target.namespace)
      throw new ApiError(
        400,
        'BadRequest',
        'the namespace of the provided object does not match the namespace sent on the request',
      )
    metadata.namespace = target.namespace
  } else delete metadata.namespace
  if (target.name !== undefined) {
    if (metadata.name !== undefined && metadata.name !== target.name)
      throw new ApiError(
        400,
        'BadRequest',
        `the name of the object (${String(metadata.name)}) does not match the name on the URL (${target.name})`,
      )
    metadata.name = target.name
  }
  return { ...body, apiVersion, kind, metadata } as unknown as KubeObject
}

const finalizersOf = (object: KubeObject): string[] =>
  Array.isArray(object.metadata.finalizers) ? (object.metadata.finalizers as string[]) : []

/** apimachinery's ValidateNoNewFinalizers: an object being deleted may only lose finalizers. */
function noNewFinalizers(live: KubeObject, next: KubeObject): Cause[] {
  const had = new Set(finalizersOf(live))
  const added = [...new Set(finalizersOf(next).filter((f) => !had.has(f)))].sort()
  if (added.length === 0) return []
  return [
    {
      field: 'metadata.finalizers',
      // Go's %#v of the []string, as kube-apiserver prints it.
      message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{${added.map((f) => JSON.stringify(f)).join(', ')}}`,
      reason: 'FieldValueForbidden',
    },
  ]
}

/** Writes a new or changed object: keeps system fields, bumps generation, tracks field owners. */
function prepare(
  type: ResourceType,
  live: KubeObject | undefined,
  next: KubeObject,
  manager: string | undefined,
  subresource: string | undefined,
): KubeObject {
  const now = rfc3339(new Date())
  let object: KubeObject = { ...next, metadata: { ...next.metadata } }
  let schemaCauses: FieldCause[] = []
  // The server's own metadata: what the client sent is ignored (managedFields are kept for apply).
  for (const key of unmanagedMetadata)
    if (key !== 'managedFields' && key !== 'name' && key !== 'namespace') delete object.metadata[key]
  // Only DELETE marks an object as being deleted: clients can neither set nor clear the mark.
  delete object.metadata.deletionGracePeriodSeconds
  let metadataCauses: Cause[] = []
  if (live) {
    object.metadata.uid = live.metadata.uid
    object.metadata.creationTimestamp = live.metadata.creationTimestamp
    object.metadata.generation = live.metadata.generation
    if (live.metadata.deletionTimestamp !== undefined) {
      object.metadata.deletionTimestamp = live.metadata.deletionTimestamp
      object.metadata.deletionGracePeriodSeconds = live.metadata.deletionGracePeriodSeconds
      metadataCauses = noNewFinalizers(live, object)
    }
    if (subresource === 'status') object = { ...live, status: next.status, metadata: { ...live.metadata } }
    else if (type.subresources?.status) object.status = live.status
    // Pruned and defaulted before comparing, so an unknown field sent does not bump generation.
    if (type.storageVersion) ({ object, causes: schemaCauses } = conformToSchema(type, object))
    if (specOf(object) !== specOf(live) && live.metadata.generation !== undefined)
      object.metadata.generation = Number(live.metadata.generation) + 1
  } else {
    object.metadata.uid = randomUUID()
    object.metadata.creationTimestamp = now
    if (object.spec !== undefined || type.group === 'apps') object.metadata.generation = 1
    if (type.subresources?.status && type.resource !== 'namespaces') delete object.status
    object = withDefaults(type, object)
    if (type.storageVersion) ({ object, causes: schemaCauses } = conformToSchema(type, object))
  }
  if (!live || subresource !== 'status') validate(type, object, [...metadataCauses, ...schemaCauses])
  else if (schemaCauses.length > 0) throw invalid(type, object.metadata.name, schemaCauses)
  if (manager !== undefined) {
    const { resourceVersion: _r, ...before } = (live?.metadata ?? {}) as Record<string, unknown>
    object = recordUpdate(
      live ? { ...live, metadata: before as KubeObject['metadata'] } : undefined,
      object,
      {
        manager,
        now,
        apiVersion: groupVersionOf(type),
        ...(subresource ? { subresource } : {}),
      },
    ) as KubeObject
  }
  return object
}

function stored(error: unknown, type: ResourceType, name: string): never {
  if (error instanceof StoreConflict) {
    if (error.reason === 'AlreadyExists')
      throw new ApiError(409, 'AlreadyExists', `${qualified(type)} "${name}" already exists`, {
        name,
        group: type.group,
        kind: type.resource,
      })
    if (error.reason === 'NotFound') throw notFound(type, name)
    throw new ApiError(
      409,
      'Conflict',
      `Operation cannot be fulfilled on ${qualified(type)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
      { name, group: type.group, kind: type.resource },
    )
  }
  throw error
}

async function create(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const { type } = target
  if (type.readOnly) throw new ApiError(405, 'MethodNotAllowed', `${type.resource} are managed by Kiln`)
  const body = identify(type, target, await readObject(req))
  if (!body.metadata.name) {
    const prefix = body.metadata.generateName
    if (typeof prefix !== 'string' || prefix === '')
      throw invalid(type, '', [
        {
          field: 'metadata.name',
          message: 'Required value: name or generateName is required',
          reason: 'FieldValueRequired',
        },
      ])
    body.metadata.name = `${prefix}${randomBytes(4).toString('hex').slice(0, 5)}`
  }
  if (type.namespaced) await requireNamespace(ctx, target.namespace!)
  const object = prepare(type, undefined, decoded(type, body, url, res), fieldManagerOf(req, url), undefined)
  if (dryRun(url)) return send(res, 201, await written(ctx, type, object))
  const created = await ctx.store
    .create(ctx.cluster.id, type, object)
    .catch((e) => stored(e, type, object.metadata.name))
  if (type.resource === 'namespaces')
    await ctx.store
      .create(ctx.cluster.id, typeByResource('', 'serviceaccounts'), {
        apiVersion: 'v1',
        kind: 'ServiceAccount',
        metadata: {
          name: 'default',
          namespace: created.metadata.name,
          uid: randomUUID(),
          creationTimestamp: created.metadata.creationTimestamp,
        },
      })
      .catch((e: unknown) => {
        if (!(e instanceof StoreConflict)) throw e
      })
  return send(res, 201, await written(ctx, type, created))
}

/** Read, change, write with the version read; retried when someone else wrote in between. */
async function readModifyWrite(
  ctx: RestContext,
  target: Target,
  change: (live: KubeObject | undefined) => Promise<KubeObject | 'unchanged'>,
  options: { createIfMissing?: boolean; dryRun?: boolean },
): Promise<{ object: KubeObject; created: boolean }> {
  const { type } = target
  const namespace = type.namespaced ? (target.namespace ?? '') : ''
  for (let attempt = 0; ; attempt++) {
    const live = await ctx.store.get(ctx.cluster.id, type, namespace, target.name!)
    if (!live && !options.createIfMissing) throw notFound(type, target.name!)
    const next = await change(live)
    if (next === 'unchanged') return { object: live!, created: false }
    if (options.dryRun) return { object: next, created: !live }
    try {
      if (!live) {
        if (type.namespaced) await requireNamespace(ctx, namespace)
        return { object: await ctx.store.create(ctx.cluster.id, type, next), created: true }
      }
      // An object being deleted goes once a write leaves it without finalizers.
      const remove = live.metadata.deletionTimestamp !== undefined && finalizersOf(next).length === 0
      return {
        object: await ctx.store.update(ctx.cluster.id, type, next, String(live.metadata.resourceVersion), {
          remove,
        }),
        created: false,
      }
    } catch (error) {
      if (error instanceof StoreConflict && attempt < 5) continue
      stored(error, type, target.name!)
    }
  }
}

/**
 * A built-in kind's body decoded as kube-apiserver decodes it (builtin-schema.ts): a value of the
 * wrong type is a 400, unknown fields are refused under fieldValidation=Strict (what kubectl sends),
 * reported in Warning headers under Warn (the server's default) and dropped, and missing required
 * fields are a 422.
 */
function decoded(type: ResourceType, object: KubeObject, url: URL, res: ServerResponse): KubeObject {
  if (!builtinResources.includes(type)) return object
  const result = decodeBuiltin(type.group, type.version, type.kind, object)
  if (!result) return object
  const handledAs = `${type.kind} in version "${type.version}" cannot be handled as a ${type.kind}`
  if (result.decodeError) throw new ApiError(400, 'BadRequest', `${handledAs}: ${result.decodeError}`)
  const mode = url.searchParams.get('fieldValidation') ?? 'Warn'
  if (result.unknown.length > 0 && mode === 'Strict')
    throw new ApiError(
      400,
      'BadRequest',
      `${handledAs}: strict decoding error: ${result.unknown.map((f) => `unknown field "${f}"`).join(', ')}`,
    )
  if (result.unknown.length > 0 && mode === 'Warn')
    res.setHeader(
      'Warning',
      result.unknown.map((f) => `299 - ${JSON.stringify(`unknown field ${JSON.stringify(f)}`)}`),
    )
  if (result.causes.length > 0) throw invalid(type, object.metadata.name, result.causes)
  return result.object as KubeObject
}

async function update(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const { type } = target
  const raw = await readObject(req)
  const manager = fieldManagerOf(req, url)
  if (target.subresource === 'scale') {
    const replicas = (isRecord(raw) && isRecord(raw.spec) ? raw.spec.replicas : undefined) as
      | number
      | undefined
    return changeScale(res, ctx, target, replicas, manager, dryRun(url))
  }
  const body = identify(type, { ...target, subresource: undefined }, raw)
  const wanted = body.metadata.resourceVersion
  const { object } = await readModifyWrite(
    ctx,
    target,
    async (live) => {
      if (wanted !== undefined && wanted !== live!.metadata.resourceVersion)
        stored(new StoreConflict('Conflict'), type, target.name!)
      return prepare(type, live, decoded(type, body, url, res), manager, target.subresource)
    },
    { dryRun: dryRun(url) },
  )
  return send(res, 200, await written(ctx, type, object))
}

async function changeScale(
  res: ServerResponse,
  ctx: RestContext,
  target: Target,
  replicas: unknown,
  manager: string,
  isDryRun: boolean,
) {
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0)
    throw new ApiError(
      422,
      'Invalid',
      `Scale.autoscaling "${target.name}" is invalid: spec.replicas: Invalid value: must be greater than or equal to 0`,
    )
  const { object } = await readModifyWrite(
    ctx,
    target,
    async (live) =>
      prepare(
        target.type,
        live,
        { ...live!, spec: { ...(live!.spec as object), replicas } },
        manager,
        'scale',
      ),
    { dryRun: isDryRun },
  )
  return send(res, 200, scaleOf(await decorate(new ReadScope(ctx), target.type, object)))
}

async function patch(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const { type } = target
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim()
  const isApply = contentType === 'application/apply-patch+yaml'
  const body = await readObject(req, isApply)
  const isCustom = !builtinResources.includes(type)
  const manager = url.searchParams.get('fieldManager') ?? undefined
  if (isApply && !manager)
    throw new ApiError(
      422,
      'Invalid',
      'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
    )
  const force = url.searchParams.get('force') === 'true'
  const patchWith = (live: KubeObject): KubeObject => {
    switch (contentType) {
      case 'application/json-patch+json':
        return jsonPatch(live, body) as KubeObject
      case 'application/merge-patch+json':
        return mergePatch(live, body) as KubeObject
      case 'application/strategic-merge-patch+json':
        if (isCustom)
          throw new ApiError(
            415,
            'UnsupportedMediaType',
            'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml',
          )
        if (!isRecord(body)) throw new ApiError(400, 'BadRequest', 'the patch must be an object')
        return strategicMergePatch(live, body) as KubeObject
      default:
        throw new ApiError(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`,
        )
    }
  }

  if (target.subresource === 'scale') {
    const live = await findOne(new ReadScope(ctx), target)
    if (!live) throw notFound(type, target.name!)
    const scaled = isApply ? (body as KubeObject) : patchWith(scaleOf(live))
    return changeScale(
      res,
      ctx,
      target,
      (scaled.spec as { replicas?: unknown } | undefined)?.replicas,
      manager ?? fieldManagerOf(req, url),
      dryRun(url),
    )
  }

  // A resourceVersion in the patch is a precondition, as kube-apiserver makes it: the writer's
  // optimistic concurrency (any patch type, server-side apply included).
  const wanted = isRecord(body) && isRecord(body.metadata) ? body.metadata.resourceVersion : undefined
  const { object, created } = await readModifyWrite(
    ctx,
    target,
    async (live) => {
      if (wanted !== undefined && wanted !== null && live && String(wanted) !== live.metadata.resourceVersion)
        stored(new StoreConflict('Conflict'), type, target.name!)
      if (isApply) {
        // Fields a custom resource's schema prunes are not owned by the applier either.
        const identified = decoded(
          type,
          identify(type, { ...target, subresource: undefined }, body),
          url,
          res,
        )
        const applied = type.schema?.()?.prune(identified) ?? identified
        if (!live) {
          const fresh = prepare(type, undefined, applied, undefined, undefined)
          try {
            return serverSideApply(undefined, fresh, {
              manager: manager!,
              force,
              now: rfc3339(new Date()),
              apiVersion: groupVersionOf(type),
            }) as KubeObject
          } catch (error) {
            throw conflictOf(error, type, target.name!)
          }
        }
        let merged: KubeObject
        try {
          merged = serverSideApply(live, applied, {
            manager: manager!,
            force,
            now: rfc3339(new Date()),
            apiVersion: groupVersionOf(type),
            ...(target.subresource ? { subresource: target.subresource } : {}),
          }) as KubeObject
        } catch (error) {
          throw conflictOf(error, type, target.name!)
        }
        const next = prepare(type, live, merged, undefined, target.subresource)
        next.metadata.managedFields = merged.metadata.managedFields
        return sameObject(live, next) ? 'unchanged' : next
      }
      if (body === undefined) throw new ApiError(400, 'BadRequest', 'the patch is empty')
      // A custom resource is patched as the requested version serves it.
      const patched = patchWith(type.storageVersion ? servedAs(type, live!) : live!)
      const next = prepare(
        type,
        live,
        decoded(
          type,
          { ...patched, metadata: { ...(patched.metadata ?? {}), name: target.name! } } as KubeObject,
          url,
          res,
        ),
        manager ?? fieldManagerOf(req, url),
        target.subresource,
      )
      return sameObject(live!, next) ? 'unchanged' : next
    },
    { createIfMissing: isApply && target.subresource === undefined, dryRun: dryRun(url) },
  )
  return send(res, created ? 201 : 200, await written(ctx, type, object))
}

/** A write that changes nothing does not bump resourceVersion, as in Kubernetes. */
function sameObject(live: KubeObject, next: KubeObject) {
  const strip = (o: KubeObject) => {
    const { resourceVersion: _r, managedFields, ...metadata } = o.metadata
    const fields = ((managedFields ?? []) as { time?: string }[]).map(({ time: _t, ...rest }) => rest)
    return JSON.stringify({ ...o, metadata: { ...metadata, managedFields: fields } })
  }
  return strip(live) === strip(next)
}

function conflictOf(error: unknown, type: ResourceType, name: string) {
  if (!(error instanceof ApplyConflictError)) return error
  return new ApiError(409, 'Conflict', error.message, {
    name,
    group: type.group,
    kind: type.resource,
    causes: error.conflicts.map((c) => ({
      reason: 'FieldManagerConflict',
      message: `conflict with "${c.manager}"${c.operation === 'Update' && c.apiVersion ? ` using ${c.apiVersion}` : ''}`,
      field: c.field,
    })),
  })
}

/**
 * DeleteOptions as read. `propagationPolicy` and `gracePeriodSeconds` (body or query) are accepted
 * and ignored: there is no garbage collector to delete dependents (nor to hold an owner with the
 * `foregroundDeletion` or `orphan` finalizers) and no kubelet to wait for, so every object goes at
 * once unless its own finalizers hold it.
 */
async function deleteOptions(req: IncomingMessage) {
  const body = await readObject(req)
  return (isRecord(body) ? body : {}) as {
    preconditions?: { uid?: string; resourceVersion?: string }
    dryRun?: string[]
  }
}

/** What DELETE does to an object with finalizers: marks it, for its finalizers' controllers to see. */
function markedForDeletion(live: KubeObject): KubeObject {
  const { generation } = live.metadata
  return {
    ...live,
    metadata: {
      ...live.metadata,
      deletionTimestamp: rfc3339(new Date()),
      deletionGracePeriodSeconds: 0,
      ...(typeof generation === 'number' && generation > 0 ? { generation: generation + 1 } : {}),
    },
  }
}

/**
 * Deletes an object, or (with finalizers) marks it as being deleted; a marked object is answered
 * as it is. `expectedVersion` is the version the caller checked preconditions against; without
 * it a concurrent write is retried on the fresh object. Namespaces go at once with their contents.
 */
async function removeObject(
  ctx: RestContext,
  type: ResourceType,
  namespace: string,
  name: string,
  isDryRun: boolean,
  expectedVersion?: string,
): Promise<KubeObject> {
  if (type.resource === 'namespaces' && protectedNamespaces.has(name))
    throw new ApiError(
      403,
      'Forbidden',
      `namespaces "${name}" is forbidden: this namespace may not be deleted`,
      { name, kind: 'namespaces' },
    )
  for (let attempt = 0; ; attempt++) {
    const live = await ctx.store.get(ctx.cluster.id, type, namespace, name)
    if (!live) throw notFound(type, name)
    const version = String(live.metadata.resourceVersion)
    if (expectedVersion !== undefined && version !== expectedVersion)
      stored(new StoreConflict('Conflict'), type, name)
    const held = type.resource !== 'namespaces' && finalizersOf(live).length > 0
    if (held && live.metadata.deletionTimestamp !== undefined) return live
    if (isDryRun) return held ? markedForDeletion(live) : live
    try {
      if (held) return await ctx.store.update(ctx.cluster.id, type, markedForDeletion(live), version)
      const deleted = await ctx.store.remove(ctx.cluster.id, type, namespace, name, version)
      if (type.resource === 'namespaces')
        await ctx.store.removeNamespaceContents(
          ctx.cluster.id,
          await typesOf(ctx.store, ctx.cluster.id),
          name,
        )
      return deleted
    } catch (error) {
      if (error instanceof StoreConflict && expectedVersion === undefined && attempt < 5) continue
      stored(error, type, name)
    }
  }
}

async function remove(req: IncomingMessage, res: ServerResponse, ctx: RestContext, target: Target, url: URL) {
  const { type } = target
  const options = await deleteOptions(req)
  const isDryRun = dryRun(url) || (options.dryRun ?? []).includes('All')
  const namespace = type.namespaced ? (target.namespace ?? '') : ''
  const live = await ctx.store.get(ctx.cluster.id, type, namespace, target.name!)
  if (!live) {
    // A controller's pod: deleting it is allowed, and its controller replaces it (same name here).
    const pod = type.resource === 'pods' ? await findOne(new ReadScope(ctx), target) : undefined
    if (!pod) throw notFound(type, target.name!)
    return send(res, 200, pod)
  }
  const pre = options.preconditions ?? {}
  if (
    (pre.uid && pre.uid !== live.metadata.uid) ||
    (pre.resourceVersion && pre.resourceVersion !== live.metadata.resourceVersion)
  )
    stored(new StoreConflict('Conflict'), type, target.name!)
  const deleted = await removeObject(
    ctx,
    type,
    namespace,
    target.name!,
    isDryRun,
    String(live.metadata.resourceVersion),
  )
  const shown = await decorate(new ReadScope(ctx), type, deleted)
  if (type.resource === 'namespaces')
    return send(res, 200, {
      ...shown,
      metadata: { ...shown.metadata, deletionTimestamp: rfc3339(new Date()) },
      status: { phase: 'Terminating' },
    })
  return send(res, 200, shown)
}

async function removeCollection(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RestContext,
  target: Target,
  url: URL,
) {
  const { type } = target
  if (type.readOnly) throw new ApiError(405, 'MethodNotAllowed', `${type.resource} are managed by Kiln`)
  const options = await deleteOptions(req)
  const isDryRun = dryRun(url) || (options.dryRun ?? []).includes('All')
  const { narrow, matches } = selection(url)
  const victims = (await ctx.store.list(ctx.cluster.id, type, target.namespace, narrow)).filter(matches)
  const deleted: KubeObject[] = []
  for (const object of victims) {
    try {
      deleted.push(
        await removeObject(
          ctx,
          type,
          type.namespaced ? String(object.metadata.namespace) : '',
          object.metadata.name,
          isDryRun,
        ),
      )
    } catch (error) {
      // Gone meanwhile, or protected: deletecollection skips what it cannot delete.
      if (!(error instanceof ApiError)) throw error
    }
  }
  return send(res, 200, {
    kind: type.listKind,
    apiVersion: groupVersionOf(type),
    metadata: { resourceVersion: String(await ctx.store.currentVersion(ctx.cluster.id)) },
    items: deleted,
  })
}
