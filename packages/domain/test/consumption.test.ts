import { describe, expect, it } from 'vitest'
import {
  addMachines,
  type Consumption,
  clusterConsumption,
  emptyConsumption,
  type MachineClassInfo,
} from '../src/index.ts'

const mc = (m: Partial<MachineClassInfo> & Pick<MachineClassInfo, 'name'>): MachineClassInfo => ({
  backend: 'sim',
  cpu: 4,
  memoryMiB: 16384,
  gpuModel: null,
  gpuCount: 0,
  zones: ['zone-a', 'zone-b'],
  ...m,
})

const classes = new Map(
  [
    mc({ name: 'm1.large' }),
    mc({ name: 'm1.small', cpu: 2, memoryMiB: 4096 }),
    mc({
      name: 'gpu.a100x4',
      cpu: 32,
      memoryMiB: 262144,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      zones: ['zone-a'],
    }),
    mc({ name: 'gpu.a100x8', cpu: 64, memoryMiB: 524288, gpuModel: 'nvidia-a100', gpuCount: 8 }),
    mc({ name: 'gpu.h100x2', cpu: 48, memoryMiB: 393216, gpuModel: 'nvidia-h100', gpuCount: 2 }),
  ].map((c) => [c.name, c]),
)

describe('clusterConsumption', () => {
  const cases: { name: string; groups: { machineClass: string; count: number }[]; expected: Consumption }[] =
    [
      {
        name: 'no groups: one cluster, nothing else',
        groups: [],
        expected: { clusters: 1, nodes: 0, vcpus: 0, memoryMiB: 0, gpus: 0, gpusByModel: {} },
      },
      {
        name: 'control plane and workers of CPU classes',
        groups: [
          { machineClass: 'm1.large', count: 3 },
          { machineClass: 'm1.small', count: 5 },
        ],
        expected: {
          clusters: 1,
          nodes: 8,
          vcpus: 12 + 10,
          memoryMiB: 3 * 16384 + 5 * 4096,
          gpus: 0,
          gpusByModel: {},
        },
      },
      {
        name: 'GPUs summed per model across groups',
        groups: [
          { machineClass: 'm1.large', count: 3 },
          { machineClass: 'gpu.a100x4', count: 2 },
          { machineClass: 'gpu.a100x8', count: 1 },
          { machineClass: 'gpu.h100x2', count: 3 },
        ],
        expected: {
          clusters: 1,
          nodes: 9,
          vcpus: 12 + 64 + 64 + 144,
          memoryMiB: 3 * 16384 + 2 * 262144 + 524288 + 3 * 393216,
          gpus: 8 + 8 + 6,
          gpusByModel: { 'nvidia-a100': 16, 'nvidia-h100': 6 },
        },
      },
      {
        name: 'a GPU group scaled to zero adds no model entry',
        groups: [
          { machineClass: 'm1.large', count: 1 },
          { machineClass: 'gpu.h100x2', count: 0 },
        ],
        expected: { clusters: 1, nodes: 1, vcpus: 4, memoryMiB: 16384, gpus: 0, gpusByModel: {} },
      },
      {
        name: 'an unknown machine class is not counted',
        groups: [
          { machineClass: 'm1.large', count: 2 },
          { machineClass: 'vanished', count: 10 },
        ],
        expected: { clusters: 1, nodes: 2, vcpus: 8, memoryMiB: 32768, gpus: 0, gpusByModel: {} },
      },
    ]

  it.each(cases)('$name', ({ groups, expected }) => {
    expect(clusterConsumption(groups, classes)).toEqual(expected)
  })
})

describe('addMachines', () => {
  it('returns a new total and leaves the input untouched', () => {
    const before = { ...emptyConsumption(), gpusByModel: { 'nvidia-a100': 4 } }
    const snapshot = structuredClone(before)
    const after = addMachines(before, classes.get('gpu.a100x4')!, 1)
    expect(before).toEqual(snapshot)
    expect(after).toEqual({
      clusters: 0,
      nodes: 1,
      vcpus: 32,
      memoryMiB: 262144,
      gpus: 4,
      gpusByModel: { 'nvidia-a100': 8 },
    })
  })

  it('hands out a fresh empty consumption each time', () => {
    const a = emptyConsumption()
    a.gpusByModel['x'] = 1
    expect(emptyConsumption()).toEqual({
      clusters: 0,
      nodes: 0,
      vcpus: 0,
      memoryMiB: 0,
      gpus: 0,
      gpusByModel: {},
    })
  })
})
