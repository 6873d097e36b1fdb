import type { Backend } from '@kiln/db'
import type { Driver } from '@kiln/drivers'
import { describe, expect, it, vi } from 'vitest'
import { testIronicConfig } from '../../../test/support/ironic.ts'
import { DriverCache } from '../src/driver-cache.ts'

// A backend's driver is built once and rebuilt only when its configuration changes (PATCH
// /v1/backends/… replaced it); the one it replaces is closed as soon as no step uses it any more.

const backend = (updatedAt: string, url = 'https://ironic-a.test:6385', zones = ['zone-a']): Backend => ({
  id: '6f1c2b3a-4d5e-4f60-8a9b-0c1d2e3f4a5b',
  name: 'metal',
  kind: 'ironic',
  config: testIronicConfig({ url }),
  capabilities: { zones },
  createdAt: new Date('2026-11-01T00:00:00Z'),
  updatedAt: new Date(updatedAt),
})

const driverOf = (cache: DriverCache, row: Backend) => cache.use(row, async (driver) => driver)

describe('DriverCache', () => {
  it('keeps the driver when only the capabilities and updatedAt of the row moved', async () => {
    const cache = new DriverCache('postgresql://unused')
    const first = await driverOf(cache, backend('2026-11-22T08:00:00Z'))
    const close = vi.spyOn(first, 'close')
    for (let minute = 1; minute <= 5; minute++) {
      const synced = backend(`2026-11-22T08:0${minute}:00Z`, undefined, ['zone-a', `zone-${minute}`])
      expect(await driverOf(cache, synced)).toBe(first)
    }
    expect(close).not.toHaveBeenCalled()
    await cache.closeAll()
    expect(close).toHaveBeenCalledOnce()
  })

  it('builds a new driver when the configuration changes and closes the old one once it is unused', async () => {
    const cache = new DriverCache('postgresql://unused')
    const first = await driverOf(cache, backend('2026-11-22T08:00:00Z'))
    const closeFirst = vi.spyOn(first, 'close')
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    // A running step holds the first driver while the admin replaces the backend's configuration.
    const step = cache.use(backend('2026-11-22T08:00:00Z'), async (driver) => {
      await held
      return driver
    })

    const second = await driverOf(cache, backend('2026-11-22T09:00:00Z', 'https://ironic-b.test:6385'))
    expect(second).not.toBe(first)
    expect(closeFirst).not.toHaveBeenCalled()
    // A step that read the row before the change gets the new driver, not the replaced configuration.
    expect(await driverOf(cache, backend('2026-11-22T08:00:00Z'))).toBe(second)

    release()
    expect(await step).toBe(first)
    expect(closeFirst).toHaveBeenCalledOnce()

    const closeSecond = vi.spyOn(second, 'close')
    await cache.closeAll()
    expect(closeSecond).toHaveBeenCalledOnce()
    expect(closeFirst).toHaveBeenCalledOnce()
  })

  it('closes a replaced driver at once when no step holds it', async () => {
    const cache = new DriverCache('postgresql://unused')
    const first: Driver = await driverOf(cache, backend('2026-11-22T08:00:00Z'))
    const close = vi.spyOn(first, 'close')
    await driverOf(cache, backend('2026-11-22T09:00:00Z', 'https://ironic-b.test:6385'))
    expect(close).toHaveBeenCalledOnce()
    await cache.closeAll()
    expect(close).toHaveBeenCalledOnce()
  })

  it('closes the driver of a deleted backend, after the step that still uses it', async () => {
    const cache = new DriverCache('postgresql://unused')
    const row = backend('2026-11-22T08:00:00Z')
    const other = {
      ...backend('2026-11-22T08:00:00Z', 'https://ironic-c.test:6385'),
      id: 'b7c1d2e3-0000-4000-8000-000000000001',
    }
    const kept = await driverOf(cache, other)
    const closeKept = vi.spyOn(kept, 'close')
    let release!: () => void
    const held = new Promise<void>((resolve) => {
      release = resolve
    })
    const step = cache.use(row, async (driver) => {
      await held
      return driver
    })
    const gone = await driverOf(cache, row)
    const closeGone = vi.spyOn(gone, 'close')

    cache.retainOnly([other.id])
    expect(closeGone).not.toHaveBeenCalled()
    release()
    expect(await step).toBe(gone)
    expect(closeGone).toHaveBeenCalledOnce()
    expect(closeKept).not.toHaveBeenCalled()
    expect(await driverOf(cache, other)).toBe(kept)

    cache.retainOnly([])
    expect(closeKept).toHaveBeenCalledOnce()
    await cache.closeAll()
    expect(closeGone).toHaveBeenCalledOnce()
  })
})
