import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DriverError, IronicApiError, IronicClient } from '../packages/drivers/src/index.ts'
import { type FaultProxy, startFaultProxy } from './support/fault-proxy.ts'
import { ironicUrl } from './support/ironic.ts'

// The fault proxy in front of the real test Ironic, driven through Kiln's own IronicClient.

let proxy: FaultProxy
const direct = new IronicClient({ url: ironicUrl })
const clients: IronicClient[] = []
const viaProxy = (requestTimeoutMs?: number) => {
  const client = new IronicClient({ url: proxy.url, ...(requestTimeoutMs ? { requestTimeoutMs } : {}) })
  clients.push(client)
  return client
}

beforeAll(async () => {
  proxy = await startFaultProxy({ target: ironicUrl })
})
afterAll(async () => {
  for (const client of [direct, ...clients]) client.close()
  await proxy?.close()
})

const failure = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  )

describe('fault proxy', () => {
  it('passes requests through: the answers equal direct ones, errors included', async () => {
    proxy.reset()
    const client = viaProxy()
    expect(await client.request('GET', 'v1')).toEqual(await direct.request('GET', 'v1'))
    expect(await client.request('GET', 'v1/drivers')).toEqual(await direct.request('GET', 'v1/drivers'))
    const viaError = await failure(client.request('GET', 'v1/allocations/no-such-allocation'))
    const directError = await failure(direct.request('GET', 'v1/allocations/no-such-allocation'))
    expect(viaError).toBeInstanceOf(IronicApiError)
    expect((viaError as IronicApiError).status).toBe(404)
    expect((viaError as IronicApiError).fault).toBe((directError as IronicApiError).fault)
    expect(proxy.seen.get('GET /v1')).toBe(1)
    expect(proxy.seenCount(/^GET \/v1\/allocations\//)).toBe(1)
    expect(proxy.faultedCount()).toBe(0)
  })

  it('fails the next n matching requests with 503 in Ironic error shape, and only those', async () => {
    proxy.reset()
    const client = viaProxy()
    proxy.failNext(2, { match: /^GET \/v1\/allocations\//, retryAfterSeconds: 7 })
    // Not matching: answered by Ironic, not counted against the two.
    await client.request('GET', 'v1')
    const outcomes = []
    for (let i = 0; i < 3; i++)
      outcomes.push(await failure(client.request('GET', `v1/allocations/nope-${i}`)))
    expect(outcomes.map((e) => (e as IronicApiError).status)).toEqual([503, 503, 404])
    expect((outcomes[0] as IronicApiError).fault).toBe('Injected fault: 503 for GET /v1/allocations/nope-0')
    expect(proxy.faultedCount()).toBe(2)
    expect(proxy.faulted.get('GET /v1/allocations/nope-2')).toBeUndefined()
    expect(proxy.seenCount(/^GET \/v1\/allocations\//)).toBe(3)
    expect(proxy.seenCount()).toBe(4)

    proxy.failNext(1, { status: 500, match: (method) => method === 'DELETE', retryAfterSeconds: 7 })
    const raw = await fetch(`${proxy.url}/v1/allocations/x`, { method: 'DELETE' })
    expect(raw.status).toBe(500)
    expect(raw.headers.get('retry-after')).toBe('7')
    const body = (await raw.json()) as { error_message: string }
    expect(JSON.parse(body.error_message)).toMatchObject({ faultcode: 'Server' })
  })

  it('refused connections make IronicClient raise ERR_UNAVAILABLE, and the same URL works again after', async () => {
    proxy.reset()
    const client = viaProxy()
    await client.request('GET', 'v1') // a kept-alive connection the outage must break too
    await proxy.refuse(true)
    for (let i = 0; i < 2; i++) {
      const error = await failure(client.request('GET', 'v1'))
      expect(error).toBeInstanceOf(DriverError)
      expect((error as DriverError).code).toBe('ERR_UNAVAILABLE')
      expect((error as DriverError).message).toMatch(/unreachable \((ECONNREFUSED|ECONNRESET)\)/)
    }
    expect(((await failure(viaProxy().request('GET', 'v1'))) as DriverError).message).toContain(
      'ECONNREFUSED',
    )
    await proxy.refuse(false)
    expect(await client.request('GET', 'v1')).toEqual(await direct.request('GET', 'v1'))
  })

  it('delays matching requests, and only those', async () => {
    proxy.reset()
    const client = viaProxy()
    proxy.delay(400, /^GET \/v1\/drivers$/)
    const started = performance.now()
    await client.request('GET', 'v1/drivers')
    expect(performance.now() - started).toBeGreaterThanOrEqual(400)
    // A request that is not delayed overtakes a delayed one sent first.
    const order: string[] = []
    await Promise.all([
      client.request('GET', 'v1/drivers').then(() => order.push('delayed')),
      client.request('GET', 'v1').then(() => order.push('prompt')),
    ])
    expect(order).toEqual(['prompt', 'delayed'])
    proxy.delay(0)
  })

  it('a blackhole accepts and never answers: the client times out as unavailable', async () => {
    proxy.reset()
    proxy.blackhole(true)
    const error = await failure(viaProxy(300).request('GET', 'v1'))
    expect((error as DriverError).code).toBe('ERR_UNAVAILABLE')
    expect((error as DriverError).message).toContain('no answer within 300 ms')
    proxy.blackhole(false)
    expect(await viaProxy().request('GET', 'v1')).toEqual(await direct.request('GET', 'v1'))
  })
})
