import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { clusterAuthorityStore } from '../../../packages/db/src/index.ts'
import { issueClusterClientCertificate } from '../../../packages/pki/src/index.ts'
import { testMasterKey } from '../../../test/support/engine.ts'
import { type SimulatedCluster, startSimulatedCluster } from './support.ts'

// The simulated API server as a real kubectl user meets it: writes of every kind of object,
// server-side apply with field managers, watches, and objects that outlive the server process.

let c: SimulatedCluster

const deployment = (replicas: number, image = 'nginx:1.27') => `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: { app: web, tier: frontend }
spec:
  replicas: ${replicas}
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
        - name: web
          image: ${image}
          ports: [{ containerPort: 80 }]
`

const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: { plural: widgets, singular: widget, kind: Widget, shortNames: [wd] }
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
      additionalPrinterColumns:
        - { name: Size, type: string, jsonPath: .spec.size }
`

const widget = (size: string) => `
apiVersion: example.com/v1
kind: Widget
metadata: { name: sprocket, namespace: shop, labels: { team: a } }
spec: { size: ${size} }
`

beforeAll(async () => {
  c = await startSimulatedCluster()
  const ns = await c.kubectl(['create', 'namespace', 'shop'])
  expect(ns.stderr).toBe('')
}, 90_000)

afterAll(async () => {
  await c?.close()
})

describe('the simulated API server with kubectl', () => {
  it('starts with the namespaces and RBAC of a new kubeadm cluster', async () => {
    const ns = await c.kubectl(['get', 'namespaces', '-o', 'name'])
    const names = ns.stdout.split('\n').filter(Boolean)
    for (const name of ['default', 'kube-node-lease', 'kube-public', 'kube-system', 'shop'])
      expect(names).toContain(`namespace/${name}`)
    const svc = await c.kubectl([
      'get',
      'service',
      'kubernetes',
      '-n',
      'default',
      '-o',
      'jsonpath={.spec.clusterIP}',
    ])
    expect(svc.stdout).toBe('10.96.0.1')
    const sa = await c.kubectl(['get', 'serviceaccount', 'default', '-n', 'shop', '-o', 'name'])
    expect(sa.stdout.trim()).toBe('serviceaccount/default')
  })

  it('applies a Deployment server-side, runs its pods and reports it rolled out', async () => {
    const applied = await c.kubectl(['apply', '--server-side', '-f', '-'], deployment(3))
    expect(applied.stderr).toBe('')
    expect(applied.stdout.trim()).toBe('deployment.apps/web serverside-applied')

    const rollout = await c.kubectl(['rollout', 'status', 'deployment/web', '-n', 'shop', '--timeout=20s'])
    expect(rollout.stdout).toMatch(/successfully rolled out/)

    const pods = await c.kubectl(['get', 'pods', '-n', 'shop', '-l', 'app=web', '-o', 'json'])
    const items = JSON.parse(pods.stdout).items as {
      metadata: { name: string }
      status: { phase: string }
      spec: { nodeName: string }
    }[]
    expect(items).toHaveLength(3)
    expect(items.every((p) => p.status.phase === 'Running' && p.spec.nodeName.startsWith('k-'))).toBe(true)
    expect(items.every((p) => p.metadata.name.startsWith('web-'))).toBe(true)

    const table = await c.kubectl(['get', 'deployment', 'web', '-n', 'shop'])
    expect(table.stdout).toMatch(/^NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE/m)
    expect(table.stdout).toMatch(/^web\s+3\/3\s+3\s+3\s+/m)

    const owners = await c.kubectl([
      'get',
      'deployment',
      'web',
      '-n',
      'shop',
      '--show-managed-fields',
      '-o',
      'json',
    ])
    const managed = JSON.parse(owners.stdout).metadata.managedFields as {
      manager: string
      operation: string
    }[]
    expect(managed).toContainEqual(expect.objectContaining({ manager: 'kubectl', operation: 'Apply' }))
  })

  it('refuses a conflicting apply by another field manager unless forced', async () => {
    const other = await c.kubectl(
      ['apply', '--server-side', '--field-manager', 'ci-bot', '-f', '-'],
      deployment(5),
    )
    expect(other.code).not.toBe(0)
    expect(other.stderr).toMatch(/conflict/i)
    expect(other.stderr).toMatch(/\.spec\.replicas/)

    const forced = await c.kubectl(
      ['apply', '--server-side', '--field-manager', 'ci-bot', '--force-conflicts', '-f', '-'],
      deployment(5),
    )
    expect(forced.stderr).toBe('')
    const replicas = await c.kubectl([
      'get',
      'deployment',
      'web',
      '-n',
      'shop',
      '-o',
      'jsonpath={.spec.replicas}',
    ])
    expect(replicas.stdout).toBe('5')
    const pods = await c.kubectl(['get', 'pods', '-n', 'shop', '-l', 'app=web', '-o', 'name'])
    expect(pods.stdout.trim().split('\n')).toHaveLength(5)
  })

  it('scales, patches (strategic, merge, JSON) and labels', async () => {
    expect((await c.kubectl(['scale', 'deployment/web', '-n', 'shop', '--replicas=2'])).stderr).toBe('')
    const image = await c.kubectl(['set', 'image', 'deployment/web', '-n', 'shop', 'web=nginx:1.28'])
    expect(image.stderr).toBe('')
    const merge = await c.kubectl([
      'patch',
      'deployment',
      'web',
      '-n',
      'shop',
      '--type=merge',
      '-p',
      '{"metadata":{"annotations":{"owner":"team-a"}}}',
    ])
    expect(merge.stderr).toBe('')
    const json = await c.kubectl([
      'patch',
      'deployment',
      'web',
      '-n',
      'shop',
      '--type=json',
      '-p',
      '[{"op":"replace","path":"/metadata/labels/tier","value":"edge"}]',
    ])
    expect(json.stderr).toBe('')
    expect((await c.kubectl(['label', 'deployment', 'web', '-n', 'shop', 'release=blue'])).stderr).toBe('')

    const got = JSON.parse((await c.kubectl(['get', 'deployment', 'web', '-n', 'shop', '-o', 'json'])).stdout)
    expect(got.spec.replicas).toBe(2)
    expect(got.spec.template.spec.containers[0].image).toBe('nginx:1.28')
    expect(got.metadata.annotations.owner).toBe('team-a')
    expect(got.metadata.labels).toMatchObject({ tier: 'edge', release: 'blue' })
    expect(got.metadata.generation).toBeGreaterThan(1)
    expect(got.status.readyReplicas).toBe(2)

    const bad = await c.kubectl([
      'patch',
      'deployment',
      'web',
      '-n',
      'shop',
      '--type=json',
      '-p',
      '[{"op":"test","path":"/spec/replicas","value":9}]',
    ])
    expect(bad.code).not.toBe(0)
  })

  it('does client-side apply (three-way strategic merge) of configmaps, secrets and services', async () => {
    const config = (value: string) => `
apiVersion: v1
kind: ConfigMap
metadata: { name: settings, namespace: shop }
data: { mode: ${value} }
---
apiVersion: v1
kind: Secret
metadata: { name: token, namespace: shop }
stringData: { token: s3cret }
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: shop }
spec:
  type: LoadBalancer
  selector: { app: web }
  ports: [{ port: 80 }]
`
    expect((await c.kubectl(['apply', '-f', '-'], config('fast'))).stderr).toBe('')
    const again = await c.kubectl(['apply', '-f', '-'], config('slow'))
    expect(again.stderr).toBe('')
    expect(again.stdout).toMatch(/configmap\/settings configured/)
    // As on a real cluster: a Secret applied with stringData is "configured" every time, since the
    // live object only has data; a Service whose server-filled fields are not in the config is not.
    expect(again.stdout).toMatch(/service\/web unchanged/)
    const mode = await c.kubectl([
      'get',
      'configmap',
      'settings',
      '-n',
      'shop',
      '-o',
      'jsonpath={.data.mode}',
    ])
    expect(mode.stdout).toBe('slow')
    const secret = await c.kubectl(['get', 'secret', 'token', '-n', 'shop', '-o', 'jsonpath={.data.token}'])
    expect(Buffer.from(secret.stdout, 'base64').toString()).toBe('s3cret')
    const svc = await c.kubectl(['get', 'svc', 'web', '-n', 'shop'])
    expect(svc.stdout).toMatch(/^web\s+LoadBalancer\s+10\.96\.\d+\.\d+\s+172\.31\.\d+\.\d+\s+80\/TCP/m)
  })

  it('serves a CRD and its custom resources, with their printer columns', async () => {
    const applied = await c.kubectl(['apply', '--server-side', '-f', '-'], crd)
    expect(applied.stdout.trim()).toBe(
      'customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied',
    )
    const established = await c.waitEstablished('widgets.example.com')
    expect(established.stdout).toMatch(/condition met/)

    expect((await c.kubectl(['apply', '--server-side', '-f', '-'], widget('large'))).stderr).toBe('')
    const list = await c.kubectl(['get', 'widgets', '-n', 'shop'])
    expect(list.stdout).toMatch(/^NAME\s+SIZE/m)
    expect(list.stdout).toMatch(/^sprocket\s+large/m)
    const short = await c.kubectl([
      'get',
      'wd',
      '-n',
      'shop',
      '-l',
      'team=a',
      '-o',
      'jsonpath={.items[*].spec.size}',
    ])
    expect(short.stdout).toBe('large')
    // Custom resources take merge patches (kubectl picks them itself for CRs).
    expect((await c.kubectl(['label', 'widget', 'sprocket', '-n', 'shop', 'color=red'])).stderr).toBe('')

    const deleted = await c.kubectl(['delete', 'widget', 'sprocket', '-n', 'shop'])
    expect(deleted.stdout.trim()).toBe('widget.example.com "sprocket" deleted')
    expect((await c.kubectl(['get', 'widgets', '-n', 'shop', '-o', 'name'])).stdout).toBe('')
  })

  it('streams watch events to kubectl get -w', async () => {
    const watch = c.kubectlUntil(
      ['get', 'configmaps', '-n', 'shop', '-w', '--output-watch-events'],
      /ADDED\s+watched\s+1\s/,
    )
    // Let the initial list and the watch begin before the change.
    await new Promise((r) => setTimeout(r, 1500))
    expect(
      (await c.kubectl(['create', 'configmap', 'watched', '-n', 'shop', '--from-literal=a=b'])).stderr,
    ).toBe('')
    const output = await watch.done
    watch.stop()
    expect(output).toMatch(/^EVENT\s+NAME\s+DATA\s+AGE/m)
    expect(output).toMatch(/ADDED\s+watched\s+1\s/)
  })

  it('streams the pods of a new deployment to kubectl get pods -w', async () => {
    const watch = c.kubectlUntil(
      ['get', 'pods', '-n', 'shop', '-l', 'app=api', '-w', '--output-watch-events'],
      /ADDED\s+api-\S+\s+1\/1\s+Running[\s\S]*ADDED\s+api-\S+\s+1\/1\s+Running/,
    )
    await new Promise((r) => setTimeout(r, 1500))
    expect(
      (await c.kubectl(['create', 'deployment', 'api', '-n', 'shop', '--image=nginx:1.27', '--replicas=2']))
        .stderr,
    ).toBe('')
    const output = await watch.done
    watch.stop()
    expect(output.match(/ADDED\s+api-/g)).toHaveLength(2)
    expect((await c.kubectl(['delete', 'deployment', 'api', '-n', 'shop'])).stderr).toBe('')
  })

  it('authorizes other users by the cluster’s own RBAC bindings', async () => {
    const alice = await issueClusterClientCertificate(
      clusterAuthorityStore(c.stack.db),
      testMasterKey,
      c.clusterId,
      {
        commonName: 'alice',
        groups: ['dev'],
        ttlSeconds: 600,
      },
    )
    const config = parse(await readFile(c.kubeconfig, 'utf8')) as {
      users: { user: Record<string, string> }[]
    }
    config.users[0]!.user = {
      'client-certificate-data': Buffer.from(alice.certPem).toString('base64'),
      'client-key-data': Buffer.from(alice.keyPem).toString('base64'),
    }
    const file = join(c.dir, 'alice.yaml')
    await writeFile(file, stringify(config), { mode: 0o600 })
    const asAlice = (args: string[]) => c.kubectl(['--kubeconfig', file, ...args])

    const denied = await asAlice(['get', 'configmaps', '-n', 'shop'])
    expect(denied.stderr).toMatch(
      /Forbidden.*User "alice" cannot list resource "configmaps" in API group "" in the namespace "shop"/,
    )
    const bound = await c.kubectl([
      'create',
      'rolebinding',
      'dev-view',
      '-n',
      'shop',
      '--clusterrole=view',
      '--group=dev',
    ])
    expect(bound.stderr).toBe('')
    expect((await asAlice(['get', 'configmaps', '-n', 'shop', '-o', 'name'])).stderr).toBe('')
    expect((await asAlice(['create', 'configmap', 'nope', '-n', 'shop'])).stderr).toMatch(/forbidden/i)
    expect((await asAlice(['get', 'configmaps', '-n', 'kube-system'])).stderr).toMatch(/forbidden/i)
  })

  it('answers aggregated discovery when asked for it, and the legacy documents otherwise', async () => {
    const get = (path: string, accept: string) => c.request('GET', path, { accept })
    const aggregated = await get(
      '/apis',
      'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json',
    )
    expect(aggregated.type).toBe('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList')
    expect(aggregated.body.kind).toBe('APIGroupDiscoveryList')
    const groups = (aggregated.body.items as { metadata: { name: string } }[]).map((i) => i.metadata.name)
    expect(groups).toEqual(
      expect.arrayContaining(['apps', 'rbac.authorization.k8s.io', 'apiextensions.k8s.io', 'example.com']),
    )
    const legacy = await get('/apis', 'application/json')
    expect(legacy.body.kind).toBe('APIGroupList')
  })

  it('takes an apply body written in YAML, as its media type allows', async () => {
    const path = '/api/v1/namespaces/shop/configmaps/from-yaml?fieldManager=yaml-client'
    const headers = { 'content-type': 'application/apply-patch+yaml', accept: 'application/json' }
    const applied = await c.request(
      'PATCH',
      path,
      headers,
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  greeting: hello\n',
    )
    expect(applied.status).toBe(201)
    expect(applied.body.data).toEqual({ greeting: 'hello' })
    const broken = await c.request('PATCH', path, headers, 'data: [unclosed\n')
    expect(broken.status).toBe(400)
    expect(broken.body).toMatchObject({ kind: 'Status', reason: 'BadRequest' })
  })

  it('answers not found, already exists and invalid the way kube-apiserver does', async () => {
    const missing = await c.kubectl(['get', 'deployment', 'nope', '-n', 'shop'])
    expect(missing.stderr).toMatch(/Error from server \(NotFound\): deployments\.apps "nope" not found/)
    const twice = await c.kubectl(['create', 'namespace', 'shop'])
    expect(twice.stderr).toMatch(/AlreadyExists/)
    const invalid = await c.kubectl(['create', 'configmap', 'Bad_Name', '-n', 'shop'])
    expect(invalid.stderr).toMatch(/Invalid/)
    const noNamespace = await c.kubectl(['create', 'configmap', 'x', '-n', 'nowhere'])
    expect(noNamespace.stderr).toMatch(/namespaces "nowhere" not found/)
    const nodeWrite = await c.kubectl(['delete', 'node', '--all'])
    expect(nodeWrite.code).not.toBe(0)
    expect(
      (await c.kubectl(['get', 'nodes', '-o', 'name'])).stdout.trim().split('\n').length,
    ).toBeGreaterThan(0)
  })

  it('keeps every object across a restart of the simulator', async () => {
    const before = (await c.kubectl(['get', 'all,configmaps', '-n', 'shop', '-o', 'name'])).stdout
    await c.restartServer()
    const after = (await c.kubectl(['get', 'all,configmaps', '-n', 'shop', '-o', 'name'])).stdout
    expect(after).toBe(before)
    expect(after).toMatch(/deployment\.apps\/web/)
  })

  it('deletes a deployment with its pods, and a namespace with its contents', async () => {
    const deleted = await c.kubectl(['delete', 'deployment', 'web', '-n', 'shop'])
    expect(deleted.stdout.trim()).toBe('deployment.apps "web" deleted')
    expect((await c.kubectl(['get', 'pods', '-n', 'shop', '-l', 'app=web', '-o', 'name'])).stdout).toBe('')
    const ns = await c.kubectl(['delete', 'namespace', 'shop'])
    expect(ns.stdout.trim()).toBe('namespace "shop" deleted')
    expect((await c.kubectl(['get', 'configmaps', '-A', '-o', 'name'])).stdout).not.toMatch(/settings/)
    const kept = await c.kubectl(['delete', 'namespace', 'kube-system'])
    expect(kept.stderr).toMatch(/forbidden/i)
  })
})
