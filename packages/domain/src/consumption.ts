import type { MachineClassInfo } from './resolution.ts'

/** What a set of machines takes from a project's quota. */
export interface Consumption {
  clusters: number
  nodes: number
  vcpus: number
  memoryMiB: number
  gpus: number
  gpusByModel: Record<string, number>
}

export const emptyConsumption = (): Consumption => ({
  clusters: 0,
  nodes: 0,
  vcpus: 0,
  memoryMiB: 0,
  gpus: 0,
  gpusByModel: {},
})

/** Adds `count` machines of a class. */
export function addMachines(total: Consumption, machineClass: MachineClassInfo, count: number): Consumption {
  const gpus = machineClass.gpuCount * count
  const gpusByModel = { ...total.gpusByModel }
  if (gpus > 0 && machineClass.gpuModel) {
    gpusByModel[machineClass.gpuModel] = (gpusByModel[machineClass.gpuModel] ?? 0) + gpus
  }
  return {
    clusters: total.clusters,
    nodes: total.nodes + count,
    vcpus: total.vcpus + machineClass.cpu * count,
    memoryMiB: total.memoryMiB + machineClass.memoryMiB * count,
    gpus: total.gpus + gpus,
    gpusByModel,
  }
}

/** The consumption of a whole cluster: its control plane and every node group. */
export function clusterConsumption(
  groups: { machineClass: string; count: number }[],
  machineClasses: ReadonlyMap<string, MachineClassInfo>,
): Consumption {
  let total = { ...emptyConsumption(), clusters: 1 }
  for (const group of groups) {
    const mc = machineClasses.get(group.machineClass)
    if (mc) total = addMachines(total, mc, group.count)
  }
  return total
}
