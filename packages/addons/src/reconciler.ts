import {
  ApiException,
  type Configuration,
  createConfiguration,
  FetchError,
  type KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  ServerConfiguration,
  type V1APIResource,
} from '@kubernetes/client-node'
import { AddonError, AddonErrorCode, type AddonVerb } from './errors.ts'
import { type AddonKind, addonKindOf, addonKinds, apiGroupOf } from './kinds.ts'
import { AddonLabel, type AddonManifest, addonSelector, type KubeObject, managedByKiln } from './model.ts'

export interface ReconcileOptions {
  /** Server-side apply field manager; `kiln` unless told. */
  fieldManager?: string
  /** Stops between and during requests; the promise then rejects with the signal's reason. */
  signal?: AbortSignal
  /**
   * Whether to remove what Kiln applied before and no longer wants (default true). A cluster's
   * first install has nothing to prune and may skip the listing.
   */
  prune?: boolean
}

export interface ReconcileResult {
  /** Objects server-side applied. */
  applied: number
  /** Objects deleted because no desired add-on has them: `Kind/namespace/name`, or `Kind/name` when cluster-scoped. */
  pruned: string[]
}

/** Namespaces Kubernetes itself owns: never pruned, whatever labels they carry. */
const systemNamespaces = new Set(['default', 'kube-system', 'kube-public', 'kube-node-lease'])

/** Objects read per list request while pruning. */
const listPageSize = 250

/**
 * Brings a cluster's add-ons to `desired`: server-side applies every object (field manager `kiln`,
 * forcing conflicts: Kiln owns its add-ons, like a GitOps controller running
 * `kubectl apply --server-side --force-conflicts`), then deletes every object labelled as a Kiln add-on
 * that no desired add-on has. Idempotent: a second run with the same input changes nothing.
 *
 * Order matters: namespaces (and CRDs) first so that what lives in them can be created, then
 * cluster-scoped RBAC so workloads start with their permissions, then the rest in manifest order.
 * Pruning runs after applying, so a replaced add-on (traefik → nginx) is removed only once its
 * successor is in place, and deletes namespaces last. The first failure stops the run with an
 * AddonError naming the object.
 */
export async function reconcileAddons(
  kubeConfig: KubeConfig,
  desired: readonly AddonManifest[],
  options: ReconcileOptions = {},
): Promise<ReconcileResult> {
  const { signal } = options
  const objects = applyOrder(desired)
  const client = objectApi(kubeConfig, signal)
  const applied = await applyObjects(kubeConfig, objects, options, client)

  if (options.prune === false) return { applied, pruned: [] }
  const wanted = new Set(objects.map((o) => identityOf(o.apiVersion, o.kind, o.metadata)))
  const listed = await Promise.all(
    addonKinds.map(async (kind) => ({ kind, items: await listManaged(client, kind, signal) })),
  )
  const stale: KubeObject[] = []
  for (const { kind, items } of listed) {
    for (const metadata of items) {
      if (wanted.has(identityOf(kind.apiVersion, kind.kind, metadata))) continue
      if (kind.kind === 'Namespace' && systemNamespaces.has(metadata.name)) continue
      stale.push({ apiVersion: kind.apiVersion, kind: kind.kind, metadata })
    }
  }

  // Namespaces last: deleting one deletes what is in it, which would turn the other deletes into 404s.
  const pruned: string[] = []
  const prune = async (object: KubeObject) => {
    const ref = refOf(object)
    try {
      await call(signal, 'delete', ref, () =>
        client.delete(object, undefined, undefined, undefined, undefined, 'Background'),
      )
    } catch (error) {
      if (!(error instanceof AddonError && error.status === 404)) throw error
    }
    pruned.push(ref)
  }
  await eachLimited(
    stale.filter((o) => o.kind !== 'Namespace'),
    prune,
  )
  await eachLimited(
    stale.filter((o) => o.kind === 'Namespace'),
    prune,
  )
  return { applied, pruned }
}

/** How many requests one reconcile has in flight at most. */
const concurrency = 8

/** Runs `fn` over `items`, at most `concurrency` at a time; the first failure rejects (the rest finish). */
async function eachLimited<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const lane = async () => {
    while (next < items.length) await fn(items[next++]!)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, lane))
}

/** `Deployment/kube-system/coredns`, or `ClusterRole/traefik` for a cluster-scoped object. */
/**
 * Server-side applies objects (forcing conflicts), namespaces and CRDs first, then RBAC, then the
 * rest; the first failure is an AddonError naming the object. Returns how many were applied.
 */
export async function applyObjects(
  kubeConfig: KubeConfig,
  objects: readonly KubeObject[],
  options: Pick<ReconcileOptions, 'fieldManager' | 'signal'> = {},
  client = objectApi(kubeConfig, options.signal),
): Promise<number> {
  const { signal } = options
  const fieldManager = options.fieldManager ?? 'kiln'
  // Each rank waits for the one before (namespaces before what lives in them); within a rank the
  // objects are independent, so a few go at once.
  let applied = 0
  for (const rank of [0, 1, 2]) {
    await eachLimited(
      objects.filter((o) => applyRank(o.kind) === rank),
      async (object) => {
        await call(signal, 'apply', refOf(object), () =>
          client.patch(object, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
        )
        applied++
      },
    )
  }
  return applied
}

export const refOf = (object: Pick<KubeObject, 'kind' | 'metadata'>): string =>
  [object.kind, object.metadata.namespace, object.metadata.name].filter(Boolean).join('/')

/** Identity for pruning: the API group (not its version), kind, namespace and name. */
const identityOf = (apiVersion: string, kind: string, metadata: { name: string; namespace?: string }) =>
  `${apiGroupOf(apiVersion)}/${kind}/${metadata.namespace ?? ''}/${metadata.name}`

const applyRank = (kind: string): number =>
  kind === 'Namespace' || kind === 'CustomResourceDefinition'
    ? 0
    : kind === 'ClusterRole' || kind === 'ClusterRoleBinding'
      ? 1
      : 2

/** The desired objects, checked (so that pruning will find them again) and in apply order. */
function applyOrder(desired: readonly AddonManifest[]): KubeObject[] {
  const seen = new Set<string>()
  const objects: KubeObject[] = []
  for (const addon of desired) {
    for (const object of addon.objects) {
      const ref = refOf(object)
      const refuse = (why: string) => new AddonError(AddonErrorCode.invalidRequest, 'plan', ref, why)
      const kind = addonKindOf(object.apiVersion, object.kind)
      if (!kind)
        throw refuse(`${object.apiVersion} ${object.kind} is not in addonKinds, so it could never be pruned.`)
      if (kind.namespaced !== (object.metadata.namespace !== undefined)) {
        throw refuse(
          kind.namespaced
            ? 'a namespaced kind needs metadata.namespace.'
            : 'a cluster-scoped kind has no namespace.',
        )
      }
      const labels = object.metadata.labels ?? {}
      if (labels[AddonLabel.managedBy] !== managedByKiln || !labels[AddonLabel.addon]) {
        throw refuse(`it lacks the labels ${AddonLabel.managedBy}=${managedByKiln} and ${AddonLabel.addon}.`)
      }
      const identity = identityOf(object.apiVersion, object.kind, object.metadata)
      if (seen.has(identity)) throw refuse(`it is desired twice (the second time by add-on ${addon.name}).`)
      seen.add(identity)
      objects.push(object)
    }
  }
  // Array.prototype.sort is stable: manifest order is kept within a rank.
  return objects.sort((a, b) => applyRank(a.kind) - applyRank(b.kind))
}

/** Every object of one kind carrying the add-on labels, in all namespaces; none if the kind is not served. */
async function listManaged(
  client: KubernetesObjectApi,
  kind: AddonKind,
  signal: AbortSignal | undefined,
): Promise<KubeObject['metadata'][]> {
  const found: KubeObject['metadata'][] = []
  let continueToken: string | undefined
  do {
    let page: Awaited<ReturnType<KubernetesObjectApi['list']>>
    try {
      page = await call(signal, 'list', kind.kind, () =>
        client.list(
          kind.apiVersion,
          kind.kind,
          undefined,
          undefined,
          undefined,
          undefined,
          undefined,
          addonSelector,
          listPageSize,
          continueToken,
        ),
      )
    } catch (error) {
      // A kind the server does not serve has no objects Kiln could have created.
      if (error instanceof AddonError && error.status === 404) return found
      throw error
    }
    for (const item of page.items) {
      const name = item.metadata?.name
      if (!name) continue
      found.push(item.metadata?.namespace ? { name, namespace: item.metadata.namespace } : { name })
    }
    continueToken = page.metadata?._continue || undefined
  } while (continueToken)
  return found
}

/**
 * KubernetesObjectApi learns each kind's plural and scope from discovery (`GET /apis/apps/v1` …).
 * Every kind an add-on produces is in addonKinds with both, so discovery is skipped for them.
 */
class AddonObjectApi extends KubernetesObjectApi {
  protected override async resource(
    apiVersion: string,
    kind: string,
    options?: Configuration,
  ): Promise<V1APIResource | undefined> {
    const known = addonKindOf(apiVersion, kind)
    if (!known) return super.resource(apiVersion, kind, options)
    return {
      kind: known.kind,
      name: known.plural,
      namespaced: known.namespaced,
      singularName: known.kind.toLowerCase(),
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    }
  }
}

/** Like KubeConfig.makeApiClient, plus the abort signal on every request. */
function objectApi(kubeConfig: KubeConfig, signal: AbortSignal | undefined): KubernetesObjectApi {
  const cluster = kubeConfig.getCurrentCluster()
  if (!cluster) {
    throw new AddonError(AddonErrorCode.invalidRequest, 'plan', 'kubeconfig', 'it has no current cluster.')
  }
  return new AddonObjectApi(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: kubeConfig },
      promiseMiddleware: signal
        ? [
            {
              pre: async (context) => {
                context.setSignal(signal)
                return context
              },
              post: async (response) => response,
            },
          ]
        : [],
    }),
  )
}

/** Runs one request; an abort rejects with the signal's reason, any other failure becomes an AddonError. */
async function call<T>(
  signal: AbortSignal | undefined,
  verb: AddonVerb,
  object: string,
  request: () => Promise<T>,
): Promise<T> {
  signal?.throwIfAborted()
  try {
    return await request()
  } catch (error) {
    if (signal?.aborted) throw signal.reason
    throw toAddonError(error, verb, object)
  }
}

/**
 * Node's and OpenSSL's codes for a TLS setup that cannot succeed: a server certificate that does not
 * verify, an unusable key or certificate of ours, TLS spoken to a plain port. Retrying cannot help.
 */
const tlsFailure =
  /^(ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_|ERR_OSSL_|ERR_SSL_)/

interface KubeStatus {
  message?: string
  reason?: string
  details?: { causes?: { reason?: string }[] }
}

function toAddonError(error: unknown, verb: AddonVerb, object: string): AddonError {
  if (error instanceof ApiException) {
    const status = error.code
    const body = parseStatus(error.body)
    const detail = `${status}${body.reason ? ` ${body.reason}` : ''}: ${body.message ?? '(no message)'}`
    const terminating = (body.details?.causes ?? []).some((c) => c.reason === 'NamespaceTerminating')
    const code =
      status === 409 || (status === 403 && terminating)
        ? AddonErrorCode.conflict
        : status === 429
          ? AddonErrorCode.throttled
          : status >= 500
            ? AddonErrorCode.serverError
            : status === 401 || status === 403
              ? AddonErrorCode.unauthorized
              : AddonErrorCode.rejected
    return new AddonError(code, verb, object, detail, { status, cause: error })
  }
  if (error instanceof FetchError) {
    const code = tlsFailure.test(error.code ?? '') ? AddonErrorCode.tls : AddonErrorCode.unreachable
    return new AddonError(code, verb, object, error.message, { cause: error })
  }
  const message = error instanceof Error ? error.message : String(error)
  return new AddonError(AddonErrorCode.rejected, verb, object, message, { cause: error })
}

/** The API server answers errors with a Status object; a proxy in between may answer anything. */
function parseStatus(body: unknown): KubeStatus {
  if (typeof body === 'object' && body !== null) return body as KubeStatus
  if (typeof body !== 'string') return {}
  try {
    const parsed = JSON.parse(body) as unknown
    if (typeof parsed === 'object' && parsed !== null) return parsed as KubeStatus
  } catch {
    // not JSON
  }
  return { message: body.slice(0, 300) }
}
