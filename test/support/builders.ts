import type { Database } from '../../packages/db/src/index.ts'

// Builders write the catalogue rows a test needs; every value can be overridden.

export async function aBackend(
  db: Database,
  over: { name?: string; kind?: 'simulator' | 'ironic' | 'capi'; zones?: string[] } = {},
) {
  return db.backend.create({
    data: {
      name: over.name ?? 'sim',
      kind: over.kind ?? 'simulator',
      capabilities: { zones: over.zones ?? ['zone-a', 'zone-b'] },
    },
  })
}

export async function aMachineClass(
  db: Database,
  backendId: string,
  over: Partial<{
    name: string
    cpu: number
    memoryMiB: number
    gpuModel: string | null
    gpuCount: number
    zones: string[]
  }> = {},
) {
  return db.machineClass.create({
    data: {
      name: over.name ?? 'm1.large',
      backendId,
      cpu: over.cpu ?? 4,
      memoryMiB: over.memoryMiB ?? 16384,
      gpuModel: over.gpuModel ?? null,
      gpuCount: over.gpuCount ?? 0,
      zones: over.zones ?? ['zone-a', 'zone-b'],
    },
  })
}

export async function aKubernetesVersion(
  db: Database,
  version = '1.31.4',
  lifecycle: 'supported' | 'deprecated' | 'expired' = 'supported',
) {
  return db.kubernetesVersion.create({ data: { version, lifecycle } })
}

export async function aProject(db: Database, name = 'team-a') {
  return db.project.create({ data: { name, displayName: name } })
}

export interface TemplateOverrides {
  name?: string
  version?: number
  kubernetesVersion?: string
  projectId?: string | null
  controlPlane?: { count: number; machineClass: string }
  nodeGroups?: unknown[]
  features?: Record<string, unknown>
  lockedFeatures?: string[]
  deprecated?: boolean
}

export async function aTemplate(db: Database, backendId: string, over: TemplateOverrides = {}) {
  return db.clusterTemplate.create({
    data: {
      name: over.name ?? 'k8s-1.31',
      version: over.version ?? 1,
      projectId: over.projectId ?? null,
      kubernetesVersion: over.kubernetesVersion ?? '1.31.4',
      backendId,
      controlPlane: over.controlPlane ?? { count: 1, machineClass: 'm1.large' },
      nodeGroups: (over.nodeGroups ?? [
        { name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 10 },
      ]) as object[],
      features: (over.features ?? {}) as object,
      lockedFeatures: over.lockedFeatures ?? [],
      deprecated: over.deprecated ?? false,
    },
  })
}

/**
 * A small simulated data centre: backend `sim`, CPU class `m1.large`, GPU class `gpu.a100x4`,
 * Kubernetes 1.31.4 (supported) and 1.29.12 (expired), template `k8s-1.31`, project `team-a`.
 */
export async function aDataCentre(db: Database) {
  const backend = await aBackend(db)
  await aMachineClass(db, backend.id)
  await aMachineClass(db, backend.id, {
    name: 'gpu.a100x4',
    cpu: 32,
    memoryMiB: 262144,
    gpuModel: 'nvidia-a100',
    gpuCount: 4,
    zones: ['zone-a'],
  })
  await aKubernetesVersion(db, '1.31.4')
  await aKubernetesVersion(db, '1.29.12', 'expired')
  const template = await aTemplate(db, backend.id)
  const project = await aProject(db)
  return { backend, template, project }
}
