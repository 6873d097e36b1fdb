import type { AddressInfo } from 'node:net'
import { featureNames } from '@kiln/domain'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createKilnClient, type KilnClient } from '../../../packages/client/src/index.ts'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aDataCentre } from '../../../test/support/builders.ts'

// The generated client (openapi-fetch over openapi/kiln.v1.yaml) against the real server on a real port.

let api: TestApi
let client: KilnClient

beforeAll(async () => {
  api = await startTestApi()
  await aDataCentre(api.db)
  await api.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = api.app.server.address() as AddressInfo
  client = createKilnClient({ baseUrl: `http://127.0.0.1:${port}` })
})

afterAll(async () => {
  await api?.close()
})

const project = 'team-a'

describe('the generated client', () => {
  let operationId: string
  let clusterId: string

  it('creates a cluster (202 with the operation and a Location)', async () => {
    const { data, error, response } = await client.POST('/v1/projects/{project}/clusters', {
      params: { path: { project }, header: { 'idempotency-key': 'client-create-1' } },
      body: {
        name: 'from-client',
        template: 'k8s-1.31',
        labels: { via: 'client' },
        features: { ingress: { controller: 'nginx' } },
        nodeGroups: [{ name: 'workers', count: 2 }],
      },
    })
    expect(error).toBeUndefined()
    expect(response.status).toBe(202)
    expect(data).toBeDefined()
    const op = data as NonNullable<typeof data> & { kind: string; id: string }
    expect(op.kind).toBe('cluster.create')
    expect(response.headers.get('location')).toBe(`/v1/operations/${op.id}`)
    operationId = op.id
    clusterId = (op as { resource: { id: string } }).resource.id
  })

  it('gets the cluster, with its ETag', async () => {
    const { data, error, response } = await client.GET('/v1/projects/{project}/clusters/{cluster}', {
      params: { path: { project, cluster: 'from-client' } },
    })
    expect(error).toBeUndefined()
    expect(response.headers.get('etag')).toMatch(/^"\d+"$/)
    expect(data?.id).toBe(clusterId)
    expect(data?.labels).toEqual({ via: 'client' })
    // Typed effective features: read without a cast, and every feature arrives whole.
    expect(data?.spec.features.ingress.controller).toBe('nginx')
    expect(Object.keys(data?.spec.features ?? {})).toEqual(featureNames)
    expect(data?.spec.features.monitoring).toEqual({ enabled: false, retentionDays: 15 })
    expect(data?.spec.nodeGroups[0]?.features.gpu).toEqual({ enabled: false, mode: 'device-plugin' })
    expect(Object.keys(data?.spec.nodeGroups[0]?.features ?? {})).toEqual(['gpu', 'autoscaler'])
    expect(data?.spec.nodeGroups.map((ng) => [ng.name, ng.count])).toEqual([['workers', 2]])
    expect(data?.activeOperationId).toBe(operationId)
  })

  it('lists clusters with query parameters (repeatable label filter)', async () => {
    const { data, error } = await client.GET('/v1/projects/{project}/clusters', {
      params: { path: { project }, query: { limit: 10, label: ['via=client'], phase: 'Pending' } },
    })
    expect(error).toBeUndefined()
    expect(data?.items.map((c) => c.name)).toEqual(['from-client'])
    expect(data?.nextCursor).toBeNull()
  })

  it('gets the operation, waiting briefly', async () => {
    const { data, error } = await client.GET('/v1/operations/{operation}', {
      params: { path: { operation: operationId }, query: { wait: '100ms' } },
    })
    expect(error).toBeUndefined()
    expect(data?.id).toBe(operationId)
    expect(data?.status).toBe('pending')
    expect(data?.steps[0]?.name).toBe('reserve-capacity')
  })

  it('reads a 422 problem through `error`', async () => {
    const { data, error, response } = await client.POST('/v1/projects/{project}/clusters', {
      params: { path: { project } },
      body: { name: 'gpu-less', template: 'k8s-1.31', features: { gpu: { enabled: true } } },
    })
    expect(data).toBeUndefined()
    expect(response.status).toBe(422)
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/)
    expect(error).toMatchObject({
      type: 'https://kiln.dev/problems/invalid-spec',
      status: 422,
      errors: [expect.objectContaining({ pointer: '/features/gpu/enabled', in: 'body' })],
    })
  })

  it('reads a 409 naming the busy operation, and cancels it', async () => {
    const { error, response } = await client.PATCH('/v1/projects/{project}/clusters/{cluster}', {
      params: { path: { project, cluster: 'from-client' } },
      body: { features: { monitoring: { enabled: true } } },
    })
    expect(response.status).toBe(409)
    expect(error?.operationId).toBe(operationId)

    const cancelled = await client.POST('/v1/operations/{operation}/cancel', {
      params: { path: { operation: operationId } },
    })
    expect(cancelled.response.status).toBe(200)
    expect(cancelled.data?.status).toBe('cancelled')
  })
})
