import type { Backend } from '@kiln/db'
import { createDriver, type Driver } from '@kiln/drivers'
import { instrumentDriver, type WorkerMetrics } from './metrics.ts'
import { tracedDriver } from './operation-telemetry.ts'

interface Entry {
  driver: Driver
  /** What the driver was built from; anything else on the row (capabilities, updatedAt) is not its concern. */
  configuration: string
  /** When the row it was built from was written. */
  builtFrom: number
  /** Calls using the driver right now. */
  borrowers: number
  retired: boolean
}

/**
 * One driver per backend, reused by every step, health check and catalogue sync. It is rebuilt only
 * when the backend's configuration changes (a platform admin replaced it through PATCH /v1/backends/…):
 * the catalogue sync rewrites the row's capabilities every interval, and a driver per write leaked a
 * connection pool each time. A replaced driver may still serve a running step, so it is closed when
 * its last borrower gives it back.
 */
export class DriverCache {
  private readonly current = new Map<string, Entry>()
  private readonly closing = new Set<Promise<void>>()
  constructor(
    private readonly databaseUrl: string,
    private readonly metrics?: WorkerMetrics,
  ) {}

  /** Runs `work` with the backend's driver, which stays open at least until `work` settles. */
  async use<T>(backend: Backend, work: (driver: Driver) => Promise<T>): Promise<T> {
    const entry = this.entryFor(backend)
    entry.borrowers++
    try {
      return await work(entry.driver)
    } finally {
      entry.borrowers--
      if (entry.retired && entry.borrowers === 0) this.close(entry)
    }
  }

  private entryFor(backend: Backend): Entry {
    const configuration = JSON.stringify([backend.kind, backend.name, backend.config])
    const cached = this.current.get(backend.id)
    if (cached?.configuration === configuration) return cached
    // A step's row is read when its operation starts; an older row than the driver's own is no order
    // to go back to the configuration it replaced.
    if (cached && backend.updatedAt.getTime() < cached.builtFrom) return cached
    if (cached) {
      cached.retired = true
      if (cached.borrowers === 0) this.close(cached)
    }
    const entry: Entry = {
      driver: instrumentDriver(
        this.metrics,
        backend.name,
        tracedDriver(createDriver(backend, { databaseUrl: this.databaseUrl }), backend),
      ),
      configuration,
      builtFrom: backend.updatedAt.getTime(),
      borrowers: 0,
      retired: false,
    }
    this.current.set(backend.id, entry)
    return entry
  }

  private close(entry: Entry) {
    // A driver that fails to close has nothing left this process could free; closeAll still waits for it.
    const closing = entry.driver.close().catch(() => {})
    this.closing.add(closing)
    void closing.finally(() => this.closing.delete(closing))
  }

  /**
   * Forgets the drivers of backends that no longer exist (a platform admin deleted them): each is
   * closed once no step uses it, so a deleted backend keeps no connection pool open.
   */
  retainOnly(backendIds: Iterable<string>) {
    const keep = new Set(backendIds)
    for (const [id, entry] of this.current) {
      if (keep.has(id)) continue
      this.current.delete(id)
      entry.retired = true
      if (entry.borrowers === 0) this.close(entry)
    }
  }

  /** At shutdown, after the last step: closes every driver, in use or not. */
  async closeAll() {
    for (const entry of this.current.values()) this.close(entry)
    this.current.clear()
    await Promise.allSettled([...this.closing])
  }
}
