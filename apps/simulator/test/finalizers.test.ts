import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type RawResponse, type SimulatedCluster, startSimulatedCluster } from './support.ts'

// Graceful deletion as kube-apiserver does it: DELETE only marks an object that has finalizers
// (deletionTimestamp, a MODIFIED event), and the write that empties its finalizers deletes it
// (a DELETED event). Cluster API's controllers hold Clusters and Machines with finalizers this way,
// so built-in kinds and custom resources must both behave so.

let c: SimulatedCluster

const gizmoCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'gizmos.example.com' },
  spec: {
    group: 'example.com',
    scope: 'Namespaced',
    names: { plural: 'gizmos', singular: 'gizmo', kind: 'Gizmo' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer' } } },
              status: { type: 'object', properties: { ready: { type: 'boolean' } } },
            },
          },
        },
        subresources: { status: {} },
      },
    ],
  },
}

const json = { 'content-type': 'application/json', accept: 'application/json' }
const mergePatch = (path: string, patch: unknown) =>
  c.request(
    'PATCH',
    path,
    { 'content-type': 'application/merge-patch+json', accept: 'application/json' },
    JSON.stringify(patch),
  )
const configMap = (name: string) => `/api/v1/namespaces/fin/configmaps/${name}`
const gizmo = (name: string) => `/apis/example.com/v1/namespaces/fin/gizmos/${name}`
const metadataOf = (response: RawResponse) => response.body.metadata as Record<string, unknown>

beforeAll(async () => {
  c = await startSimulatedCluster()
  expect((await c.kubectl(['create', 'namespace', 'fin'])).stderr).toBe('')
  expect((await c.kubectl(['apply', '--server-side', '-f', '-'], stringify(gizmoCrd))).stderr).toBe('')
  expect((await c.waitEstablished('gizmos.example.com')).stdout).toMatch(/condition met/)
}, 120_000)

afterAll(async () => {
  await c?.close()
})

describe('deleting an object with finalizers', () => {
  it('marks a ConfigMap and keeps it until a patch empties its finalizers', async () => {
    const manifest = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'held', namespace: 'fin', finalizers: ['example.com/hold'] },
      data: { a: 'b' },
    }
    expect((await c.kubectl(['create', '-f', '-'], JSON.stringify(manifest))).stderr).toBe('')
    const before = await c.request('GET', configMap('held'), json)

    const deleted = await c.kubectl(['delete', 'configmap', 'held', '-n', 'fin', '--wait=false'])
    expect(deleted.stdout.trim()).toBe('configmap "held" deleted')
    const marked = await c.request('GET', configMap('held'), json)
    expect(marked.status).toBe(200)
    expect(metadataOf(marked).deletionTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    expect(metadataOf(marked).deletionGracePeriodSeconds).toBe(0)
    expect(metadataOf(marked).finalizers).toEqual(['example.com/hold'])
    expect(Number(metadataOf(marked).resourceVersion)).toBeGreaterThan(
      Number(metadataOf(before).resourceVersion),
    )
    expect(marked.body.data).toEqual({ a: 'b' })

    // A second DELETE changes nothing and answers the object.
    const again = await c.request('DELETE', configMap('held'), json)
    expect(again.status).toBe(200)
    expect(again.body.metadata).toEqual(marked.body.metadata)

    // Clients can neither clear the mark nor set another time.
    const cleared = await mergePatch(configMap('held'), {
      metadata: { deletionTimestamp: null, deletionGracePeriodSeconds: 30 },
    })
    expect(cleared.status).toBe(200)
    expect(metadataOf(cleared).deletionTimestamp).toBe(metadataOf(marked).deletionTimestamp)
    expect(metadataOf(cleared).deletionGracePeriodSeconds).toBe(0)

    const released = await c.kubectl([
      'patch',
      'configmap',
      'held',
      '-n',
      'fin',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ])
    expect(released.stderr).toBe('')
    expect(released.stdout.trim()).toBe('configmap/held patched')
    const gone = await c.kubectl(['get', 'configmap', 'held', '-n', 'fin'])
    expect(gone.stderr.trim()).toBe('Error from server (NotFound): configmaps "held" not found')
    expect((await c.request('GET', configMap('held'), json)).status).toBe(404)
  })

  it('refuses new finalizers on an object being deleted, but lets it lose them one by one', async () => {
    const manifest = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'pinned', namespace: 'fin', finalizers: ['example.com/a', 'example.com/b'] },
      stringData: { token: 't' },
    }
    expect((await c.kubectl(['create', '-f', '-'], JSON.stringify(manifest))).stderr).toBe('')
    expect((await c.kubectl(['delete', 'secret', 'pinned', '-n', 'fin', '--wait=false'])).stderr).toBe('')

    const added = await c.request(
      'PATCH',
      '/api/v1/namespaces/fin/secrets/pinned',
      { 'content-type': 'application/json-patch+json', accept: 'application/json' },
      JSON.stringify([{ op: 'add', path: '/metadata/finalizers/-', value: 'example.com/late' }]),
    )
    expect(added.status).toBe(422)
    expect(added.body).toMatchObject({
      kind: 'Status',
      status: 'Failure',
      reason: 'Invalid',
      code: 422,
      message:
        'Secret "pinned" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/late"}',
      details: {
        name: 'pinned',
        kind: 'Secret',
        causes: [
          {
            reason: 'FieldValueForbidden',
            message:
              'Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/late"}',
            field: 'metadata.finalizers',
          },
        ],
      },
    })
    const byKubectl = await c.kubectl([
      'patch',
      'secret',
      'pinned',
      '-n',
      'fin',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":["example.com/a","example.com/b","example.com/late"]}}',
    ])
    expect(byKubectl.code).not.toBe(0)
    expect(byKubectl.stderr).toMatch(/no new finalizers can be added if the object is being deleted/)

    // A full update (PUT) that drops one finalizer keeps the object; dropping the last deletes it.
    const live = (await c.request('GET', '/api/v1/namespaces/fin/secrets/pinned', json)).body
    const one = await c.request(
      'PUT',
      '/api/v1/namespaces/fin/secrets/pinned',
      json,
      JSON.stringify({ ...live, metadata: { ...(live.metadata as object), finalizers: ['example.com/b'] } }),
    )
    expect(one.status).toBe(200)
    expect(metadataOf(one).finalizers).toEqual(['example.com/b'])
    expect(metadataOf(one).deletionTimestamp).toBeDefined()
    expect(
      (await c.kubectl(['get', 'secret', 'pinned', '-n', 'fin', '-o', 'jsonpath={.metadata.finalizers}']))
        .stdout,
    ).toBe('["example.com/b"]')
    const last = await mergePatch('/api/v1/namespaces/fin/secrets/pinned', { metadata: { finalizers: [] } })
    expect(last.status).toBe(200)
    expect((await c.request('GET', '/api/v1/namespaces/fin/secrets/pinned', json)).status).toBe(404)
  })

  it('holds a custom resource the same way, through its status subresource too', async () => {
    const manifest = {
      apiVersion: 'example.com/v1',
      kind: 'Gizmo',
      metadata: { name: 'cog', namespace: 'fin', finalizers: ['gizmo.example.com'] },
      spec: { size: 3 },
    }
    expect((await c.kubectl(['create', '-f', '-'], JSON.stringify(manifest))).stderr).toBe('')
    const before = await c.request('GET', gizmo('cog'), json)

    const deleted = await c.kubectl(['delete', 'gizmo', 'cog', '-n', 'fin', '--wait=false'])
    expect(deleted.stdout.trim()).toBe('gizmo.example.com "cog" deleted')
    const marked = await c.request('GET', gizmo('cog'), json)
    expect(metadataOf(marked).deletionTimestamp).toBeDefined()
    expect(metadataOf(marked).deletionGracePeriodSeconds).toBe(0)
    // Marking an object for deletion bumps its generation, as kube-apiserver does.
    expect(metadataOf(marked).generation).toBe(Number(metadataOf(before).generation) + 1)
    const listed = await c.kubectl(['get', 'gizmos', '-n', 'fin', '-o', 'jsonpath={.items[*].metadata.name}'])
    expect(listed.stdout).toBe('cog')

    const status = await mergePatch(`${gizmo('cog')}/status`, { status: { ready: true } })
    expect(status.status).toBe(200)
    expect(metadataOf(status).deletionTimestamp).toBe(metadataOf(marked).deletionTimestamp)

    const refused = await mergePatch(gizmo('cog'), {
      metadata: { finalizers: ['gizmo.example.com', 'other.example.com'] },
    })
    expect(refused.status).toBe(422)
    expect(refused.body.message).toBe(
      'Gizmo.example.com "cog" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"other.example.com"}',
    )

    const released = await c.kubectl([
      'patch',
      'gizmo',
      'cog',
      '-n',
      'fin',
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ])
    expect(released.stderr).toBe('')
    expect((await c.request('GET', gizmo('cog'), json)).status).toBe(404)
  })

  it('releases an object when the manager of its finalizer applies without it (server-side apply)', async () => {
    const applied = (finalizers: string[]) =>
      c.kubectl(
        ['apply', '--server-side', '--field-manager=cluster-controller', '-f', '-'],
        JSON.stringify({
          apiVersion: 'example.com/v1',
          kind: 'Gizmo',
          metadata: { name: 'axle', namespace: 'fin', finalizers },
          spec: { size: 1 },
        }),
      )
    expect((await applied(['cluster.cluster.x-k8s.io'])).stderr).toBe('')
    expect((await c.kubectl(['delete', 'gizmo', 'axle', '-n', 'fin', '--wait=false'])).stderr).toBe('')
    const refused = await applied(['cluster.cluster.x-k8s.io', 'machine.cluster.x-k8s.io'])
    expect(refused.stderr).toMatch(/found new finalizers \[\]string\{"machine\.cluster\.x-k8s\.io"\}/)
    expect((await c.request('GET', gizmo('axle'), json)).status).toBe(200)
    // kubectl sees the deletionTimestamp and warns, as against a real cluster.
    const released = await applied([])
    expect(released.code).toBe(0)
    expect(released.stderr.trim()).toBe(
      'Warning: Detected changes to resource axle which is currently being deleted.',
    )
    expect((await c.request('GET', gizmo('axle'), json)).status).toBe(404)
  })

  it('shows a watch MODIFIED when marked, then DELETED when released', async () => {
    const manifest = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'watched', namespace: 'fin', finalizers: ['example.com/hold'] },
    }
    expect((await c.kubectl(['create', '-f', '-'], JSON.stringify(manifest))).stderr).toBe('')
    const watch = c.kubectlUntil(
      [
        'get',
        'configmaps',
        '-n',
        'fin',
        '--field-selector=metadata.name=watched',
        '-w',
        '--output-watch-events',
      ],
      /DELETED\s+watched/,
    )
    await new Promise((r) => setTimeout(r, 1500))
    expect((await c.kubectl(['delete', 'configmap', 'watched', '-n', 'fin', '--wait=false'])).stderr).toBe('')
    const marked = await c.request('GET', configMap('watched'), json)
    expect(metadataOf(marked).deletionTimestamp).toBeDefined()
    expect((await mergePatch(configMap('watched'), { metadata: { finalizers: null } })).status).toBe(200)
    const output = await watch.done
    watch.stop()
    const events = output
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .filter(([event, name]) => name === 'watched' && ['ADDED', 'MODIFIED', 'DELETED'].includes(event!))
    expect(events.map(([event]) => event)).toEqual(['ADDED', 'MODIFIED', 'DELETED'])
  })

  it('deletes objects without finalizers at once, in a deletecollection too', async () => {
    const held = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'kept', namespace: 'fin', labels: { batch: 'x' }, finalizers: ['example.com/hold'] },
    }
    expect((await c.kubectl(['create', '-f', '-'], JSON.stringify(held))).stderr).toBe('')
    expect((await c.kubectl(['create', 'configmap', 'free', '-n', 'fin', '--from-literal=a=b'])).stderr).toBe(
      '',
    )
    expect((await c.kubectl(['label', 'configmap', 'free', '-n', 'fin', 'batch=x'])).stderr).toBe('')

    const options = JSON.stringify({
      kind: 'DeleteOptions',
      apiVersion: 'v1',
      propagationPolicy: 'Foreground',
    })
    const collection = await c.request(
      'DELETE',
      '/api/v1/namespaces/fin/configmaps?labelSelector=batch%3Dx',
      { ...json, 'content-length': String(Buffer.byteLength(options)) },
      options,
    )
    expect(collection.status).toBe(200)
    const items = collection.body.items as { metadata: Record<string, unknown> }[]
    expect(items.map((i) => i.metadata.name)).toEqual(['free', 'kept'])
    expect(items[1]!.metadata.deletionTimestamp).toBeDefined()
    // No garbage collector: propagationPolicy adds no foregroundDeletion finalizer.
    expect(items[1]!.metadata.finalizers).toEqual(['example.com/hold'])

    expect((await c.request('GET', configMap('free'), json)).status).toBe(404)
    const kept = await c.request('GET', configMap('kept'), json)
    expect(metadataOf(kept).deletionTimestamp).toBe(items[1]!.metadata.deletionTimestamp)

    expect((await mergePatch(configMap('kept'), { metadata: { finalizers: null } })).status).toBe(200)
    expect((await c.request('GET', configMap('kept'), json)).status).toBe(404)
  })
})

describe('a resourceVersion in a patch', () => {
  it('is a precondition for a merge patch and for server-side apply, as kube-apiserver makes it', async () => {
    const created = await c.kubectl(['create', 'configmap', 'guarded', '--from-literal=a=1', '-o', 'json'])
    expect(created.code, created.stderr).toBe(0)
    const stale = JSON.parse(created.stdout).metadata.resourceVersion as string
    expect(
      (await c.kubectl(['patch', 'cm', 'guarded', '--type=merge', '-p', '{"data":{"a":"2"}}'])).code,
    ).toBe(0)
    const merge = await c.kubectl([
      'patch',
      'cm',
      'guarded',
      '--type=merge',
      '-p',
      JSON.stringify({ metadata: { resourceVersion: stale }, data: { a: '3' } }),
    ])
    expect(merge.code).not.toBe(0)
    expect(merge.stderr).toMatch(/the object has been modified/)
    const applied = (rv: string) =>
      c.kubectl(
        ['apply', '--server-side', '--field-manager=guard', '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'guarded', namespace: 'default', resourceVersion: rv },
          data: { b: '1' },
        }),
      )
    const refused = await applied(stale)
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/the object has been modified/)
    const live = JSON.parse((await c.kubectl(['get', 'cm', 'guarded', '-o', 'json'])).stdout)
    expect(live.data).toEqual({ a: '2' })
    const accepted = await applied(live.metadata.resourceVersion)
    expect(accepted.code, accepted.stderr).toBe(0)
    expect(JSON.parse((await c.kubectl(['get', 'cm', 'guarded', '-o', 'json'])).stdout).data).toEqual({
      a: '2',
      b: '1',
    })
  })
})
