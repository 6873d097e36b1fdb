import { readFile } from 'node:fs/promises'
import { featureDefinition, featureNames } from '@kiln/domain'
import type { ValidateFunction } from 'ajv'
import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { absoluteRefs } from '../../../test/support/recorder.ts'

// The committed OpenAPI document (test/generated.test.ts keeps it equal to what the routes generate)
// is what client generators and the docs page read: every operation must be named, summarised,
// tagged and illustrated with examples that are valid against their own schemas.

type Json = Record<string, unknown>
interface Media {
  schema?: Json
  example?: unknown
  examples?: Record<string, { value?: unknown }>
}
interface Response {
  $ref?: string
  description?: string
  headers?: Record<string, { $ref?: string }>
  content?: Record<string, Media>
}
interface Operation {
  operationId?: string
  summary?: string
  description?: string
  tags?: string[]
  security?: unknown[]
  parameters?: { $ref?: string; name?: string; in?: string; description?: string }[]
  'x-kiln-permission'?: string
  requestBody?: { content?: Record<string, Media> }
  responses?: Record<string, Response>
}
interface Document {
  tags?: { name: string }[]
  paths: Record<string, Record<string, Operation>>
  components: {
    schemas: Record<string, Json>
    responses?: Record<string, Response>
    parameters?: Record<string, { name: string; description?: string }>
  }
}

const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace']
const componentPrefix = '#/components/schemas/'
const problemRef = `${componentPrefix}Problem`
const documentId = 'https://kiln.dev/openapi/kiln.v1.json'

const doc = parse(await readFile('openapi/kiln.v1.yaml', 'utf8')) as Document

/** A response as declared: a `components/responses` ref is followed. */
function resolved(response: Response): Response {
  const name = response.$ref?.replace('#/components/responses/', '')
  return name ? (doc.components.responses?.[name] ?? {}) : response
}

const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
  methods
    .filter((method) => item[method])
    .map((method) => ({
      name: `${method.toUpperCase()} ${path}`,
      pointer: `#/paths/${pointerToken(path)}/${method}`,
      op: item[method] as Operation,
    })),
)

function pointerToken(token: string) {
  return token.replaceAll('~', '~0').replaceAll('/', '~1')
}

// OpenAPI 3.1 schema objects are JSON Schema 2020-12. `example` (OpenAPI's own annotation) is allowed.
const ajv = new Ajv2020({ allErrors: true, strict: false })
addFormats(ajv)
ajv.addSchema({ $id: documentId, components: absoluteRefs(doc.components, documentId) })

function validatorFor(schema: Json): ValidateFunction {
  return ajv.compile(absoluteRefs(schema, documentId))
}

interface Example {
  pointer: string
  value: unknown
}

/** The examples of a schema: its own `examples`/`example`, or, for a ref, the component's. */
function schemaExamples(schema: Json | undefined, pointer: string): Example[] {
  if (!schema) return []
  const out: Example[] = []
  if (Array.isArray(schema.examples)) {
    schema.examples.forEach((value, i) => {
      out.push({ pointer: `${pointer}/examples/${i}`, value })
    })
  }
  if ('example' in schema) out.push({ pointer: `${pointer}/example`, value: schema.example })
  const ref = schema.$ref
  if (out.length === 0 && typeof ref === 'string' && ref.startsWith(componentPrefix)) {
    const name = ref.slice(componentPrefix.length)
    return schemaExamples(doc.components.schemas[name], `${componentPrefix}${name}`)
  }
  return out
}

/** The examples that illustrate a media type: on the media type itself, else on its schema. */
function mediaExamples(media: Media, pointer: string): Example[] {
  const out: Example[] = []
  if ('example' in media) out.push({ pointer: `${pointer}/example`, value: media.example })
  for (const [name, example] of Object.entries(media.examples ?? {})) {
    out.push({ pointer: `${pointer}/examples/${pointerToken(name)}/value`, value: example.value })
  }
  return out.length > 0 ? out : schemaExamples(media.schema, `${pointer}/schema`)
}

/** Problems with the examples of one media type: missing, or not valid against the schema. */
function checkExamples(media: Media, pointer: string): string[] {
  const examples = mediaExamples(media, pointer)
  if (examples.length === 0) return [`${pointer}: no example`]
  if (!media.schema) return [`${pointer}: no schema to check the example against`]
  const validate = validatorFor(media.schema)
  return examples.flatMap(({ pointer: at, value }) =>
    validate(value)
      ? []
      : [
          `${at} does not match ${pointer}/schema: ${ajv.errorsText(validate.errors, { dataVar: 'example' })}`,
        ],
  )
}

const declaredTags = new Set((doc.tags ?? []).map((t) => t.name))

describe('openapi/kiln.v1.yaml', () => {
  it('declares operations and tags', () => {
    expect(operations.length).toBeGreaterThan(20)
    expect(declaredTags.size).toBeGreaterThan(0)
  })

  it('every parameter says what it is for', () => {
    const undescribed = operations.flatMap(({ op }) =>
      (op.parameters ?? [])
        .filter((p) => !p.$ref && !p.description)
        .map((p) => `${op.operationId} ${p.in} ${p.name}`),
    )
    expect(undescribed).toEqual([])
  })

  it('every operationId is present and unique', () => {
    const seen = new Map<string, string>()
    const problems: string[] = []
    for (const { name, op } of operations) {
      if (!op.operationId) {
        problems.push(`${name}: no operationId`)
        continue
      }
      const other = seen.get(op.operationId)
      if (other) problems.push(`${name}: operationId ${op.operationId} is also used by ${other}`)
      seen.set(op.operationId, name)
    }
    expect(problems).toEqual([])
  })

  for (const { name, pointer, op } of operations) {
    describe(name, () => {
      const label = `${op.operationId ?? '(no operationId)'} ${pointer}`

      it('has a summary and declared tags', () => {
        const problems: string[] = []
        if (!op.summary?.trim()) problems.push(`${label}: no summary`)
        if (!op.tags?.length) problems.push(`${label}: no tag`)
        for (const tag of op.tags ?? []) {
          if (!declaredTags.has(tag))
            problems.push(`${label}: tag '${tag}' is not declared in the document's tags`)
        }
        expect(problems).toEqual([])
      })

      it('has a valid example of its request body', () => {
        const content = op.requestBody?.content
        if (!op.requestBody) return
        const problems = content
          ? Object.entries(content).flatMap(([type, media]) =>
              checkExamples(media, `${pointer}/requestBody/content/${pointerToken(type)}`).map(
                (p) => `${op.operationId}: ${p}`,
              ),
            )
          : [`${label}: requestBody without content`]
        expect(problems).toEqual([])
      })

      it('has a valid example of every 2xx response', () => {
        const problems: string[] = []
        for (const [status, response] of Object.entries(op.responses ?? {})) {
          if (!/^2\d\d$/.test(status)) continue
          for (const [type, media] of Object.entries(response.content ?? {})) {
            if (type === 'text/event-stream') continue
            const at = `${pointer}/responses/${status}/content/${pointerToken(type)}`
            problems.push(...checkExamples(media, at).map((p) => `${op.operationId}: ${p}`))
          }
        }
        expect(problems).toEqual([])
      })

      it('answers every 4xx and 5xx with application/problem+json (Problem)', () => {
        const problems: string[] = []
        for (const [status, declared] of Object.entries(op.responses ?? {})) {
          if (!/^([45]\d\d|default)$/.test(status)) continue
          const response = resolved(declared)
          const types = Object.keys(response.content ?? {})
          const schema = response.content?.['application/problem+json']?.schema
          if (types.length !== 1 || schema?.$ref !== problemRef) {
            problems.push(
              `${label}: ${status} is ${types.join(', ') || 'without content'}, schema ${JSON.stringify(schema)}; expected application/problem+json with ${problemRef}`,
            )
          }
        }
        expect(problems).toEqual([])
      })
    })
  }

  it('every operation declares the answers any route can give, from components/responses', () => {
    const problems: string[] = []
    const expectRef = (label: string, op: Operation, status: string, name: string) => {
      if (op.responses?.[status]?.$ref !== `#/components/responses/${name}`)
        problems.push(`${label}: ${status} is not #/components/responses/${name}`)
    }
    for (const { name, op } of operations) {
      const label = `${op.operationId} (${name})`
      expectRef(label, op, '503', 'ServiceUnavailable')
      expectRef(label, op, 'default', 'UnexpectedError')
      if (op['x-kiln-permission'] !== 'public') expectRef(label, op, '401', 'Unauthorized')
      if (!name.startsWith('GET ') && !name.startsWith('HEAD ')) {
        expectRef(label, op, '413', 'PayloadTooLarge')
        expectRef(label, op, '415', 'UnsupportedMediaType')
      }
      if (op.parameters?.some((p) => p.in === 'query' && p.name === 'cursor'))
        expect(op.responses?.['422'], `${label}: a foreign cursor is 422`).toBeDefined()
      if (name.startsWith('GET ') && op.responses?.['413']) problems.push(`${label}: 413 on a GET`)
    }
    expect(problems).toEqual([])
    expect(Object.keys(doc.components.responses ?? {})).toEqual(
      expect.arrayContaining(['Unauthorized', 'Forbidden', 'TooManyRequests', 'ServiceUnavailable']),
    )
  })

  it('declares the headers the server sends, from components/headers', () => {
    const problems: string[] = []
    const headerRef = (response: Response, header: string) =>
      resolved(response).headers?.[header]?.$ref === `#/components/headers/${header}`
    for (const { name, op } of operations) {
      const label = `${op.operationId} (${name})`
      const takes = (header: string) =>
        op.parameters?.some((p) => p.$ref === `#/components/parameters/${header}`) ?? false
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        if (!headerRef(response, 'X-Request-Id')) problems.push(`${label}: ${status} without X-Request-Id`)
        if (status === '202' && !headerRef(response, 'Location'))
          problems.push(`${label}: 202 without Location`)
        if (status === '200' && takes('IfMatch') && !headerRef(response, 'ETag'))
          problems.push(`${label}: 200 without ETag though it takes If-Match`)
        if (/^2/.test(status) && takes('IdempotencyKey') && !headerRef(response, 'Idempotent-Replayed'))
          problems.push(`${label}: ${status} without Idempotent-Replayed though it takes Idempotency-Key`)
      }
    }
    for (const name of ['ServiceUnavailable', 'TooManyRequests'])
      if (!headerRef({ $ref: `#/components/responses/${name}` }, 'Retry-After'))
        problems.push(`${name} without Retry-After`)
    for (const header of ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'])
      if (!headerRef({ $ref: '#/components/responses/TooManyRequests' }, header))
        problems.push(`TooManyRequests without ${header}`)
    expect(problems).toEqual([])
    expect(
      operations
        .filter(({ op }) => op.parameters?.some((p) => p.$ref?.endsWith('/IfMatch')))
        .map(({ op }) => op.operationId)
        .sort(),
    ).toEqual([
      'deleteCluster',
      'deleteNodeGroup',
      'setProjectQuota',
      'updateCluster',
      'updateKubernetesVersion',
      'updateNodeGroup',
      'updateTemplateVersion',
    ])
  })

  it('every component example is valid against its component', () => {
    const problems: string[] = []
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      const examples = schemaExamples(schema, `${componentPrefix}${name}`)
      if (examples.length === 0) continue
      const validate = validatorFor({ $ref: `${componentPrefix}${name}` })
      for (const { pointer, value } of examples) {
        if (!validate(value)) {
          problems.push(`${pointer}: ${ajv.errorsText(validate.errors, { dataVar: 'example' })}`)
        }
      }
    }
    expect(problems).toEqual([])
  })

  it('the checks catch an example that does not match its schema', () => {
    const media: Media = {
      schema: { $ref: `${componentPrefix}Cluster` },
      example: { id: 'not-a-uuid', name: 'ci-run-4711' },
    }
    const problems = checkExamples(media, '#/test')
    expect(problems).toHaveLength(1)
    expect(problems[0]).toMatch(/^#\/test\/example does not match #\/test\/schema: /)
    expect(problems[0]).toContain('must have required property')
    expect(checkExamples({ schema: { type: 'object' } }, '#/test')).toEqual(['#/test: no example'])
  })
})

describe('effective features in responses', () => {
  const schemaAt = (name: string) => doc.components.schemas[name] as Json
  const propertyOf = (schema: Json, ...path: string[]) =>
    path.reduce<Json>((s, key) => (s.properties as Record<string, Json>)[key] as Json, schema)

  it('are one named schema typed from the feature catalogue: every feature, every field required', () => {
    for (const [name, scopedOnly] of [
      ['EffectiveFeatures', false],
      ['EffectiveNodeGroupFeatures', true],
    ] as const) {
      const schema = schemaAt(name)
      const expected = featureNames.filter((f) => !scopedOnly || featureDefinition(f).nodeGroupScoped)
      expect(Object.keys(schema.properties as Json), name).toEqual(expected)
      expect(schema.required, name).toEqual(expected)
      for (const feature of expected) {
        const value = propertyOf(schema, feature)
        expect(value.required, `${name}.${feature}`).toEqual(
          Object.keys(featureDefinition(feature).schema.properties),
        )
      }
    }
  })

  it('are referenced wherever a response carries them', () => {
    const ref = (name: string) => ({ $ref: `${componentPrefix}${name}` })
    expect(propertyOf(schemaAt('Cluster'), 'spec', 'features')).toEqual(ref('EffectiveFeatures'))
    expect(propertyOf(schemaAt('ClusterPlan'), 'spec', 'features')).toEqual(ref('EffectiveFeatures'))
    expect(propertyOf(schemaAt('NodeGroup'), 'features')).toEqual(ref('EffectiveNodeGroupFeatures'))
    expect(propertyOf(schemaAt('NodeGroupPlan'), 'features')).toEqual(ref('EffectiveNodeGroupFeatures'))
    // A template stores only the values it sets; the rest inherit, so its features are overrides.
    expect(propertyOf(schemaAt('ClusterTemplate'), 'features')).toEqual(ref('FeatureOverrides'))
  })
})

describe('lists', () => {
  const listOperations = operations.filter(({ op }) => op.operationId?.startsWith('list'))

  it('are the operations named list…', () => {
    expect(listOperations.length).toBeGreaterThanOrEqual(14)
  })

  for (const { name, op } of listOperations) {
    it(`${name} answers a named list envelope and takes ?limit= and ?cursor=`, () => {
      const schema = op.responses?.['200']?.content?.['application/json']?.schema
      const ref = schema?.$ref
      expect(ref, `${name}: 200 is not a named schema`).toMatch(/^#\/components\/schemas\/\w+List$/)
      const list = doc.components.schemas[(ref as string).slice(componentPrefix.length)] as Json
      expect(list.description, `${ref} has no description`).toEqual(expect.any(String))
      expect(Object.keys(list.properties as Json)).toEqual(['items', 'nextCursor'])
      expect(list.required).toEqual(['items', 'nextCursor'])
      const parameters = (op as { parameters?: { in: string; name: string }[] }).parameters ?? []
      const query = parameters.filter((p) => p.in === 'query').map((p) => p.name)
      expect(query, name).toEqual(expect.arrayContaining(['limit', 'cursor']))
    })
  }
})
