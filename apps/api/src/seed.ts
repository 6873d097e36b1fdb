import type { Database } from '@kiln/db'
import type { SimulatorConfig } from '@kiln/drivers'

/** The embedded default: one simulated data centre, its machine classes, versions and public templates. */
export const demoCatalogue = {
  backend: { name: 'sim', kind: 'simulator' as const, zones: ['zone-a', 'zone-b', 'zone-c'] },
  machineClasses: [
    {
      name: 'm1.small',
      cpu: 2,
      memoryMiB: 4096,
      gpuModel: null,
      gpuCount: 0,
      zones: ['zone-a', 'zone-b', 'zone-c'],
    },
    {
      name: 'm1.large',
      cpu: 4,
      memoryMiB: 16384,
      gpuModel: null,
      gpuCount: 0,
      zones: ['zone-a', 'zone-b', 'zone-c'],
    },
    {
      name: 'm1.xlarge',
      cpu: 8,
      memoryMiB: 32768,
      gpuModel: null,
      gpuCount: 0,
      zones: ['zone-a', 'zone-b', 'zone-c'],
    },
    {
      name: 'gpu.t4x1',
      cpu: 8,
      memoryMiB: 32768,
      gpuModel: 'nvidia-t4',
      gpuCount: 1,
      zones: ['zone-a', 'zone-b'],
    },
    {
      name: 'gpu.a100x4',
      cpu: 32,
      memoryMiB: 262144,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      zones: ['zone-a'],
    },
  ],
  versions: [
    { version: '1.29.12', lifecycle: 'expired' as const },
    { version: '1.30.8', lifecycle: 'deprecated' as const },
    { version: '1.31.4', lifecycle: 'supported' as const },
    { version: '1.32.1', lifecycle: 'supported' as const },
  ],
  templates: [
    {
      name: 'k8s-1.31',
      description: 'Kubernetes 1.31 with traefik ingress; CPU workers.',
      kubernetesVersion: '1.31.4',
      controlPlane: { count: 3, machineClass: 'm1.large' },
      nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 20 }],
      features: { ingress: { controller: 'traefik' } },
      lockedFeatures: ['cni'],
    },
    {
      name: 'k8s-1.32',
      description: 'Kubernetes 1.32 with traefik ingress; CPU workers.',
      kubernetesVersion: '1.32.1',
      controlPlane: { count: 3, machineClass: 'm1.large' },
      nodeGroups: [{ name: 'workers', machineClass: 'm1.large', count: 3, minCount: 1, maxCount: 20 }],
      features: { ingress: { controller: 'traefik' } },
      lockedFeatures: ['cni'],
    },
    {
      name: 'k8s-1.31-gpu',
      description: 'Kubernetes 1.31 with NVIDIA A100 workers, monitoring on.',
      kubernetesVersion: '1.31.4',
      controlPlane: { count: 3, machineClass: 'm1.large' },
      nodeGroups: [
        { name: 'workers', machineClass: 'm1.large', count: 2, minCount: 1, maxCount: 10 },
        {
          name: 'gpu',
          machineClass: 'gpu.a100x4',
          count: 1,
          minCount: 0,
          maxCount: 4,
          taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
        },
      ],
      features: { gpu: { enabled: true }, monitoring: { enabled: true, retentionDays: 30 } },
      lockedFeatures: ['gpu', 'cni'],
    },
  ],
}

/**
 * The simulated data centre behind backend `sim`: the seeded machine classes in four racks per
 * zone, with demo latency (0.5–2.5 s per backend call, a few seconds per operation) so progress can be watched.
 */
export function demoDataCentre(): SimulatorConfig {
  const perRack: Record<string, number> = { 'gpu.a100x4': 2, 'gpu.t4x1': 4 }
  return {
    // apps/simulator serves every demo cluster's Kubernetes API here (scripts/up.sh starts it).
    apiServerUrl: 'https://127.0.0.1:6443',
    zones: demoCatalogue.backend.zones,
    racksPerZone: 4,
    machineClasses: demoCatalogue.machineClasses.map((mc) => ({ ...mc, perRack: perRack[mc.name] ?? 16 })),
    latency: { default: { minMs: 500, maxMs: 2500 } },
  }
}

/** Idempotent: safe to run on every start. */
export async function seedDemo(db: Database, projectName = 'demo') {
  const c = demoCatalogue
  const backend = await db.backend.upsert({
    where: { name: c.backend.name },
    update: { config: demoDataCentre() as object },
    create: {
      name: c.backend.name,
      kind: c.backend.kind,
      capabilities: { zones: c.backend.zones },
      config: demoDataCentre() as object,
    },
  })
  for (const mc of c.machineClasses) {
    await db.machineClass.upsert({
      where: { name: mc.name },
      update: {},
      create: { ...mc, backendId: backend.id },
    })
  }
  for (const v of c.versions) {
    await db.kubernetesVersion.upsert({ where: { version: v.version }, update: {}, create: v })
  }
  for (const t of c.templates) {
    const exists = await db.clusterTemplate.findFirst({ where: { name: t.name } })
    if (!exists) await db.clusterTemplate.create({ data: { ...t, version: 1, backendId: backend.id } })
  }
  const project = await db.project.upsert({
    where: { name: projectName },
    update: {},
    create: { name: projectName, displayName: 'Demo project' },
  })
  // The dev issuer's demo people (apps/issuer): `demo` administers the project through its group,
  // `viewer` reads it; `admin` is a platform admin through KILN_PLATFORM_ADMIN_GROUPS.
  for (const [name, role] of [
    ['kiln:demo-admins', 'admin'],
    ['kiln:demo-viewers', 'viewer'],
  ] as const) {
    await db.projectMember.upsert({
      where: { projectId_kind_name: { projectId: project.id, kind: 'group', name } },
      update: {},
      create: { projectId: project.id, kind: 'group', name, role, createdBy: 'system:seed' },
    })
  }
}
