import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { type FeatureValues, featureCatalogue, featureNames, type PartialFeatureValues } from '@kiln/domain'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import {
  AddonError,
  type AddonInput,
  type AddonManifest,
  addonKubeConfig,
  desiredAddons,
  type KubeObject,
  reconcileAddons,
} from '../src/index.ts'

// openssl is installed by scripts/test-tools.sh: these tests never skip.

const serverName = 'c1.clusters.sim.kiln.internal'
const selector = 'app.kubernetes.io/managed-by=kiln,kiln.dev/addon'

interface Pki {
  caPem: string
  serverCertPem: string
  serverKeyPem: string
  clientCertPem: string
  clientKeyPem: string
}

/** A cluster CA, a serving certificate for `serverName` only (not 127.0.0.1), and a client certificate. */
function makePki(dir: string): Pki {
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    '/CN=test-cluster-ca',
    '-days',
    '1',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  )
  const issue = (name: string, subject: string, extensions: string) => {
    writeFileSync(join(dir, `${name}.ext`), extensions)
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject)
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    )
  }
  issue('server', '/CN=kube-apiserver', `subjectAltName=DNS:${serverName}\nextendedKeyUsage=serverAuth\n`)
  issue('client', '/O=system:masters/CN=kiln-addons', 'extendedKeyUsage=clientAuth\n')
  const read = (file: string) => readFileSync(join(dir, file), 'utf8')
  return {
    caPem: read('ca.crt'),
    serverCertPem: read('server.crt'),
    serverKeyPem: read('server.key'),
    clientCertPem: read('client.crt'),
    clientKeyPem: read('client.key'),
  }
}

interface Recorded {
  method: string
  /** Decoded path, without the query. */
  path: string
  query: URLSearchParams
  contentType: string | undefined
  servername: string | false | null
  clientCommonName: string | string[] | undefined
  body: unknown
}

type Answer = { status: number; body: unknown }

/** The resources this fake API server serves, as a real one would list them in discovery. */
const served: Record<string, { kind: string; namespaced: boolean }> = {
  '/api/v1/namespaces': { kind: 'Namespace', namespaced: false },
  '/api/v1/serviceaccounts': { kind: 'ServiceAccount', namespaced: true },
  '/api/v1/configmaps': { kind: 'ConfigMap', namespaced: true },
  '/api/v1/services': { kind: 'Service', namespaced: true },
  '/apis/rbac.authorization.k8s.io/v1/clusterroles': { kind: 'ClusterRole', namespaced: false },
  '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings': { kind: 'ClusterRoleBinding', namespaced: false },
  '/apis/rbac.authorization.k8s.io/v1/roles': { kind: 'Role', namespaced: true },
  '/apis/rbac.authorization.k8s.io/v1/rolebindings': { kind: 'RoleBinding', namespaced: true },
  '/apis/networking.k8s.io/v1/ingressclasses': { kind: 'IngressClass', namespaced: false },
  '/apis/apps/v1/deployments': { kind: 'Deployment', namespaced: true },
  '/apis/apps/v1/daemonsets': { kind: 'DaemonSet', namespaced: true },
  '/apis/apps/v1/statefulsets': { kind: 'StatefulSet', namespaced: true },
}

const status = (code: number, reason: string, message: string, details?: unknown): Answer => ({
  status: code,
  body: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code, details },
})

function matchesSelector(labels: Record<string, string>, expression: string): boolean {
  return expression
    .split(',')
    .filter(Boolean)
    .every((term) => {
      const [key, value] = term.split(/!=|==?/)
      if (term.startsWith('!')) return !(term.slice(1) in labels)
      if (term.includes('!=')) return labels[key!] !== value
      if (term.includes('=')) return labels[key!] === value
      return key! in labels
    })
}

/**
 * A Kubernetes API server reduced to what add-ons need, over mutual TLS, recording every request:
 * server-side apply (PATCH, application/apply-patch+yaml, fieldManager), collection GETs with label
 * selectors across namespaces, DELETE. Objects in a namespace need the namespace to exist, as on a
 * real server. No discovery: it answers 404, and the tests check that none is asked for.
 */
class FakeApiServer {
  readonly requests: Recorded[] = []
  /** Stored objects by their path (`/apis/apps/v1/namespaces/x/deployments/y`). */
  readonly objects = new Map<string, KubeObject>()
  /** Answers a request before the store does, when it returns an answer. */
  intercept: ((request: Recorded) => Answer | undefined) | undefined
  private readonly server: https.Server
  url = ''

  constructor(pki: Pki) {
    this.server = https.createServer(
      {
        key: pki.serverKeyPem,
        cert: pki.serverCertPem,
        ca: pki.caPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (req, res) => {
        const chunks: Buffer[] = []
        req.on('data', (c: Buffer) => chunks.push(c))
        req.on('end', () => {
          const url = new URL(req.url ?? '/', 'https://fake')
          const socket = req.socket as TLSSocket
          const text = Buffer.concat(chunks).toString('utf8')
          const recorded: Recorded = {
            method: req.method ?? '',
            path: decodeURIComponent(url.pathname),
            query: url.searchParams,
            contentType: req.headers['content-type'],
            servername: socket.servername,
            clientCommonName: socket.getPeerCertificate().subject?.CN,
            body: text ? parse(text) : undefined,
          }
          this.requests.push(recorded)
          const answer = this.intercept?.(recorded) ?? this.answer(recorded, url.pathname)
          res.writeHead(answer.status, { 'content-type': 'application/json' })
          res.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body))
        })
      },
    )
    this.reset()
  }

  reset() {
    this.requests.length = 0
    this.objects.clear()
    this.intercept = undefined
    for (const name of ['default', 'kube-system', 'kube-public']) {
      this.objects.set(`/api/v1/namespaces/${name}`, {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name },
      })
    }
  }

  async start() {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `https://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  async stop() {
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }

  stored(): KubeObject[] {
    return [...this.objects.values()]
  }

  private answer(r: Recorded, rawPath: string): Answer {
    // Every segment arrives percent-encoded (`system%3acoredns`); split before decoding.
    const m = /^\/(api\/v1|apis\/[^/]+\/[^/]+)\/(.+)$/.exec(rawPath)
    if (!m) return status(404, 'NotFound', `the server could not find the requested resource (${r.path})`)
    const prefix = `/${m[1]}`
    let segments = m[2]!.split('/').map(decodeURIComponent)
    let namespace: string | undefined
    if (segments[0] === 'namespaces' && segments.length >= 3) {
      namespace = segments[1]
      segments = segments.slice(2)
    }
    const [plural, name, ...rest] = segments
    const resource = served[`${prefix}/${plural}`]
    if (!resource || rest.length > 0 || (namespace !== undefined && !resource.namespaced)) {
      return status(404, 'NotFound', `the server could not find the requested resource (${r.path})`)
    }
    const apiVersion = prefix.replace(/^\/apis?\//, '')
    const key = `${prefix}/${namespace === undefined ? '' : `namespaces/${namespace}/`}${plural}/${name}`

    if (r.method === 'GET' && name === undefined) {
      const items = this.stored().filter(
        (o) =>
          o.kind === resource.kind &&
          o.apiVersion === apiVersion &&
          (namespace === undefined || o.metadata.namespace === namespace) &&
          matchesSelector(o.metadata.labels ?? {}, r.query.get('labelSelector') ?? ''),
      )
      // Pages of `limit` items; the continue token is the offset of the next page.
      const offset = Number(r.query.get('continue') ?? 0)
      const limit = Number(r.query.get('limit') ?? items.length)
      const next = offset + limit < items.length ? String(offset + limit) : undefined
      return {
        status: 200,
        body: {
          apiVersion,
          kind: `${resource.kind}List`,
          metadata: { resourceVersion: '1', ...(next ? { continue: next } : {}) },
          items: items.slice(offset, offset + limit),
        },
      }
    }
    if (name === undefined) return status(405, 'MethodNotAllowed', `${r.method} on a collection`)
    if (resource.namespaced && namespace === undefined)
      return status(404, 'NotFound', 'no namespace in the path')

    if (r.method === 'PATCH') {
      if (r.contentType !== 'application/apply-patch+yaml') {
        return status(
          415,
          'UnsupportedMediaType',
          `the body of the request was in an unknown format: ${r.contentType}`,
        )
      }
      if (!r.query.get('fieldManager')) {
        return status(
          400,
          'BadRequest',
          'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value',
        )
      }
      const body = r.body as KubeObject
      if (body.kind !== resource.kind || body.apiVersion !== apiVersion || body.metadata?.name !== name) {
        return status(400, 'BadRequest', `the object does not match the path ${r.path}`)
      }
      if (body.metadata.namespace !== namespace) {
        return status(
          400,
          'BadRequest',
          'the namespace of the object does not match the namespace of the path',
        )
      }
      if (namespace !== undefined && !this.objects.has(`/api/v1/namespaces/${namespace}`)) {
        return status(404, 'NotFound', `namespaces "${namespace}" not found`)
      }
      const created = !this.objects.has(key)
      this.objects.set(key, body)
      return { status: created ? 201 : 200, body }
    }
    if (r.method === 'DELETE') {
      const existing = this.objects.get(key)
      if (!existing) return status(404, 'NotFound', `${plural} "${name}" not found`)
      this.objects.delete(key)
      return { status: 200, body: existing }
    }
    if (r.method === 'GET') {
      const existing = this.objects.get(key)
      return existing
        ? { status: 200, body: existing }
        : status(404, 'NotFound', `${plural} "${name}" not found`)
    }
    return status(405, 'MethodNotAllowed', r.method)
  }
}

function features(over: PartialFeatureValues = {}): FeatureValues {
  const out: Record<string, unknown> = {}
  for (const name of featureNames) out[name] = { ...featureCatalogue[name].default, ...over[name] }
  return out as unknown as FeatureValues
}

const clusterWith = (over: PartialFeatureValues): AddonInput => ({
  clusterName: 'c1',
  kubernetesVersion: '1.31.4',
  features: features({ monitoring: { enabled: true, retentionDays: 15 }, ...over }),
  nodeGroups: [{ name: 'workers', role: 'worker', count: 3, gpuCount: 0, gpuEnabled: false }],
})

const objectsOf = (addons: AddonManifest[]) => addons.flatMap((a) => a.objects)
const refOf = (o: KubeObject) => [o.kind, o.metadata.namespace, o.metadata.name].filter(Boolean).join('/')
const rankOf = (kind: string) => (kind === 'Namespace' ? 0 : kind.startsWith('ClusterRole') ? 1 : 2)

const dir = mkdtempSync(join(tmpdir(), 'kiln-addons-'))
let pki: Pki
let api: FakeApiServer

const kubeConfig = (over: { server?: string; tlsServerName?: string | undefined; caPem?: string } = {}) =>
  addonKubeConfig({
    server: over.server ?? api.url,
    tlsServerName: 'tlsServerName' in over ? over.tlsServerName : serverName,
    caPem: over.caPem ?? pki.caPem,
    certPem: pki.clientCertPem,
    keyPem: pki.clientKeyPem,
    user: 'kiln-addons',
    clusterName: 'c1',
  })

async function failure(promise: Promise<unknown>): Promise<AddonError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(error).toBeInstanceOf(AddonError)
  return error as AddonError
}

beforeAll(async () => {
  pki = makePki(dir)
  api = new FakeApiServer(pki)
  await api.start()
})
afterAll(async () => {
  await api.stop()
  rmSync(dir, { recursive: true, force: true })
})
beforeEach(() => api.reset())

describe('addonKubeConfig', () => {
  it('carries the server, the trusted CA, the client certificate and the TLS server name', () => {
    const kc = kubeConfig()
    expect(kc.getCurrentCluster()).toMatchObject({
      server: api.url,
      tlsServerName: serverName,
      skipTLSVerify: false,
    })
    expect(Buffer.from(kc.getCurrentCluster()!.caData!, 'base64').toString()).toBe(pki.caPem)
    expect(Buffer.from(kc.getCurrentUser()!.certData!, 'base64').toString()).toBe(pki.clientCertPem)
    expect(kc.getCurrentUser()!.name).toBe('kiln-addons')
  })
})

describe('reconcileAddons', () => {
  it('server-side applies every object, in order, to the right URL, over mutual TLS with the SNI name', async () => {
    const desired = desiredAddons(clusterWith({ ingress: { controller: 'traefik' } }))
    const objects = objectsOf(desired)
    const result = await reconcileAddons(kubeConfig(), desired)
    expect(result).toEqual({ applied: objects.length, pruned: [] })

    const patches = api.requests.filter((r) => r.method === 'PATCH')
    expect(patches).toHaveLength(objects.length)
    for (const p of patches) {
      expect(p.contentType).toBe('application/apply-patch+yaml')
      expect(p.query.get('fieldManager')).toBe('kiln')
      expect(p.query.get('force')).toBe('true')
      expect(p.servername).toBe(serverName)
      expect(p.clientCommonName).toBe('kiln-addons')
    }
    const paths = patches.map((p) => p.path)
    expect(paths).toEqual(
      expect.arrayContaining([
        '/api/v1/namespaces/ingress-traefik',
        '/api/v1/namespaces/monitoring',
        '/apis/rbac.authorization.k8s.io/v1/clusterroles/traefik',
        '/apis/rbac.authorization.k8s.io/v1/clusterroles/system:coredns',
        '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kiln:node-proxier',
        '/apis/rbac.authorization.k8s.io/v1/namespaces/kube-system/rolebindings/metrics-server-auth-reader',
        '/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy',
        '/apis/apps/v1/namespaces/kube-system/deployments/coredns',
        '/apis/apps/v1/namespaces/monitoring/statefulsets/prometheus',
        '/apis/networking.k8s.io/v1/ingressclasses/traefik',
        '/api/v1/namespaces/kube-system/configmaps/coredns',
        '/api/v1/namespaces/ingress-traefik/services/traefik',
      ]),
    )
    // Namespaces, then cluster-scoped RBAC, then the rest.
    const ranks = patches.map((p) => rankOf((p.body as KubeObject).kind))
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b))
    expect(ranks[0]).toBe(0)

    // What the server received is exactly what was planned: no field dropped by the client's models.
    for (const o of objects) {
      const received = patches.find(
        (p) => refOf(p.body as KubeObject) === refOf(o) && (p.body as KubeObject).apiVersion === o.apiVersion,
      )
      expect(received?.body, refOf(o)).toEqual(o)
    }

    // Pruning lists every add-on kind across all namespaces, by label; nothing asks for discovery.
    const lists = api.requests.filter((r) => r.method === 'GET')
    expect(lists.map((r) => r.path).sort()).toEqual(Object.keys(served).sort())
    for (const l of lists) expect(l.query.get('labelSelector')).toBe(selector)
    expect(api.requests.filter((r) => r.method === 'DELETE')).toEqual([])
  })

  it('changes nothing when run again with the same add-ons', async () => {
    const desired = desiredAddons(clusterWith({ ingress: { controller: 'traefik' } }))
    await reconcileAddons(kubeConfig(), desired)
    const before = structuredClone(Object.fromEntries(api.objects))
    const firstBodies = api.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)
    api.requests.length = 0

    const again = await reconcileAddons(kubeConfig(), desired)
    expect(again).toEqual({ applied: firstBodies.length, pruned: [] })
    expect(Object.fromEntries(api.objects)).toEqual(before)
    expect(api.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)).toEqual(firstBodies)
    expect(api.requests.filter((r) => r.method === 'DELETE')).toEqual([])
  })

  it('applies without listing or deleting anything when told there is nothing to prune', async () => {
    const desired = desiredAddons(clusterWith({ ingress: { controller: 'traefik' } }))
    const result = await reconcileAddons(kubeConfig(), desired, { prune: false })
    expect(result.pruned).toEqual([])
    expect(result.applied).toBeGreaterThan(0)
    expect(api.requests.every((r) => r.method === 'PATCH')).toBe(true)
  })

  it('prunes what is no longer desired, namespaces last, and leaves objects it does not manage alone', async () => {
    const withTraefik = desiredAddons(clusterWith({ ingress: { controller: 'traefik' } }))
    await reconcileAddons(kubeConfig(), withTraefik)
    // Not Kiln's: no labels. A system namespace someone labelled as an add-on. A leftover add-on object.
    api.objects.set('/apis/apps/v1/namespaces/kube-system/deployments/user-app', {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'user-app', namespace: 'kube-system' },
    })
    const labels = { 'app.kubernetes.io/managed-by': 'kiln', 'kiln.dev/addon': 'old-addon' }
    api.objects.set('/api/v1/namespaces/kube-system', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'kube-system', labels },
    })
    api.objects.set('/api/v1/namespaces/kube-system/configmaps/old-addon', {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'old-addon', namespace: 'kube-system', labels },
    })
    // Deleted by someone else just before its turn: still fine.
    api.intercept = (r) => {
      if (r.method !== 'DELETE' || r.path !== '/apis/networking.k8s.io/v1/ingressclasses/traefik')
        return undefined
      api.objects.delete(r.path)
      return status(404, 'NotFound', 'ingressclasses.networking.k8s.io "traefik" not found')
    }
    api.requests.length = 0

    const withNginx = desiredAddons(clusterWith({ ingress: { controller: 'nginx' } }))
    const result = await reconcileAddons(kubeConfig(), withNginx)

    const traefikRefs = withTraefik.find((a) => a.name === 'traefik')!.objects.map(refOf)
    expect(result.pruned.sort()).toEqual([...traefikRefs, 'ConfigMap/kube-system/old-addon'].sort())
    const deletes = api.requests.filter((r) => r.method === 'DELETE')
    expect(deletes.at(-1)?.path).toBe('/api/v1/namespaces/ingress-traefik')
    expect(deletes.map((d) => d.path)).toContain('/apis/rbac.authorization.k8s.io/v1/clusterroles/traefik')
    for (const d of deletes) expect(d.query.get('propagationPolicy')).toBe('Background')
    // Pruning comes after applying the replacement.
    const lastPatch = api.requests.findLastIndex((r) => r.method === 'PATCH')
    expect(api.requests.findIndex((r) => r.method === 'DELETE')).toBeGreaterThan(lastPatch)

    const stored = api.stored()
    expect(stored.filter((o) => o.metadata.labels?.['kiln.dev/addon'] === 'traefik')).toEqual([])
    expect(stored.filter((o) => o.metadata.labels?.['kiln.dev/addon'] === 'ingress-nginx')).toHaveLength(
      withNginx.find((a) => a.name === 'ingress-nginx')!.objects.length,
    )
    expect(api.objects.has('/apis/apps/v1/namespaces/kube-system/deployments/user-app')).toBe(true)
    expect(api.objects.has('/api/v1/namespaces/kube-system')).toBe(true)
  })

  it('follows continue tokens when listing', async () => {
    const labels = { 'app.kubernetes.io/managed-by': 'kiln', 'kiln.dev/addon': 'old-addon' }
    for (let i = 0; i < 260; i++) {
      api.objects.set(`/api/v1/namespaces/kube-system/configmaps/old-${i}`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: `old-${i}`, namespace: 'kube-system', labels },
      })
    }
    const result = await reconcileAddons(kubeConfig(), desiredAddons(clusterWith({})))
    expect(result.pruned.filter((p) => p.startsWith('ConfigMap/kube-system/old-'))).toHaveLength(260)
    const configMapLists = api.requests.filter((r) => r.method === 'GET' && r.path === '/api/v1/configmaps')
    expect(configMapLists.map((r) => r.query.get('continue'))).toEqual([null, '250'])
  })

  it('stops at the first failure and reports a 503 as retryable, naming the object', async () => {
    api.intercept = (r) =>
      r.method === 'PATCH' && r.path === '/apis/apps/v1/namespaces/kube-system/deployments/coredns'
        ? status(503, 'ServiceUnavailable', 'etcdserver: request timed out')
        : undefined
    const error = await failure(reconcileAddons(kubeConfig(), desiredAddons(clusterWith({}))))
    expect(error).toMatchObject({
      code: 'server-error',
      retryable: true,
      status: 503,
      verb: 'apply',
      object: 'Deployment/kube-system/coredns',
    })
    expect(error.message).toBe(
      'apply Deployment/kube-system/coredns: 503 ServiceUnavailable: etcdserver: request timed out',
    )
    expect(api.requests.at(-1)?.path).toBe('/apis/apps/v1/namespaces/kube-system/deployments/coredns')
    expect(api.requests.filter((r) => r.method !== 'PATCH')).toEqual([])
  })

  it.each([
    [409, 'Conflict', 'conflict', true, undefined],
    [429, 'TooManyRequests', 'throttled', true, undefined],
    [500, 'InternalError', 'server-error', true, undefined],
    [403, 'Forbidden', 'conflict', true, { causes: [{ reason: 'NamespaceTerminating' }] }],
    [403, 'Forbidden', 'unauthorized', false, undefined],
    [401, 'Unauthorized', 'unauthorized', false, undefined],
    [422, 'Invalid', 'rejected', false, undefined],
    [404, 'NotFound', 'rejected', false, undefined],
  ])('classifies %i %s on apply as %s', async (code, reason, expectedCode, retryable, details) => {
    api.intercept = (r) =>
      r.method === 'PATCH' ? status(code, reason, `refused with ${code}`, details) : undefined
    const error = await failure(reconcileAddons(kubeConfig(), desiredAddons(clusterWith({}))))
    expect(error).toMatchObject({ code: expectedCode, retryable, status: code })
    expect(error.message).toContain(`refused with ${code}`)
  })

  it('classifies an answer that is not a Status, and a failure while pruning', async () => {
    api.intercept = (r) =>
      r.method === 'PATCH' ? { status: 502, body: '<html>Bad Gateway</html>' } : undefined
    const gateway = await failure(reconcileAddons(kubeConfig(), desiredAddons(clusterWith({}))))
    expect(gateway).toMatchObject({ code: 'server-error', retryable: true, status: 502 })
    expect(gateway.message).toContain('<html>Bad Gateway</html>')

    api.reset()
    api.intercept = (r) =>
      r.method === 'GET' && r.path === '/apis/apps/v1/daemonsets'
        ? status(500, 'InternalError', 'list failed')
        : undefined
    const listing = await failure(reconcileAddons(kubeConfig(), desiredAddons(clusterWith({}))))
    expect(listing).toMatchObject({ verb: 'list', object: 'DaemonSet', retryable: true })
  })

  it('reports an unreachable server as retryable', async () => {
    const closed = https.createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    const error = await failure(
      reconcileAddons(kubeConfig({ server: `https://127.0.0.1:${port}` }), desiredAddons(clusterWith({}))),
    )
    expect(error).toMatchObject({ code: 'unreachable', retryable: true, object: 'Namespace/ingress-traefik' })
  })

  it('needs the TLS server name: without it, or with another, the certificate does not verify', async () => {
    for (const tlsServerName of [undefined, 'c2.clusters.sim.kiln.internal']) {
      const error = await failure(
        reconcileAddons(kubeConfig({ tlsServerName }), desiredAddons(clusterWith({}))),
      )
      expect(error).toMatchObject({ code: 'tls', retryable: false })
    }
    expect(api.requests).toEqual([])
  })

  it('trusts only the CA it is given: a server certificate from another CA does not verify', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'kiln-addons-other-'))
    try {
      const other = makePki(otherDir)
      const error = await failure(
        reconcileAddons(kubeConfig({ caPem: other.caPem }), desiredAddons(clusterWith({}))),
      )
      expect(error).toMatchObject({ code: 'tls', retryable: false })
      expect(api.requests).toEqual([])
    } finally {
      rmSync(otherDir, { recursive: true, force: true })
    }
  })

  it('stops when aborted, before or between requests, with the signal reason', async () => {
    const desired = desiredAddons(clusterWith({}))
    const reason = new Error('operation cancelled')
    await expect(reconcileAddons(kubeConfig(), desired, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    )
    expect(api.requests).toEqual([])

    const controller = new AbortController()
    api.intercept = (r) => {
      if (r.method === 'PATCH' && api.requests.length === 3) controller.abort(reason)
      return undefined
    }
    await expect(reconcileAddons(kubeConfig(), desired, { signal: controller.signal })).rejects.toBe(reason)
    expect(api.requests).toHaveLength(3)
  })

  it('refuses objects it could not prune later, before sending anything', async () => {
    const [coredns] = desiredAddons(clusterWith({}))
    const deployment = coredns!.objects.find((o) => o.kind === 'Deployment')!
    const withObjects = (...objects: KubeObject[]): AddonManifest[] => [{ ...coredns!, objects }]
    const cases: [AddonManifest[], RegExp][] = [
      [withObjects(deployment, deployment), /desired twice/],
      [
        withObjects({
          apiVersion: 'batch/v1',
          kind: 'Job',
          metadata: { name: 'x', namespace: 'kube-system', labels: deployment.metadata.labels },
        }),
        /not in addonKinds/,
      ],
      [
        withObjects({ ...deployment, metadata: { name: 'unlabelled', namespace: 'kube-system' } }),
        /lacks the labels/,
      ],
      [
        withObjects({
          ...deployment,
          metadata: { ...deployment.metadata, namespace: undefined } as KubeObject['metadata'],
        }),
        /needs metadata.namespace/,
      ],
    ]
    for (const [desired, message] of cases) {
      const error = await failure(reconcileAddons(kubeConfig(), desired))
      expect(error).toMatchObject({ code: 'invalid-request', retryable: false, verb: 'plan' })
      expect(error.message).toMatch(message)
    }
    expect(api.requests).toEqual([])
  })
})
