import type { LightMyRequestResponse } from 'fastify'
import { expect } from 'vitest'
import type { KilnApp } from '../src/app.ts'

// Small HTTP helpers shared by the API integration tests. Everything goes through `app.inject()`.

export interface ProblemBody {
  type: string
  title: string
  status: number
  detail: string
  instance: string
  requestId: string
  errors?: { pointer: string; in: 'body' | 'query' | 'path' | 'header'; message: string }[]
  [extension: string]: unknown
}

/** Asserts an RFC 9457 problem response with the given status, and returns its body. */
export function expectProblem(res: LightMyRequestResponse, status: number): ProblemBody {
  expect(res.statusCode, `expected ${status}, got ${res.statusCode}: ${res.body.slice(0, 500)}`).toBe(status)
  expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
  const body = res.json() as ProblemBody
  expect(body.type).toMatch(/^https:\/\/kiln\.dev\/problems\//)
  expect(typeof body.title).toBe('string')
  expect(body.title.length).toBeGreaterThan(0)
  expect(body.status).toBe(status)
  expect(typeof body.detail).toBe('string')
  expect(typeof body.instance).toBe('string')
  return body
}

/** The pointers of a problem's `errors`, optionally only those in one part of the request. */
export const pointersOf = (problem: ProblemBody, part?: 'body' | 'query' | 'path' | 'header') =>
  (problem.errors ?? []).filter((e) => part === undefined || e.in === part).map((e) => e.pointer)

export interface OperationBody {
  id: string
  kind: string
  status: string
  progress: number
  steps: { name: string; status: string; startedAt: string | null; finishedAt: string | null }[]
  error: unknown
  project: string
  resource: { kind: string; id: string; name: string }
  cancelRequested: boolean
}

export async function createCluster(
  app: KilnApp,
  project: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
) {
  return app.inject({ method: 'POST', url: `/v1/projects/${project}/clusters`, payload: body, headers })
}

/** Creates a cluster from the default template and returns its create operation (asserting 202). */
export async function createClusterOk(
  app: KilnApp,
  project: string,
  name: string,
  extra: Record<string, unknown> = {},
): Promise<OperationBody> {
  const res = await createCluster(app, project, { name, template: 'k8s-1.31', ...extra })
  expect(res.statusCode, res.body).toBe(202)
  return res.json() as OperationBody
}

export async function cancelOperation(app: KilnApp, id: string) {
  return app.inject({ method: 'POST', url: `/v1/operations/${id}/cancel` })
}

/** Cancels a pending operation so its cluster is idle again (asserting 200 and `cancelled`). */
export async function cancelOk(app: KilnApp, id: string): Promise<OperationBody> {
  const res = await cancelOperation(app, id)
  expect(res.statusCode, res.body).toBe(200)
  const op = res.json() as OperationBody
  expect(op.status).toBe('cancelled')
  return op
}

/** A cluster that exists and has no active operation (its create operation was cancelled). */
export async function anIdleCluster(
  app: KilnApp,
  project: string,
  name: string,
  extra: Record<string, unknown> = {},
) {
  const create = await createClusterOk(app, project, name, extra)
  await cancelOk(app, create.id)
  return create
}

export async function getJson<T = Record<string, unknown>>(app: KilnApp, url: string): Promise<T> {
  const res = await app.inject({ method: 'GET', url })
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as T
}
