import type { Database } from '@kiln/db'
import type { Driver } from '@kiln/drivers'
import type { DriverCache } from './driver-cache.ts'

// Machine classes of backends that discover them (Ironic's hardware, a Cluster API ClusterClass's
// machine templates) are the backend's to say: the worker copies what `capabilities()` reports into
// the catalogue, so `GET /v1/machine-classes`, templates and quotas treat them like any other class.
// Seeded backends (the simulator) keep theirs.
const discoveringKinds = ['ironic', 'capi'] as const

const describedAs: Record<(typeof discoveringKinds)[number], (backend: string) => string> = {
  ironic: (backend) => `Bare metal from Ironic backend ${backend}.`,
  capi: (backend) => `Cloud machines through Cluster API backend ${backend}.`,
}

export interface CatalogueSync {
  backend: string
  /** Classes written (created or updated). */
  synced: string[]
  /** Classes another backend already names; left alone, named so someone renames one. */
  conflicts: string[]
  /** Why the backend could not be read this time; its classes stay as they were. */
  error?: string
}

export async function syncMachineClasses(db: Database, drivers: DriverCache): Promise<CatalogueSync[]> {
  const backends = await db.backend.findMany({ where: { kind: { in: [...discoveringKinds] } } })
  const results: CatalogueSync[] = []
  for (const backend of backends) {
    const result: CatalogueSync = { backend: backend.name, synced: [], conflicts: [] }
    let caps: Awaited<ReturnType<Driver['capabilities']>>
    try {
      caps = await drivers.use(backend, (driver) => driver.capabilities())
    } catch (error) {
      // One Ironic that is down (or misconfigured) must not keep the others' classes from syncing.
      result.error = error instanceof Error ? error.message : String(error)
      results.push(result)
      continue
    }
    for (const mc of caps.machineClasses) {
      const existing = await db.machineClass.findUnique({ where: { name: mc.name } })
      if (existing && existing.backendId !== backend.id) {
        result.conflicts.push(mc.name)
        continue
      }
      const data = {
        cpu: mc.cpu,
        memoryMiB: mc.memoryMiB,
        gpuModel: mc.gpuModel,
        gpuCount: mc.gpuCount,
        zones: Object.keys(mc.available).sort(),
      }
      await db.machineClass.upsert({
        where: { name: mc.name },
        update: data,
        create: {
          ...data,
          name: mc.name,
          backendId: backend.id,
          description: describedAs[backend.kind as (typeof discoveringKinds)[number]](backend.name),
        },
      })
      result.synced.push(mc.name)
    }
    await db.backend.update({
      where: { id: backend.id },
      data: { capabilities: { ...(backend.capabilities as object), zones: caps.zones } },
    })
    results.push(result)
  }
  return results
}
