import type { ValidateFunction } from 'ajv'
import Ajv2020 from 'ajv/dist/2020.js'
import addFormats from 'ajv-formats'
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify'

/*
 * The response recorder: every answer a test gets through `app.inject()` is checked against the
 * OpenAPI document the app generates (the one committed as openapi/kiln.v1.yaml): its status must be
 * declared for its operation (`default` does not count: it only stands for the unexpected), its
 * content type must be one declared for that status, and a JSON body must match the declared schema.
 */

type Json = Record<string, unknown>
interface Media {
  schema?: Json
}
interface Response {
  $ref?: string
  content?: Record<string, Media>
}
interface Document {
  paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, Response> }>>
  components: Json & { responses?: Record<string, Response> }
}

export interface Answer {
  method: string
  url: string
  statusCode: number
  contentType: string | undefined
  body: string
}

const documentId = 'https://kiln.dev/openapi/recorded.json'
const methods = ['get', 'put', 'post', 'patch', 'delete']

/** A copy with every local `#/…` ref made absolute under `base`, so Ajv resolves it in the document added there. */
export function absoluteRefs<T>(value: T, base = documentId): T {
  if (Array.isArray(value)) return value.map((v) => absoluteRefs(v, base)) as T
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [
        k,
        k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `${base}${v}` : absoluteRefs(v, base),
      ]),
    ) as T
  }
  return value
}

interface Route {
  path: string
  pattern: RegExp
  /** Static segments win over parameters, as in Fastify's router. */
  staticSegments: number
}

/** Checks answers against one OpenAPI document. */
export class AnswerChecker {
  private readonly ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }))
  private readonly validators = new Map<string, ValidateFunction>()
  private readonly routes: Route[]

  constructor(private readonly doc: Document) {
    this.ajv.addSchema({ $id: documentId, components: absoluteRefs(doc.components) })
    this.routes = Object.keys(doc.paths)
      .map((path) => ({
        path,
        pattern: new RegExp(
          `^${path
            .split('/')
            .map((s) => (/^\{.+\}$/.test(s) ? '[^/]+' : s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
            .join('/')}/?$`,
        ),
        staticSegments: path.split('/').filter((s) => s && !s.startsWith('{')).length,
      }))
      .sort((a, b) => b.staticSegments - a.staticSegments)
  }

  /** What is wrong with an answer, or nothing (also for requests no documented operation serves). */
  check(answer: Answer): string | undefined {
    const method = answer.method.toLowerCase()
    if (!methods.includes(method)) return undefined
    const pathname = answer.url.split('?')[0]!
    const route = this.routes.find((r) => r.pattern.test(pathname) && this.doc.paths[r.path]![method])
    if (!route) return undefined
    const operation = this.doc.paths[route.path]![method]!
    const at = `${answer.method} ${answer.url} → ${answer.statusCode} (${operation.operationId})`
    const declared = operation.responses?.[String(answer.statusCode)]
    if (!declared) return `${at}: status ${answer.statusCode} is not declared for ${route.path}`
    const response = this.resolve(declared)
    const declaredTypes = Object.keys(response.content ?? {})
    const mediaType = answer.contentType?.split(';')[0]?.trim().toLowerCase()
    if (declaredTypes.length === 0) {
      return answer.body.length === 0 ? undefined : `${at}: a body (${mediaType}) where none is declared`
    }
    if (!mediaType || !declaredTypes.includes(mediaType)) {
      return `${at}: content type ${mediaType ?? '(none)'} is not one of ${declaredTypes.join(', ')}`
    }
    if (!/^application\/([a-z.+-]+\+)?json$/.test(mediaType)) return undefined
    const schema = response.content?.[mediaType]?.schema
    if (!schema) return undefined
    let body: unknown
    try {
      body = JSON.parse(answer.body)
    } catch {
      return `${at}: the body is not JSON: ${answer.body.slice(0, 200)}`
    }
    const key = `${route.path} ${method} ${answer.statusCode} ${mediaType}`
    let validate = this.validators.get(key)
    if (!validate) {
      validate = this.ajv.compile(absoluteRefs(schema))
      this.validators.set(key, validate)
    }
    if (validate(body)) return undefined
    return `${at}: the body does not match the declared schema: ${this.ajv.errorsText(validate.errors, { dataVar: 'body' })}`
  }

  private resolve(response: Response): Response {
    const name = response.$ref?.replace('#/components/responses/', '')
    return name ? (this.doc.components.responses?.[name] ?? {}) : response
  }
}

export interface Recorder {
  /** Every mismatch seen so far, one line each (method, url, status, what is wrong). */
  readonly violations: string[]
  /** Throws, naming every mismatch, when there were any. */
  assertClean(): void
}

/**
 * Records every answer the app gives to `inject()` and checks it against the app's own document.
 * Call `assertClean()` when the test file is done (startTestApi's `close()` does).
 */
export function recordAnswers(app: FastifyInstance): Recorder {
  const checker = new AnswerChecker(app.swagger() as unknown as Document)
  const violations: string[] = []
  const inject = app.inject.bind(app) as (options: InjectOptions | string) => Promise<LightMyRequestResponse>
  const recorded = async (options: InjectOptions | string) => {
    const res = await inject(options)
    const request = typeof options === 'string' ? { method: 'GET', url: options } : options
    const url = typeof request.url === 'string' ? request.url : (request.path as string | undefined)
    const violation = checker.check({
      method: request.method ?? 'GET',
      url: url ?? '/',
      statusCode: res.statusCode,
      contentType: res.headers['content-type'] as string | undefined,
      body: res.body,
    })
    if (violation) violations.push(violation)
    return res
  }
  ;(app as unknown as { inject: typeof recorded }).inject = recorded
  return {
    violations,
    assertClean() {
      if (violations.length > 0) {
        throw new Error(
          `${violations.length} answer(s) do not keep the OpenAPI document:\n${[...new Set(violations)].join('\n')}`,
        )
      }
    },
  }
}
