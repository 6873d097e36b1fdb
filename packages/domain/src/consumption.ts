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

/** The larger of each figure: the peak of steps that never hold their machines at the same time. */
export function peakConsumption(steps: Consumption[]): Consumption {
  const peak = emptyConsumption()
  for (const step of steps) {
    peak.clusters = Math.max(peak.clusters, step.clusters)
    peak.nodes = Math.max(peak.nodes, step.nodes)
    peak.vcpus = Math.max(peak.vcpus, step.vcpus)
    peak.memoryMiB = Math.max(peak.memoryMiB, step.memoryMiB)
    peak.gpus = Math.max(peak.gpus, step.gpus)
    for (const [model, gpus] of Object.entries(step.gpusByModel))
      peak.gpusByModel[model] = Math.max(peak.gpusByModel[model] ?? 0, gpus)
  }
  return peak
}
