import { readFileSync } from 'node:fs'
import Ajv, { type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { createApiToken } from '../../../packages/db/src/index.ts'
import { parseMasterKey } from '../../../packages/pki/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre, aProject } from '../../../test/support/builders.ts'
import { randomKey } from '../../../test/support/oidc.ts'
import type { KilnApp } from '../src/app.ts'

// A fuzz of every operation in openapi/kiln.v1.yaml: requests built from each operation's declared
// parameters and body schema, valid-ish and hostile (NULs, unicode, huge strings, deep nesting,
// wrong types and content types, bad tokens), as a project admin, as a project admin of another
// project, and with no or broken credentials. The seed is fixed and printed: a failure reproduces
// with KILN_FUZZ_SEED=<seed>, and KILN_FUZZ_RUNS sets the number of requests.

const seed = Number(process.env.KILN_FUZZ_SEED ?? 20261207)
const runs = Number(process.env.KILN_FUZZ_RUNS ?? 10_000)

type Schema = Record<string, unknown> & {
  $ref?: string
  type?: string | string[]
  properties?: Record<string, Schema>
  required?: string[]
  additionalProperties?: boolean | Schema
  items?: Schema
  anyOf?: Schema[]
  oneOf?: Schema[]
  allOf?: Schema[]
  enum?: unknown[]
  const?: unknown
  pattern?: string
  format?: string
  minimum?: number
  maximum?: number
  minLength?: number
  maxLength?: number
  maxItems?: number
}
interface Parameter {
  in: 'path' | 'query' | 'header'
  name: string
  required?: boolean
  schema: Schema
}
interface Response {
  content?: Record<string, { schema: Schema }>
}
interface Operation {
  operationId: string
  parameters?: Parameter[]
  requestBody?: { content: Record<string, { schema: Schema }> }
  responses: Record<string, Response>
}
type Document = {
  paths: Record<string, Record<string, Operation>>
  components: { schemas: Record<string, Schema> }
}

const documentText = readFileSync(new URL('../../../openapi/kiln.v1.yaml', import.meta.url), 'utf8')
const document = parse(documentText) as Document

const methods = ['get', 'post', 'put', 'patch', 'delete'] as const
const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  methods.filter((m) => item[m]).map((method) => ({ path, method, op: item[method]! })),
)

/** Follows a local `$ref` (a schema, or a shared parameter or response under components). */
function resolve<T>(value: T): T {
  let v = value as { $ref?: string }
  while (typeof v?.$ref === 'string') {
    v = v.$ref
      .slice(2)
      .split('/')
      .reduce<unknown>(
        (o, key) => (o as Record<string, unknown>)[key.replaceAll('~1', '/').replaceAll('~0', '~')],
        document,
      ) as { $ref?: string }
  }
  return v as T
}
// Shared parameters and answers are references; the fuzz reads each operation's own copy.
for (const item of Object.values(document.paths)) {
  for (const op of Object.values(item)) {
    if (!op || typeof op !== 'object' || !('responses' in op)) continue
    if (op.parameters) op.parameters = op.parameters.map(resolve)
    op.responses = Object.fromEntries(Object.entries(op.responses).map(([k, r]) => [k, resolve(r)]))
  }
}

const deref = (schema: Schema): Schema => resolve(schema)

// ---------------------------------------------------------------------------------------------
// Values

const hostileStrings = [
  '',
  ' ',
  'a\u0000b',
  '\u0000',
  'ключ',
  '名前',
  '💥',
  '\u202e',
  'a'.repeat(64),
  'a'.repeat(5000),
  '../../etc/passwd',
  '\'; DROP TABLE "Cluster"; --',
  '__proto__',
  'constructor',
  '%00',
  '\ud800',
  'null',
  '-1',
  '1e309',
  '00000000-0000-0000-0000-000000000000',
]
const hostileString = fc.oneof(
  fc.constantFrom(...hostileStrings),
  fc.string({ unit: 'binary', maxLength: 40 }),
)
const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 2 ** 31, 2 ** 53 + 1, 1e308, -0, 0.5, [], {}),
  hostileString,
  fc.jsonValue({ maxDepth: 3 }),
)

/** A value the schema (mostly) admits; depth bounds recursive schemas. */
function valid(schema: Schema, depth = 0): fc.Arbitrary<unknown> {
  const s = deref(schema)
  if (s.const !== undefined) return fc.constant(s.const)
  if (s.enum) return fc.constantFrom(...s.enum)
  const branches = s.anyOf ?? s.oneOf
  if (branches?.length) return fc.oneof(...branches.map((b) => valid(b, depth + 1)))
  if (s.allOf?.length) return valid(s.allOf[0]!, depth + 1)
  const type = Array.isArray(s.type) ? s.type[0] : s.type
  switch (type) {
    case 'string':
      if (s.format === 'uuid') return fc.uuid()
      if (s.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString())
      if (s.pattern)
        return fc.stringMatching(new RegExp(s.pattern)).filter((v) => v.length <= (s.maxLength ?? 200))
      return fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 20, 20) })
    case 'integer': {
      const min = s.minimum ?? -10
      return fc.integer({ min, max: Math.max(min, Math.min(s.maximum ?? 100, min + 100)) })
    }
    case 'number': {
      const min = s.minimum ?? -10
      return fc.double({ min, max: Math.max(min, s.maximum ?? min + 100), noNaN: true })
    }
    case 'boolean':
      return fc.boolean()
    case 'null':
      return fc.constant(null)
    case 'array':
      if (depth > 4) return fc.constant([])
      return fc.array(s.items ? valid(s.items, depth + 1) : anyJson, {
        maxLength: Math.min(s.maxItems ?? 3, 3),
      })
    default: {
      if (depth > 4 || !(s.properties || s.additionalProperties)) return fc.constant({})
      const properties = s.properties ?? {}
      const record = fc.record(
        Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, valid(v, depth + 1)])),
        { requiredKeys: (s.required ?? []).filter((k) => k in properties) },
      )
      return record
    }
  }
}

/** A deep copy of `value` with one member somewhere replaced by a hostile value. */
const mutated = (value: unknown): fc.Arbitrary<unknown> =>
  fc.tuple(fc.nat(), anyJson, fc.boolean()).map(([pick, replacement, asKey]) => {
    const copy = structuredClone(value) as unknown
    const holders: Record<string, unknown>[] = []
    const pending = [copy]
    while (pending.length > 0) {
      const v = pending.pop()
      if (v && typeof v === 'object') {
        holders.push(v as Record<string, unknown>)
        pending.push(...Object.values(v))
      }
    }
    if (holders.length === 0) return replacement
    const holder = holders[pick % holders.length]!
    const keys = Object.keys(holder)
    if (asKey || keys.length === 0) holder[typeof replacement === 'string' ? replacement : 'x\u0000y'] = 1
    else holder[keys[pick % keys.length]!] = replacement
    return copy
  })

interface Body {
  payload: string
  contentType: string | undefined
}

const json = (value: unknown): Body => ({
  payload: JSON.stringify(value) ?? 'null',
  contentType: 'application/json',
})

function bodies(op: Operation): fc.Arbitrary<Body | undefined> {
  const schema = op.requestBody?.content['application/json']?.schema
  const hostileRaw = fc.oneof(
    fc.constantFrom<Body>(
      { payload: '', contentType: 'application/json' },
      { payload: '{"name": ', contentType: 'application/json' },
      { payload: `{"a":${'['.repeat(3000)}${']'.repeat(3000)}}`, contentType: 'application/json' },
      { payload: `{"a":"${'x'.repeat(300 * 1024)}"}`, contentType: 'application/json' },
      { payload: '<cluster/>', contentType: 'application/xml' },
      { payload: 'name=x', contentType: 'application/x-www-form-urlencoded' },
      { payload: 'hello', contentType: 'text/plain' },
      { payload: '{"name":"x"}', contentType: 'application/json; charset=latin1' },
      { payload: '{"name":"x"}', contentType: 'application/merge-patch+json' },
      { payload: '{"__proto__":{"admin":true}}', contentType: 'application/json' },
      { payload: '{"constructor":{"prototype":{"admin":true}}}', contentType: 'application/json' },
      { payload: '\u0000', contentType: 'application/json' },
      { payload: '{}', contentType: undefined },
    ),
    anyJson.map(json),
  )
  if (!schema)
    return fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: hostileRaw })
  const good = valid(schema)
  return fc.oneof(
    { weight: 4, arbitrary: good.map(json) },
    { weight: 4, arbitrary: good.chain(mutated).map(json) },
    { weight: 2, arbitrary: hostileRaw },
  )
}

// ---------------------------------------------------------------------------------------------
// Who calls, and with which resources

interface Fixtures {
  admin: string
  foreign: string
  otherToken: string
  member: string
  operation: string
  finishedOperation: string
}
let fixtures: Fixtures

/** Path values that exist for the admin (most requests should get past the lookups). */
function knownValues(name: string, path: string): string[] {
  switch (name) {
    case 'project':
      return ['team-a', 'team-a', 'team-b']
    case 'cluster':
      return ['c1', 'c1', 'c2']
    case 'nodegroup':
      return ['workers']
    case 'template':
      return ['k8s-1.31']
    case 'version':
      return path.startsWith('/v1/kubernetes-versions') ? ['1.31.4', '1.29.12'] : ['1', '2']
    case 'backend':
      return ['sim']
    case 'machineClass':
      return ['m1.large', 'gpu.a100x4']
    case 'feature':
      return ['gpu', 'cni', 'ingress']
    case 'member':
      return [fixtures.member]
    case 'token':
      return [fixtures.otherToken]
    case 'operation':
      // The event stream of an unfinished operation never ends: only finished ones are watched.
      return path.endsWith('/events') ? [fixtures.finishedOperation] : [fixtures.operation]
    default:
      return ['x']
  }
}

/** Percent-encodes; a lone surrogate (no UTF-8 form) goes out as the CESU bytes a careless client sends. */
function encode(value: unknown): string {
  try {
    return encodeURIComponent(String(value))
  } catch {
    return '%ed%a0%80'
  }
}

const rawHostilePathValues = ['%00', 'a%00b', '%ff', '%zz', '%e0%a4', 'a'.repeat(150), '%2F', '..', '%20']

function pathValue(name: string, path: string, schema: Schema): fc.Arbitrary<string> {
  // Never empty: `/v1/features/` is another operation (the list), not getFeature with no name.
  const nonEmpty = (a: fc.Arbitrary<string>) => a.filter((v) => v.length > 0)
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...knownValues(name, path)).map(encode) },
    { weight: 1, arbitrary: nonEmpty(valid(schema).map(encode)) },
    { weight: 1, arbitrary: nonEmpty(hostileString.map(encode)) },
    {
      weight: 1,
      // A final `..` is a dot segment the URL resolves away: the request names the parent resource,
      // another operation, whose answer this one's schema would wrongly judge.
      arbitrary: fc.constantFrom(
        ...rawHostilePathValues.filter((v) => v !== '..' || !path.endsWith(`{${name}}`)),
      ),
    },
  )
}

function queryValue(name: string, schema: Schema): fc.Arbitrary<string> {
  // A valid ?wait= holds the request: keep it at zero so the fuzz stays fast.
  if (name === 'wait') return fc.constantFrom('0', '0s', '99999m', 'soon', '%00')
  return fc.oneof(
    { weight: 3, arbitrary: valid(schema).map(encode) },
    { weight: 1, arbitrary: hostileString.map(encode) },
    { weight: 1, arbitrary: fc.constantFrom('%ff', '%00', 'a&b=c', '[]', 'a%5B%5D') },
  )
}

const callers = ['admin', 'admin', 'admin', 'foreign', 'none', 'garbage', 'huge', 'basic'] as const
type Caller = (typeof callers)[number]

function authorization(caller: Caller): string | undefined {
  switch (caller) {
    case 'admin':
      return `Bearer ${fixtures.admin}`
    case 'foreign':
      return `Bearer ${fixtures.foreign}`
    case 'none':
      return undefined
    case 'garbage':
      return `Bearer kiln_00000000_${'0'.repeat(64)}`
    case 'huge':
      return `Bearer ${'a'.repeat(40_000)}`
    case 'basic':
      return 'Basic YWRtaW46YWRtaW4='
  }
}

interface Sent {
  operationId: string
  method: string
  url: string
  caller: Caller
  headers: Record<string, string>
  body: Body | undefined
}

function requests(): fc.Arbitrary<Sent> {
  return fc.oneof(
    ...operations.map(({ path, method, op }) => {
      const parameters = op.parameters ?? []
      const pathParams = parameters.filter((p) => p.in === 'path')
      const optionalParams = parameters.filter((p) => p.in !== 'path')
      return fc
        .record({
          path: fc.tuple(...pathParams.map((p) => pathValue(p.name, path, p.schema))),
          optional: fc.tuple(
            ...optionalParams.map((p) =>
              fc.option(
                p.in === 'query'
                  ? queryValue(p.name, p.schema)
                  : fc.oneof(valid(p.schema).map(String), hostileString),
                {
                  nil: undefined,
                },
              ),
            ),
          ),
          body: bodies(op),
          caller: fc.constantFrom(...callers),
          extraQuery: fc.option(
            fc.constantFrom('unknown=1', 'limit=-1', 'limit=abc', 'cursor=%00', 'a=%ff'),
            {
              nil: undefined,
            },
          ),
        })
        .map(({ path: values, optional, body, caller, extraQuery }): Sent => {
          let url = path
          pathParams.forEach((p, i) => {
            url = url.replace(`{${p.name}}`, values[i]!)
          })
          const query: string[] = []
          const headers: Record<string, string> = {}
          optionalParams.forEach((p, i) => {
            const v = optional[i]
            if (v === undefined) return
            if (p.in === 'query') query.push(`${p.name}=${v}`)
            // Header values are bytes on the wire: keep what inject can carry.
            else headers[p.name] = String(v).replace(/[^\t\x20-\x7e\x80-\xff]/g, '?')
          })
          if (extraQuery) query.push(extraQuery)
          const auth = authorization(caller)
          if (auth) headers.authorization = auth
          if (body?.contentType) headers['content-type'] = body.contentType
          return {
            operationId: op.operationId,
            method: method.toUpperCase(),
            url: query.length ? `${url}?${query.join('&')}` : url,
            caller,
            headers,
            body,
          }
        })
    }),
  )
}

// ---------------------------------------------------------------------------------------------
// The run

interface Answer {
  sent: Sent
  status: number
  contentType: string
  body: string
}

let api: TestApi
let app: KilnApp
const answers: Answer[] = []
const timedOut: Sent[] = []

const requestTimeoutMs = 10_000

beforeAll(async () => {
  api = await startTestApi({ app: { authentication: 'required', masterKey: parseMasterKey(randomKey()) } })
  app = api.app
  const { project } = await aDataCentre(api.db)
  const teamB = await aProject(api.db, 'team-b')
  const token = (projectId: string, name: string, role: 'admin' | 'member' = 'admin') =>
    api.db.$transaction((tx) =>
      createApiToken(
        tx,
        { subject: 'user:fuzz', requestId: 'fuzz' },
        { projectId, name, role, expiresAt: new Date(Date.now() + 86_400_000) },
      ),
    )
  const admin = (await token(project.id, 'fuzz-admin')).plaintext
  // A member, not an admin, of its own project: an admin could delete that project, and its token
  // with it, and every later foreign request would test nothing but a 401.
  const foreign = (await token(teamB.id, 'fuzz-foreign', 'member')).plaintext
  const other = await token(project.id, 'fuzz-other')
  const as = { authorization: `Bearer ${admin}` }
  const create = async (name: string) => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/projects/team-a/clusters',
      headers: as,
      payload: { name, template: 'k8s-1.31' },
    })
    expect(res.statusCode, res.body).toBe(202)
    return res.json<{ id: string }>().id
  }
  const finished = await create('c2')
  await app.inject({ method: 'POST', url: `/v1/operations/${finished}/cancel`, headers: as })
  const member = await app.inject({
    method: 'POST',
    url: '/v1/projects/team-a/members',
    headers: as,
    payload: { kind: 'user', name: 'fuzz-member', role: 'viewer' },
  })
  fixtures = {
    admin,
    foreign,
    otherToken: other.token.id,
    member: member.json<{ id: string }>().id,
    operation: await create('c1'),
    finishedOperation: finished,
  }

  const sample = fc.sample(requests(), { seed, numRuns: runs })
  console.log(`fuzz: ${sample.length} requests over ${operations.length} operations, seed ${seed}`)
  const started = Date.now()
  for (const sent of sample) {
    const res = await Promise.race([
      app.inject({
        method: sent.method as 'GET',
        url: sent.url,
        headers: sent.headers,
        ...(sent.body ? { payload: sent.body.payload } : {}),
      }),
      new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), requestTimeoutMs).unref()),
    ])
    if (!res) {
      timedOut.push(sent)
      continue
    }
    answers.push({
      sent,
      status: res.statusCode,
      contentType: String(res.headers['content-type'] ?? ''),
      body: res.body,
    })
  }
  const tally = new Map<string, number>()
  for (const a of answers) {
    const key = `${a.sent.caller} ${a.status}`
    tally.set(key, (tally.get(key) ?? 0) + 1)
  }
  console.log(
    `fuzz: done in ${Date.now() - started} ms; by caller and status: ${[...tally.entries()]
      .sort()
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ')}`,
  )
}, 600_000)

afterAll(async () => {
  await api?.close()
})

const describeSent = ({ sent, status, body }: Answer) =>
  `${sent.operationId} as ${sent.caller}: ${sent.method} ${sent.url.slice(0, 200)} ${sent.body ? `(${sent.body.contentType} ${sent.body.payload.slice(0, 120)})` : ''} → ${status} ${body.slice(0, 300)}`

describe(`a fuzz of every operation (seed ${seed})`, () => {
  it('reaches every operation and finds no 5xx and no error that is not problem+json with a type', () => {
    expect(timedOut.map((s) => `${s.operationId} ${s.method} ${s.url}`)).toEqual([])
    expect(answers.length).toBeGreaterThanOrEqual(runs)
    const reached = new Set(answers.map((a) => a.sent.operationId))
    expect(operations.map((o) => o.op.operationId).filter((id) => !reached.has(id))).toEqual([])

    const bad = answers.filter((a) => {
      if (a.status >= 500) return true
      if (a.status < 400) return false
      if (!a.contentType.startsWith('application/problem+json')) return true
      try {
        const p = JSON.parse(a.body) as { type?: unknown; status?: unknown }
        return (
          typeof p.type !== 'string' ||
          !p.type.startsWith('https://kiln.dev/problems/') ||
          p.status !== a.status
        )
      } catch {
        return true
      }
    })
    expect(bad.slice(0, 20).map(describeSent), `${bad.length} bad answers`).toEqual([])
  })

  it('answers only statuses the document declares, with bodies that match the declared schema', () => {
    const ajv = addFormats(new Ajv({ strict: false, allErrors: false, validateSchema: false }))
    ajv.addSchema({ ...document, $id: 'kiln.json' })
    const validators = new Map<string, ValidateFunction | undefined>()
    const validatorFor = (path: string, method: string, status: string, contentType: string) => {
      const pointer = `/paths/${path.replaceAll('~', '~0').replaceAll('/', '~1')}/${method}/responses/${status}/content/${contentType.replaceAll('/', '~1')}/schema`
      if (!validators.has(pointer)) validators.set(pointer, ajv.getSchema(`kiln.json#${pointer}`))
      return validators.get(pointer)
    }
    // Grouped by what is wrong, then by operation: one line per kind, with an example.
    const violations = new Map<string, { operations: Map<string, number>; example: string }>()
    const note = (kind: string, a: Answer) => {
      const v = violations.get(kind) ?? { operations: new Map(), example: describeSent(a).slice(0, 400) }
      v.operations.set(a.sent.operationId, (v.operations.get(a.sent.operationId) ?? 0) + 1)
      violations.set(kind, v)
    }
    for (const a of answers) {
      const { path, method, op } = operations.find((o) => o.op.operationId === a.sent.operationId)!
      const declared =
        op.responses[String(a.status)] ?? op.responses[`${String(a.status)[0]}XX`] ?? op.responses.default
      if (!declared) {
        note(`${a.status} not declared`, a)
        continue
      }
      const status = op.responses[String(a.status)]
        ? String(a.status)
        : op.responses[`${String(a.status)[0]}XX`]
          ? `${String(a.status)[0]}XX`
          : 'default'
      const mediaType = a.contentType.split(';')[0]!.trim()
      if (!declared.content) {
        if (a.body.length > 0) note(`${a.status} has a body the document does not declare`, a)
        continue
      }
      if (!declared.content[mediaType]) {
        note(`${a.status} as ${mediaType || 'no content type'} not declared`, a)
        continue
      }
      if (!mediaType.endsWith('json')) continue
      const validate = validatorFor(path, method, status, mediaType)
      if (validate && !validate(JSON.parse(a.body))) {
        const e = validate.errors?.[0]
        note(
          `${op.operationId}: ${a.status} body does not match (${e?.instancePath || '/'} ${e?.message})`,
          a,
        )
      }
    }
    const report = [...violations.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(
        ([kind, { operations: ops, example }]) =>
          `${kind}: ${ops.size} operations (${[...ops.entries()].map(([id, n]) => `${id} ×${n}`).join(', ')})\n    e.g. ${example}`,
      )
    expect(report, `${report.length} kinds of answers the document does not describe`).toEqual([])
  })
})
