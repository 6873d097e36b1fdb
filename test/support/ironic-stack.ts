import { randomBytes } from 'node:crypto'
import type { KilnApp } from '../../apps/api/src/app.ts'
import type { Database } from '../../packages/db/src/index.ts'
import type { IronicClient, IronicConfig, IronicNode } from '../../packages/drivers/src/index.ts'
import { aKubernetesVersion, aProject, aTemplate } from './builders.ts'
import { apiServerUrls } from './engine.ts'
import { enrollNodes, testIronicConfig } from './ironic.ts'

// An Ironic backend in a test stack: fake-hardware nodes under resource classes of the test's own, a
// backend row whose control planes are served by the stack's simulated API server (fake hardware
// runs no kubelet, so the simulator stands in for the Kubernetes on it), and a template.

export interface IronicRack {
  cpuClass: string
  gpuClass: string
  nodes: IronicNode[]
  backendId: string
  /** Prefix of every node name, for finding them in Ironic. */
  prefix: string
}

export async function anIronicBackend(
  db: Database,
  admin: IronicClient,
  options: {
    name: string
    cpuNodes: number
    gpuNodes?: number
    zone?: string
    config?: Partial<IronicConfig>
    /** Registers the backend through POST /v1/backends, as a platform admin would, instead of a row. */
    api?: KilnApp
    template?: { name: string; controlPlane?: number; workers?: number; gpu?: number }
  },
): Promise<IronicRack> {
  const tag = randomBytes(3).toString('hex')
  const cpuClass = `bm-cpu-${tag}`
  const gpuClass = `bm-gpu-${tag}`
  const zone = options.zone ?? 'zone-a'
  const prefix = `e2e-${tag}`
  const nodes = [
    ...(await enrollNodes(admin, { resourceClass: cpuClass, count: options.cpuNodes, zone, prefix })),
    ...(options.gpuNodes
      ? await enrollNodes(admin, {
          resourceClass: gpuClass,
          count: options.gpuNodes,
          zone,
          prefix,
          traits: ['CUSTOM_GPU_A100'],
          properties: { gpu_count: 4, cpus: 64, memory_mb: 524288 },
        })
      : []),
  ]
  const config = testIronicConfig({
    controlPlaneEndpoint: {
      server: apiServerUrls.get(db)!,
      tlsServerName: '{clusterId}.clusters.sim.kiln.internal',
    },
    ...options.config,
  })
  let backendId: string
  if (options.api) {
    const res = await options.api.inject({
      method: 'POST',
      url: '/v1/backends',
      payload: { name: options.name, kind: 'ironic', config },
    })
    if (res.statusCode !== 201) throw new Error(`POST /v1/backends answered ${res.statusCode}: ${res.body}`)
    backendId = (res.json() as { id: string }).id
  } else {
    const backend = await db.backend.create({
      data: { name: options.name, kind: 'ironic', capabilities: { zones: [zone] }, config: config as object },
    })
    backendId = backend.id
  }
  if (!(await db.kubernetesVersion.findUnique({ where: { version: '1.31.4' } })))
    await aKubernetesVersion(db, '1.31.4')
  if (!(await db.project.findUnique({ where: { name: 'team-a' } }))) await aProject(db, 'team-a')
  return { cpuClass, gpuClass, nodes, backendId, prefix }
}

/** A template on the rack's classes; call after the engine synced the machine classes. */
export async function anIronicTemplate(
  db: Database,
  rack: IronicRack,
  template: { name: string; controlPlane?: number; workers?: number; gpu?: number },
) {
  return aTemplate(db, rack.backendId, {
    name: template.name,
    controlPlane: { count: template.controlPlane ?? 1, machineClass: rack.cpuClass },
    nodeGroups: [
      {
        name: 'workers',
        machineClass: rack.cpuClass,
        count: template.workers ?? 1,
        minCount: 0,
        maxCount: 10,
      },
      ...(template.gpu !== undefined
        ? [
            {
              name: 'gpu',
              machineClass: rack.gpuClass,
              count: template.gpu,
              minCount: 0,
              maxCount: 10,
              taints: [{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }],
            },
          ]
        : []),
    ],
    ...(template.gpu !== undefined ? { features: { gpu: { enabled: true } } } : {}),
  })
}
