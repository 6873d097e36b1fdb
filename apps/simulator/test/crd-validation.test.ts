import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { type RawResponse, type SimulatedCluster, startSimulatedCluster } from './support.ts'

// Custom resources written to the simulated API server are held to their CRD's schema as
// kube-apiserver holds them: refused with 422 Invalid and field causes, pruned of unknown fields,
// defaulted, kept apart from their status subresource, stored in one version and served in all
// served ones; and the official Cluster API CRDs, vendored unchanged, judge what Kiln will write.

let c: SimulatedCluster

/** One version's schema: v1beta1 allows smaller gadgets than v1, so which schema judged shows. */
const gadgetSchema = (maxSize: number) => ({
  type: 'object',
  properties: {
    apiVersion: { type: 'string' },
    kind: { type: 'string' },
    metadata: { type: 'object' },
    spec: {
      type: 'object',
      required: ['size', 'color'],
      properties: {
        size: { type: 'integer', minimum: 1, maximum: maxSize },
        color: { type: 'string', enum: ['red', 'green', 'blue'] },
        label: { type: 'string', pattern: '^[a-z]+$', maxLength: 12 },
        tier: { type: 'string', default: 'standard' },
        replicas: { type: 'integer', format: 'int32', default: 1 },
        port: { 'x-kubernetes-int-or-string': true },
        tags: { type: 'array', items: { type: 'string' }, 'x-kubernetes-list-type': 'set' },
        extra: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
      },
    },
    status: {
      type: 'object',
      properties: { ready: { type: 'boolean' }, phase: { type: 'string' } },
    },
  },
})

const gadgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'gadgets.example.com' },
  spec: {
    group: 'example.com',
    scope: 'Namespaced',
    names: { plural: 'gadgets', singular: 'gadget', kind: 'Gadget' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: { openAPIV3Schema: gadgetSchema(10) },
        subresources: { status: {} },
      },
      {
        name: 'v1beta1',
        served: true,
        storage: false,
        schema: { openAPIV3Schema: gadgetSchema(5) },
        subresources: { status: {} },
      },
      {
        name: 'v1alpha1',
        served: false,
        storage: false,
        schema: { openAPIV3Schema: gadgetSchema(5) },
      },
    ],
  },
}

const gadgets = (version: string, name?: string) =>
  `/apis/example.com/${version}/namespaces/lab/gadgets${name ? `/${name}` : ''}`
const json = { 'content-type': 'application/json', accept: 'application/json' }

/** A Gadget's JSON; `more` adds labels and top-level fields (status, unknown ones). */
const gadget = (
  name: string,
  spec: Record<string, unknown>,
  version = 'v1',
  { labels, ...more }: { labels?: Record<string, string>; [field: string]: unknown } = {},
) =>
  JSON.stringify({
    apiVersion: `example.com/${version}`,
    kind: 'Gadget',
    metadata: { name, ...(labels ? { labels } : {}) },
    spec,
    ...more,
  })

/** Creates a Gadget through the given version's endpoint, as any API client would. */
const createGadget = (name: string, spec: Record<string, unknown>, version = 'v1', more = {}) =>
  c.request('POST', gadgets(version), json, gadget(name, spec, version, more))

const mergePatch = (path: string, patch: unknown) =>
  c.request(
    'PATCH',
    path,
    { 'content-type': 'application/merge-patch+json', accept: 'application/json' },
    JSON.stringify(patch),
  )

const causesOf = (response: RawResponse) => (response.body.details as { causes: unknown[] }).causes

beforeAll(async () => {
  c = await startSimulatedCluster()
  expect((await c.kubectl(['create', 'namespace', 'lab'])).stderr).toBe('')
  const applied = await c.kubectl(['apply', '--server-side', '-f', '-'], stringify(gadgetCrd))
  expect(applied.stderr).toBe('')
  const established = await c.waitEstablished('gadgets.example.com')
  expect(established.stdout).toMatch(/condition met/)
}, 120_000)

afterAll(async () => {
  await c?.close()
})

describe('custom resources under their CRD schema', () => {
  it('refuses an object its schema forbids with 422 Invalid and every cause', async () => {
    const refused = await createGadget('bad', {
      size: 0,
      color: 'purple',
      label: 'Bad_Label',
      port: true,
      tags: ['a', 'a'],
    })
    expect(refused.status).toBe(422)
    expect(refused.body).toEqual({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      reason: 'Invalid',
      code: 422,
      message:
        'Gadget.example.com "bad" is invalid: [' +
        'spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1, ' +
        'spec.color: Unsupported value: "purple": supported values: "red", "green", "blue", ' +
        `spec.label: Invalid value: "Bad_Label": spec.label in body should match '^[a-z]+$', ` +
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean", ' +
        'spec.tags[1]: Duplicate value: "a"]',
      details: {
        name: 'bad',
        group: 'example.com',
        kind: 'Gadget',
        causes: [
          {
            reason: 'FieldValueInvalid',
            message: 'Invalid value: 0: spec.size in body should be greater than or equal to 1',
            field: 'spec.size',
          },
          {
            reason: 'FieldValueNotSupported',
            message: 'Unsupported value: "purple": supported values: "red", "green", "blue"',
            field: 'spec.color',
          },
          {
            reason: 'FieldValueInvalid',
            message: `Invalid value: "Bad_Label": spec.label in body should match '^[a-z]+$'`,
            field: 'spec.label',
          },
          {
            reason: 'FieldValueTypeInvalid',
            message: 'Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"',
            field: 'spec.port',
          },
          { reason: 'FieldValueDuplicate', message: 'Duplicate value: "a"', field: 'spec.tags[1]' },
        ],
      },
    })

    const missing = await createGadget('bare', { size: 11, color: 5 })
    expect(missing.status).toBe(422)
    expect(causesOf(missing)).toEqual([
      {
        reason: 'FieldValueInvalid',
        message: expect.stringContaining('less than or equal to 10'),
        field: 'spec.size',
      },
      {
        reason: 'FieldValueTypeInvalid',
        message: 'Invalid value: "integer": spec.color in body must be of type string: "integer"',
        field: 'spec.color',
      },
    ])
    const noSpecSize = await createGadget('bare', { color: 'red' })
    expect(causesOf(noSpecSize)).toEqual([
      { reason: 'FieldValueRequired', message: 'Required value', field: 'spec.size' },
    ])
    expect(noSpecSize.body.message).toBe('Gadget.example.com "bare" is invalid: spec.size: Required value')

    // The real kubectl prints the causes; nothing was stored.
    const printed = await c.kubectl(
      ['create', '-n', 'lab', '-f', '-'],
      gadget('bad', { size: 0, color: 'red' }),
    )
    expect(printed.code).not.toBe(0)
    expect(printed.stderr).toMatch(/The Gadget "bad" is invalid/)
    expect(printed.stderr).toContain(
      'spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1',
    )
    expect((await c.kubectl(['get', 'gadgets', '-n', 'lab', '-o', 'name'])).stdout).toBe('')
  })

  it('prunes unknown fields, keeps preserved ones and applies defaults, on create and on every write', async () => {
    const created = await createGadget(
      'sprocket',
      { size: 3, color: 'red', port: 'http', bogus: true, extra: { anything: { goes: [1] } } },
      'v1',
      { labels: { team: 'a' }, unknownTopLevel: 'dropped' },
    )
    expect(created.status).toBe(201)
    expect(created.body.unknownTopLevel).toBeUndefined()
    expect(created.body.spec).toEqual({
      size: 3,
      color: 'red',
      port: 'http',
      extra: { anything: { goes: [1] } },
      tier: 'standard',
      replicas: 1,
    })
    expect((created.body.metadata as { labels: unknown }).labels).toEqual({ team: 'a' })

    // A merge patch that adds an unknown field and removes a defaulted one: pruned, defaulted again.
    const patched = await mergePatch(gadgets('v1', 'sprocket'), {
      spec: { tier: null, replicas: 4, junk: 1 },
    })
    expect(patched.status).toBe(200)
    expect(patched.body.spec).toMatchObject({ tier: 'standard', replicas: 4 })
    expect((patched.body.spec as Record<string, unknown>).junk).toBeUndefined()
    // Pruning a field sent to an unchanged object changes nothing, not even generation.
    const again = await mergePatch(gadgets('v1', 'sprocket'), { spec: { junk: 2 } })
    expect((again.body.metadata as { generation: number }).generation).toBe(
      (patched.body.metadata as { generation: number }).generation,
    )

    // A patch that breaks the schema is refused like a create; server-side apply too.
    const broken = await c.request(
      'PATCH',
      gadgets('v1', 'sprocket'),
      { 'content-type': 'application/json-patch+json', accept: 'application/json' },
      JSON.stringify([{ op: 'replace', path: '/spec/replicas', value: 2 ** 31 }]),
    )
    expect(broken.status).toBe(422)
    expect(causesOf(broken)).toEqual([
      {
        reason: 'FieldValueTypeInvalid',
        message: `Invalid value: ${2 ** 31}: spec.replicas in body must be of type int32: "${2 ** 31}"`,
        field: 'spec.replicas',
      },
    ])
    const applied = await c.kubectl(
      ['apply', '--server-side', '--force-conflicts', '-n', 'lab', '-f', '-'],
      gadget('sprocket', { size: 3, color: 'mauve' }),
    )
    expect(applied.stderr).toContain(
      'spec.color: Unsupported value: "mauve": supported values: "red", "green", "blue"',
    )
    const replaced = await c.kubectl(
      ['replace', '-n', 'lab', '-f', '-'],
      gadget('sprocket', { size: 'big', color: 'red' }),
    )
    expect(replaced.stderr).toContain(
      'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"',
    )
    const kept = JSON.parse(
      (await c.kubectl(['get', 'gadget', 'sprocket', '-n', 'lab', '-o', 'json'])).stdout,
    )
    expect(kept.spec).toMatchObject({ size: 3, color: 'red', replicas: 4 })
  })

  it('keeps status apart when the CRD declares the status subresource, and validates it', async () => {
    const created = await createGadget('cog', { size: 1, color: 'blue' }, 'v1', { status: { ready: true } })
    expect(created.status).toBe(201)
    expect(created.body.status).toBeUndefined()

    const status = await c.kubectl([
      'patch',
      'gadget',
      'cog',
      '-n',
      'lab',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { ready: true, phase: 'Running' }, spec: { size: 9 } }),
    ])
    expect(status.stderr).toBe('')
    let cog = JSON.parse((await c.kubectl(['get', 'gadget', 'cog', '-n', 'lab', '-o', 'json'])).stdout)
    expect(cog.status).toEqual({ ready: true, phase: 'Running' })
    expect(cog.spec.size).toBe(1)

    const badStatus = await mergePatch(`${gadgets('v1', 'cog')}/status`, { status: { ready: 'yes' } })
    expect(badStatus.status).toBe(422)
    expect(causesOf(badStatus)).toEqual([
      {
        reason: 'FieldValueTypeInvalid',
        message: 'Invalid value: "string": status.ready in body must be of type boolean: "string"',
        field: 'status.ready',
      },
    ])

    const main = await c.kubectl([
      'patch',
      'gadget',
      'cog',
      '-n',
      'lab',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { phase: 'Gone' }, spec: { size: 2 } }),
    ])
    expect(main.stderr).toBe('')
    cog = JSON.parse((await c.kubectl(['get', 'gadget', 'cog', '-n', 'lab', '-o', 'json'])).stdout)
    expect(cog.status).toEqual({ ready: true, phase: 'Running' })
    expect(cog.spec.size).toBe(2)
  })

  it('stores one version and serves every served version, judged by the requested version’s schema', async () => {
    // v1beta1 allows at most 5; v1 allows 10.
    const tooBig = await createGadget('gear', { size: 7, color: 'green' }, 'v1beta1')
    expect(tooBig.status).toBe(422)
    expect(causesOf(tooBig)[0]).toEqual({
      reason: 'FieldValueInvalid',
      message: 'Invalid value: 7: spec.size in body should be less than or equal to 5',
      field: 'spec.size',
    })
    const created = await createGadget('gear', { size: 4, color: 'green' }, 'v1beta1')
    expect(created.status).toBe(201)
    expect(created.body.apiVersion).toBe('example.com/v1beta1')

    const asV1 = await c.request('GET', gadgets('v1', 'gear'), json)
    expect(asV1.body.apiVersion).toBe('example.com/v1')
    expect(asV1.body.spec).toEqual({ size: 4, color: 'green', tier: 'standard', replicas: 1 })
    const asBeta = await c.request('GET', gadgets('v1beta1', 'gear'), json)
    expect(asBeta.body.apiVersion).toBe('example.com/v1beta1')
    expect((asBeta.body.metadata as { uid: string }).uid).toBe((asV1.body.metadata as { uid: string }).uid)
    const listed = await c.request('GET', gadgets('v1'), json)
    expect(
      (listed.body.items as { apiVersion: string }[]).every((i) => i.apiVersion === 'example.com/v1'),
    ).toBe(true)
    // The storage version is what a v1 patch sees; a v1beta1 write of an object stored as v1 works.
    const beta = await c.kubectl(['get', 'gadgets.v1beta1.example.com', 'gear', '-n', 'lab', '-o', 'json'])
    expect(JSON.parse(beta.stdout).apiVersion).toBe('example.com/v1beta1')
    const betaPatch = await mergePatch(gadgets('v1beta1', 'gear'), { spec: { size: 5 } })
    expect(betaPatch.status).toBe(200)
    expect(betaPatch.body.apiVersion).toBe('example.com/v1beta1')

    // A version with served: false is not served.
    const alpha = await c.request('GET', gadgets('v1alpha1', 'gear'), json)
    expect(alpha.status).toBe(404)
  })
})

const capiCrds = join(
  import.meta.dirname,
  '../../../vendor/cluster-api-crds/cluster-api-v1.14.0/core/config/crd/bases',
)

const capiCluster = (topology: Record<string, unknown>) =>
  JSON.stringify({
    apiVersion: 'cluster.x-k8s.io/v1beta2',
    kind: 'Cluster',
    metadata: { name: 'mgmt-a', namespace: 'lab' },
    spec: {
      clusterNetwork: {
        pods: { cidrBlocks: ['192.168.0.0/16'] },
        services: { cidrBlocks: ['10.128.0.0/12'] },
      },
      topology,
    },
  })

const topology = {
  classRef: { name: 'kiln-openstack' },
  version: 'v1.31.4',
  controlPlane: { replicas: 3 },
  workers: { machineDeployments: [{ class: 'default-worker', name: 'md-0', replicas: 2 }] },
}

describe('the official Cluster API CRDs', () => {
  it('accept a valid Cluster with a topology and refuse a wrong one naming the field', async () => {
    const installed = await c.kubectl(['apply', '--server-side', '-f', capiCrds])
    expect(installed.stderr).toBe('')
    expect(installed.stdout).toMatch(
      /customresourcedefinition.apiextensions.k8s.io\/clusters.cluster.x-k8s.io serverside-applied/,
    )

    const valid = await c.kubectl(['apply', '--server-side', '-f', '-'], capiCluster(topology))
    expect(valid.stderr).toBe('')
    expect(valid.stdout.trim()).toBe('cluster.cluster.x-k8s.io/mgmt-a serverside-applied')
    const stored = JSON.parse(
      (await c.kubectl(['get', 'clusters.v1beta2.cluster.x-k8s.io', 'mgmt-a', '-n', 'lab', '-o', 'json']))
        .stdout,
    )
    expect(stored.apiVersion).toBe('cluster.x-k8s.io/v1beta2')
    expect(stored.spec.topology).toEqual(topology)

    const wrongReplicas = await c.kubectl(
      ['apply', '--server-side', '-f', '-'],
      capiCluster({ ...topology, controlPlane: { replicas: 'three' } }),
    )
    expect(wrongReplicas.code).not.toBe(0)
    expect(wrongReplicas.stderr).toContain(
      'spec.topology.controlPlane.replicas: Invalid value: "string": spec.topology.controlPlane.replicas in body must be of type integer: "string"',
    )
    const { version: _v, ...noVersion } = topology
    const missing = await c.request(
      'POST',
      '/apis/cluster.x-k8s.io/v1beta2/namespaces/lab/clusters',
      json,
      capiCluster(noVersion).replace('mgmt-a', 'mgmt-b'),
    )
    expect(missing.status).toBe(422)
    expect(missing.body.details).toEqual({
      name: 'mgmt-b',
      group: 'cluster.x-k8s.io',
      kind: 'Cluster',
      causes: [{ reason: 'FieldValueRequired', message: 'Required value', field: 'spec.topology.version' }],
    })
    const kept = JSON.parse(
      (await c.kubectl(['get', 'clusters.cluster.x-k8s.io', '-n', 'lab', '-o', 'json'])).stdout,
    )
    expect(kept.items.map((i: { metadata: { name: string } }) => i.metadata.name)).toEqual(['mgmt-a'])
    // Discovery prefers v1beta2 (the storage version) over v1beta1, as kube-apiserver's version priority does.
    expect(kept.items[0].apiVersion).toBe('cluster.x-k8s.io/v1beta2')
  })
})
