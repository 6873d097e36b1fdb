import type { Backend } from '@kiln/db'
import { describe, expect, it, vi } from 'vitest'
import { testIronicConfig } from '../../../test/support/ironic.ts'
import { DriverCache } from '../src/operations.ts'

// A backend's driver is built once and rebuilt when its row changes (PATCH /v1/backends/… replaced the
// config); the old one may still serve a running step, so it is closed only with the rest.

const backend = (updatedAt: Date, url = 'https://ironic-a.test:6385'): Backend => ({
  id: '6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b',
  name: 'metal',
  kind: 'ironic',
  config: testIronicConfig({ url }),
  capabilities: {},
  createdAt: new Date('2026-11-01T00:00:00Z'),
  updatedAt,
})

describe('DriverCache', () => {
  it('keeps one driver per backend until the backend changes, then builds a new one; closes all at the end', async () => {
    const cache = new DriverCache('postgresql://unused')
    const first = cache.get(backend(new Date('2026-11-22T08:00:00Z')))
    expect(cache.get(backend(new Date('2026-11-22T08:00:00Z')))).toBe(first)

    const second = cache.get(backend(new Date('2026-11-22T09:00:00Z'), 'https://ironic-b.test:6385'))
    expect(second).not.toBe(first)
    expect(cache.get(backend(new Date('2026-11-22T09:00:00Z')))).toBe(second)

    const closed = [vi.spyOn(first, 'close'), vi.spyOn(second, 'close')]
    await cache.closeAll()
    for (const close of closed) expect(close).toHaveBeenCalledOnce()
  })
})
