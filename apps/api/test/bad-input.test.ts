import { readFileSync } from 'node:fs'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aTemplate } from '../../../test/support/builders.ts'
import type { KilnApp } from '../src/app.ts'
import { createClusterOk, expectProblem, pointersOf } from './helpers.ts'

// Bad input of every kind, on every route that takes a body, must be a 4xx problem, never a 500.

type Schema = {
  $ref?: string
  type?: string | string[]
  properties?: Record<string, Schema>
  anyOf?: Schema[]
  oneOf?: Schema[]
  allOf?: Schema[]
  enum?: unknown[]
  const?: unknown
}
type OpenApiOperation = { operationId: string; requestBody?: { content: Record<string, { schema: Schema }> } }
type OpenApiDocument = {
  paths: Record<string, Record<string, OpenApiOperation>>
  components: { schemas: Record<string, Schema> }
}

const document = parse(
  readFileSync(new URL('../../../openapi/kiln.v1.yaml', import.meta.url), 'utf8'),
) as OpenApiDocument

function deref(schema: Schema): Schema {
  let s = schema
  while (s.$ref) {
    const name = s.$ref.replace('#/components/schemas/', '')
    const target = document.components.schemas[name]
    if (!target) throw new Error(`unresolved ${s.$ref}`)
    s = target
  }
  return s
}

/** The JSON types a schema admits (undefined: no constraint we can see). */
function typesOf(schema: Schema): Set<string> | undefined {
  const s = deref(schema)
  if (s.type) return new Set(Array.isArray(s.type) ? s.type : [s.type])
  const branches = s.anyOf ?? s.oneOf
  if (branches) {
    const out = new Set<string>()
    for (const b of branches) {
      const t = typesOf(b)
      if (!t) return undefined
      for (const x of t) out.add(x)
    }
    return out
  }
  if (s.allOf?.length) return typesOf(s.allOf[0]!)
  const values = s.enum ?? (s.const !== undefined ? [s.const] : undefined)
  if (values) return new Set(values.map((v) => (v === null ? 'null' : typeof v)))
  return undefined
}

const jsonType = (v: unknown) =>
  v === null ? 'null' : Array.isArray(v) ? 'array' : Number.isInteger(v) ? 'integer' : typeof v

/** A value of a type the schema does not admit. */
function wrongValueFor(schema: Schema): unknown {
  const types = typesOf(schema)
  if (!types) return undefined
  for (const candidate of [true, 'x', 42, [], {}, null]) {
    const t = jsonType(candidate)
    const admitted = types.has(t) || (t === 'integer' && types.has('number'))
    if (!admitted) return candidate
  }
  return undefined
}

interface WriteRoute {
  method: 'POST' | 'PATCH' | 'PUT'
  template: string
  url: string
  operationId: string
  properties: Record<string, Schema>
}

const clusterName = 'target'

function concretePath(path: string): string {
  return path.replace(/\{(\w+)\}/g, (_, param: string) => {
    switch (param) {
      case 'project':
        return 'team-a'
      case 'cluster':
        return clusterName
      case 'nodegroup':
        return 'workers'
      case 'template':
        return 'k8s-1.31'
      case 'version':
        return path.startsWith('/v1/kubernetes-versions') ? '1.31.4' : '1'
      case 'backend':
        return 'sim'
      case 'member':
        // Bodies are checked before anyone looks the member up.
        return '00000000-0000-4000-8000-000000000000'
      default:
        throw new Error(`bad-input.test.ts does not know a value for {${param}} in ${path}; add one`)
    }
  })
}

const writeRoutes: WriteRoute[] = []
for (const [path, item] of Object.entries(document.paths)) {
  for (const method of ['post', 'patch', 'put'] as const) {
    const op = item[method]
    if (!op?.requestBody) continue
    const schema = op.requestBody.content['application/json']?.schema
    if (!schema) throw new Error(`${op.operationId} takes no application/json body`)
    writeRoutes.push({
      method: method.toUpperCase() as WriteRoute['method'],
      template: path,
      url: concretePath(path),
      operationId: op.operationId,
      properties: deref(schema).properties ?? {},
    })
  }
}

let api: TestApi
let app: KilnApp

beforeAll(async () => {
  api = await startTestApi()
  app = api.app
  const { backend } = await aDataCentre(api.db)
  await aTemplate(api.db, backend.id, {
    name: 'locked',
    features: { cni: { plugin: 'cilium' }, kubeProxyMode: { mode: 'none' } },
    lockedFeatures: ['cni', 'kubeProxyMode'],
  })
  await createClusterOk(app, 'team-a', clusterName)
})

afterAll(async () => {
  await api?.close()
})

const sendRaw = (method: string, url: string, payload: string, contentType = 'application/json') =>
  app.inject({ method: method as 'POST', url, payload, headers: { 'content-type': contentType } })

describe('the routes under test', () => {
  it('are every POST/PATCH/PUT with a body in openapi/kiln.v1.yaml', () => {
    expect(writeRoutes.map((r) => r.operationId)).toEqual(
      expect.arrayContaining([
        'createCluster',
        'createNodeGroup',
        'createProject',
        'createTemplate',
        'resizeNodeGroup',
        'updateCluster',
        'updateKubernetesVersion',
        'updateNodeGroup',
        'updateTemplateVersion',
      ]),
    )
    for (const r of writeRoutes) expect(Object.keys(r.properties).length, r.operationId).toBeGreaterThan(0)
  })
})

describe.each(writeRoutes.map((r) => [`${r.method} ${r.template}`, r] as const))('%s', (_, route) => {
  it('malformed JSON → 400 problem+json', async () => {
    for (const payload of ['{"name": ', '{name: 1}', "{'a': 1}", '{"a": 1,}', 'nul']) {
      const p = expectProblem(await sendRaw(route.method, route.url, payload), 400)
      expect(p.instance).toBe(route.url)
      expect(p.requestId).toEqual(expect.any(String))
    }
  })

  it('an empty body with a JSON content type → 400 problem+json', async () => {
    expectProblem(await sendRaw(route.method, route.url, ''), 400)
  })

  it('a JSON array (or another non-object) body → 400 pointing at the root', async () => {
    for (const payload of ['[]', '[{"name":"x"}]', '"x"', '42', 'null', 'true']) {
      const p = expectProblem(await sendRaw(route.method, route.url, payload), 400)
      expect(pointersOf(p, 'body'), payload).toContain('/')
    }
  })

  it('an oversized body (a 300 KiB string field) → 413 problem', async () => {
    const field = Object.keys(route.properties)[0]!
    const payload = JSON.stringify({ [field]: 'x'.repeat(300 * 1024) })
    const p = expectProblem(await sendRaw(route.method, route.url, payload), 413)
    expect(p.type).toBe('https://kiln.dev/problems/payload-too-large')
  })

  it('a body that is not JSON at all → 415 problem', async () => {
    expectProblem(await sendRaw(route.method, route.url, '<cluster/>', 'application/xml'), 415)
  })

  it('an unknown top-level field → 400 pointing at it', async () => {
    const p = expectProblem(await sendRaw(route.method, route.url, JSON.stringify({ thatField: 1 })), 400)
    expect(p.errors).toEqual(
      expect.arrayContaining([{ pointer: '/thatField', in: 'body', message: 'is not a known field' }]),
    )
  })

  it('a wrong type for each known field → 400 pointing at that field', async () => {
    let checked = 0
    for (const [field, schema] of Object.entries(route.properties)) {
      const wrong = wrongValueFor(schema)
      if (wrong === undefined) continue
      const payload = JSON.stringify({ [field]: wrong })
      const p = expectProblem(await sendRaw(route.method, route.url, payload), 400)
      expect(pointersOf(p, 'body'), payload).toContain(`/${field}`)
      checked++
    }
    expect(checked).toBeGreaterThan(0)
  })
})

describe('names', () => {
  const badNames = ['UPPER', '-lead', 'trail-', 'a'.repeat(64), 'a_b', 'dot.ted', '', 'ü']

  it('invalid cluster names → 400 at /name', async () => {
    for (const name of badNames) {
      const res = await app.inject({
        method: 'POST',
        url: '/v1/projects/team-a/clusters',
        payload: { name, template: 'k8s-1.31' },
      })
      expect(new Set(pointersOf(expectProblem(res, 400))), JSON.stringify(name)).toEqual(new Set(['/name']))
    }
    expect(await api.db.cluster.count()).toBe(1)
  })

  it('invalid project, template and node-group names → 400 at /name', async () => {
    const templateBody = {
      kubernetesVersion: '1.31.4',
      backend: 'sim',
      controlPlane: { count: 1, machineClass: 'm1.large' },
      nodeGroups: [],
    }
    for (const name of badNames) {
      const cases = [
        ['/v1/projects', { name }],
        // Template names may carry dots (k8s-1.31); every other bad name is bad for them too.
        ...(name.includes('.') ? [] : ([['/v1/templates', { name, ...templateBody }]] as const)),
        [
          `/v1/projects/team-a/clusters/${clusterName}/nodegroups`,
          { name, machineClass: 'm1.large', count: 1 },
        ],
      ] as const
      for (const [url, payload] of cases) {
        const res = await app.inject({ method: 'POST', url, payload })
        expect(new Set(pointersOf(expectProblem(res, 400))), `${url} ${JSON.stringify(name)}`).toEqual(
          new Set(['/name']),
        )
      }
    }
  })

  it('template names may carry dots, like the seeded k8s-1.31; project names may not', async () => {
    const templateBody = {
      kubernetesVersion: '1.31.4',
      backend: 'sim',
      controlPlane: { count: 1, machineClass: 'm1.large' },
      nodeGroups: [],
    }
    const res = await app.inject({
      method: 'POST',
      url: '/v1/templates',
      payload: { name: 'k8s-9.99', ...templateBody },
    })
    expect(res.statusCode, res.body).toBe(201)
    expect(res.json<{ name: string }>().name).toBe('k8s-9.99')
    const project = await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'k8s-9.99' } })
    expect(pointersOf(expectProblem(project, 400))).toEqual(['/name'])
  })

  it('the longest valid name (63) is accepted', async () => {
    const res = await app.inject({ method: 'POST', url: '/v1/projects', payload: { name: 'a'.repeat(63) } })
    expect(res.statusCode, res.body).toBe(201)
  })
})

describe('values the database cannot store are 4xx problems, never 500', () => {
  const templateBody = {
    kubernetesVersion: '1.31.4',
    backend: 'sim',
    controlPlane: { count: 1, machineClass: 'm1.large' },
    nodeGroups: [],
  }
  const cases: [string, 'GET' | 'POST' | 'PATCH', string, unknown][] = [
    ['NUL in a project’s displayName', 'POST', '/v1/projects', { name: 'nul', displayName: 'a\u0000b' }],
    [
      'NUL in a template’s description',
      'POST',
      '/v1/templates',
      { name: 'nul', description: 'a\u0000b', ...templateBody },
    ],
    [
      'NUL in a taint key',
      'POST',
      '/v1/projects/team-a/clusters',
      {
        name: 'nul',
        template: 'k8s-1.31',
        nodeGroups: [{ name: 'workers', taints: [{ key: 'a\u0000b', effect: 'NoSchedule' }] }],
      },
    ],
    [
      'expiresAt in year 0 on create',
      'POST',
      '/v1/projects/team-a/clusters',
      { name: 'when', template: 'k8s-1.31', expiresAt: '0000-01-01T00:00:00Z' },
    ],
    [
      'expiresAt on a leap second on create',
      'POST',
      '/v1/projects/team-a/clusters',
      { name: 'when', template: 'k8s-1.31', expiresAt: '2016-12-31T23:59:60Z' },
    ],
    [
      'expiresAt on a leap second on PATCH',
      'PATCH',
      `/v1/projects/team-a/clusters/${clusterName}`,
      { expiresAt: '2016-12-31T23:59:60Z' },
    ],
    [
      'templateVersion beyond int4',
      'POST',
      '/v1/projects/team-a/clusters',
      { name: 'big', template: 'k8s-1.31', templateVersion: 2 ** 31 },
    ],
    [
      'a template version beyond int4 in the path',
      'GET',
      '/v1/templates/k8s-1.31/versions/99999999999',
      undefined,
    ],
    [
      'a template name that looks like an id',
      'GET',
      '/v1/templates/abcdefabcdefabcdefabcdefabcdefabcdef',
      undefined,
    ],
  ]

  it.each(cases)('%s', async (_, method, url, payload) => {
    const res = await app.inject({
      method,
      url,
      ...(payload === undefined ? {} : { payload: payload as object }),
    })
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400)
    expect(res.statusCode, res.body).toBeLessThan(500)
    expectProblem(res, res.statusCode)
  })
})

describe('unknown routes', () => {
  it('answer 404 problem+json', async () => {
    const cases: [string, string][] = [
      ['GET', '/'],
      ['GET', '/v2/projects'],
      ['GET', '/v1/clusters'],
      ['POST', '/v1/clusters'],
      ['DELETE', '/v1/projects'],
      ['PUT', '/v1/projects/team-a'],
      ['PATCH', '/v1/operations/00000000-0000-4000-8000-000000000000'],
      ['GET', `/v1/projects/team-a/clusters/${clusterName}/kubeconfig`],
      ['POST', `/v1/projects/team-a/clusters/${clusterName}/nodegroups/workers/scale`],
      ['GET', '/v1/projects/team-a/clusters/x/y/z'],
    ]
    for (const [method, url] of cases) {
      const p = expectProblem(await app.inject({ method: method as 'GET', url, payload: undefined }), 404)
      expect(p.instance).toBe(url)
    }
  })

  it('any path outside the API answers 404 problem+json (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE'),
        fc.array(fc.webSegment(), { minLength: 1, maxLength: 4 }),
        async (method, segments) => {
          const url = `/nope/${segments.map(encodeURIComponent).join('/')}`
          const res = await app.inject({ method: method as 'GET', url })
          expectProblem(res, 404)
        },
      ),
      { numRuns: 50 },
    )
  })
})

describe('random bodies (property-based)', () => {
  // Any JSON value, including strings of any code point and numbers of any size.
  const anyValue: fc.Arbitrary<unknown> = fc.oneof(
    fc.anything(),
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.string({ maxLength: 70 }),
    fc.integer(),
    fc.double(),
    fc.constantFrom(null, true, false, 0, -1, '', [], {}),
  )
  const dnsName = fc.oneof(
    fc.constantFrom('fuzz', 'workers', 'extra', 'gpus'),
    fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?$/),
  )
  const labels = fc.dictionary(
    fc.constantFrom('team', 'env', 'example.com/owner'),
    fc.constantFrom('a', 'prod', 'x-1', ''),
    { maxKeys: 3 },
  )
  const partial = <T extends Record<string, fc.Arbitrary<unknown>>>(fields: T) =>
    fc.record(fields, { requiredKeys: [] })
  const features = partial({
    gpu: partial({ enabled: fc.boolean(), mode: fc.constantFrom('device-plugin', 'operator') }),
    ingress: partial({ controller: fc.constantFrom('traefik', 'nginx', 'none') }),
    monitoring: partial({ enabled: fc.boolean(), retentionDays: fc.integer({ min: 1, max: 365 }) }),
    cni: partial({ plugin: fc.constantFrom('calico', 'cilium', 'flannel') }),
    kubeProxyMode: partial({ mode: fc.constantFrom('iptables', 'ipvs', 'none') }),
    metricsServer: partial({ enabled: fc.boolean() }),
    autoscaler: partial({ enabled: fc.boolean() }),
  })
  const machineClass = fc.constantFrom('m1.large', 'gpu.a100x4', 'm9.huge')
  const nodeGroup = fc.record(
    {
      name: dnsName,
      role: fc.constantFrom('worker', 'ingress', 'infra'),
      machineClass,
      count: fc.integer({ min: 0, max: 12 }),
      minCount: fc.integer({ min: 0, max: 5 }),
      maxCount: fc.integer({ min: 0, max: 20 }),
      zones: fc.uniqueArray(fc.constantFrom('zone-a', 'zone-b', 'zone-c'), { maxLength: 2 }),
      labels,
      taints: fc.array(
        fc.record({
          key: fc.constantFrom('gpu', 'example.com/dedicated'),
          value: fc.constantFrom('true', 'x'),
          effect: fc.constantFrom('NoSchedule', 'PreferNoSchedule', 'NoExecute'),
        }),
        { maxLength: 2 },
      ),
      maxSurge: fc.integer({ min: 0, max: 3 }),
      maxUnavailable: fc.integer({ min: 0, max: 3 }),
      features: partial({
        gpu: partial({ enabled: fc.boolean(), mode: fc.constantFrom('device-plugin', 'operator') }),
        autoscaler: partial({ enabled: fc.boolean() }),
      }),
    },
    { requiredKeys: ['name'] },
  )
  const controlPlane = partial({ count: fc.constantFrom(1, 3, 5), machineClass })
  const timestamp = fc
    .date({
      min: new Date('2000-01-01T00:00:00Z'),
      max: new Date('2100-01-01T00:00:00Z'),
      noInvalidDate: true,
    })
    .map((d) => d.toISOString())

  // Schema-valid bodies, so that most requests reach the rules behind the schema…
  const validCluster = fc.record(
    {
      name: dnsName,
      template: fc.constantFrom('k8s-1.31', 'locked', 'nope'),
      templateVersion: fc.oneof(
        { arbitrary: fc.constant(1), weight: 4 },
        { arbitrary: fc.constant(2), weight: 1 },
      ),
      labels,
      expiresAt: timestamp,
      controlPlane,
      features,
      nodeGroups: fc.array(nodeGroup, { maxLength: 3 }),
    },
    { requiredKeys: ['name', 'template'] },
  )
  const validTemplate = fc.record(
    {
      name: dnsName,
      project: fc.constantFrom('team-a', 'nope'),
      description: fc.string({ maxLength: 30 }),
      kubernetesVersion: fc.constantFrom('1.31.4', '1.29.12', '1.99.0'),
      backend: fc.constantFrom('sim', 'nope'),
      controlPlane,
      nodeGroups: fc.array(nodeGroup, { maxLength: 3 }),
      features,
      lockedFeatures: fc.uniqueArray(fc.constantFrom('cni', 'gpu', 'ingress', 'teleport'), { maxLength: 3 }),
      labels,
    },
    { requiredKeys: ['name', 'kubernetesVersion', 'backend', 'controlPlane', 'nodeGroups'] },
  )
  const validProject = fc.record(
    { name: dnsName, displayName: fc.string({ maxLength: 30 }), labels },
    { requiredKeys: ['name'] },
  )

  /** Every place in a JSON tree: a path to an existing member, or to a new key of an object. */
  function places(value: unknown, path: (string | number)[] = []): (string | number)[][] {
    const out: (string | number)[][] = [path]
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) out.push(...places(v, [...path, i]))
    } else if (value && typeof value === 'object') {
      out.push([...path, 'unknownField'])
      for (const [k, v] of Object.entries(value)) out.push(...places(v, [...path, k]))
    }
    return out
  }

  function setAt(root: unknown, path: (string | number)[], value: unknown): unknown {
    if (path.length === 0) return value
    const copy = structuredClone(root) as Record<string | number, unknown>
    let node = copy
    for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>
    node[path[path.length - 1]!] = value
    return copy
  }

  // …then 0–3 mutations, each putting a random value at a random place (the root included).
  const mutated = (valid: fc.Arbitrary<unknown>) =>
    fc.tuple(valid, fc.array(fc.tuple(fc.nat(), anyValue), { maxLength: 3 })).map(([body, mutations]) => {
      let out = body
      for (const [at, value] of mutations) {
        const all = places(out)
        out = setAt(out, all[at % all.length]!, value)
      }
      return out
    })
  const bodyFrom = (valid: fc.Arbitrary<unknown>) =>
    fc.oneof({ arbitrary: mutated(valid), weight: 9 }, { arbitrary: fc.anything(), weight: 1 })

  const seen = new Map<number, number>()

  async function expectNo5xx(url: string, body: unknown) {
    const payload = JSON.stringify(body) ?? 'null'
    const res = await app.inject({
      method: 'POST',
      url,
      payload,
      headers: { 'content-type': 'application/json' },
    })
    seen.set(res.statusCode, (seen.get(res.statusCode) ?? 0) + 1)
    const context = `POST ${url} ${payload.slice(0, 600)} → ${res.statusCode} ${res.body.slice(0, 300)}`
    expect(res.statusCode, context).toBeLessThan(500)
    if (res.statusCode >= 400) {
      expect(res.headers['content-type'], context).toMatch(/^application\/problem\+json/)
      const p = res.json()
      expect(p.status, context).toBe(res.statusCode)
      for (const member of ['type', 'title', 'detail', 'instance']) {
        expect(typeof p[member], `${member} in ${context}`).toBe('string')
      }
    }
  }

  it('never answer ≥ 500, and every 4xx is problem+json', async () => {
    await fc.assert(
      fc.asyncProperty(
        bodyFrom(validCluster),
        fc.boolean(),
        bodyFrom(validTemplate),
        bodyFrom(validProject),
        bodyFrom(nodeGroup),
        async (cluster, plan, template, project, group) => {
          await expectNo5xx(`/v1/projects/team-a/${plan ? 'cluster-plans' : 'clusters'}`, cluster)
          await expectNo5xx('/v1/templates', template)
          await expectNo5xx('/v1/projects', project)
          await expectNo5xx(`/v1/projects/team-a/clusters/${clusterName}/nodegroups`, group)
        },
      ),
      { numRuns: 150 },
    )
    // Not vacuous: besides schema errors, bodies reached the rules behind the schema and some succeeded.
    const count = (...statuses: number[]) => statuses.reduce((n, st) => n + (seen.get(st) ?? 0), 0)
    const summary = JSON.stringify([...seen].sort())
    expect(count(400), summary).toBeGreaterThan(50)
    expect(count(409, 422), summary).toBeGreaterThan(50)
    expect(count(200, 201, 202), summary).toBeGreaterThan(10)
  })
})
