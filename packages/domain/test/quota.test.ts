import { describe, expect, it } from 'vitest'
import {
  amountOf,
  clusterClaim,
  DomainError,
  ErrorCode,
  emptyConsumption,
  groupClaim,
  isUnlimited,
  type MachineClassInfo,
  machinesConsumption,
  maxConsumption,
  quotaExceeded,
  quotaLines,
  subtractConsumption,
  unlimitedQuota,
} from '../src/index.ts'

const classes = new Map<string, MachineClassInfo>([
  [
    'm1.large',
    { name: 'm1.large', backend: 'sim', cpu: 4, memoryMiB: 16384, gpuModel: null, gpuCount: 0, zones: [] },
  ],
  [
    'gpu.a100x4',
    {
      name: 'gpu.a100x4',
      backend: 'sim',
      cpu: 32,
      memoryMiB: 262144,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      zones: [],
    },
  ],
])

const workers = (count: number) => ({ machineClass: 'm1.large', count })
const a100 = (count: number) => ({ machineClass: 'gpu.a100x4', count })

describe('what a group claims: max(desired, held)', () => {
  it('a growing group claims its new size before any machine exists', () => {
    expect(groupClaim({ desired: workers(5), held: [workers(3)] }, classes)).toMatchObject({
      nodes: 5,
      vcpus: 20,
    })
  })

  it('a shrinking group keeps claiming its machines until they are released', () => {
    expect(groupClaim({ desired: workers(1), held: [workers(3)] }, classes)).toMatchObject({ nodes: 3 })
    expect(groupClaim({ desired: workers(1), held: [workers(1)] }, classes)).toMatchObject({ nodes: 1 })
  })

  it('counts GPUs by model, and machines of a class the catalogue lost as nodes', () => {
    expect(groupClaim({ desired: a100(2), held: [] }, classes)).toEqual({
      clusters: 0,
      nodes: 2,
      vcpus: 64,
      memoryMiB: 524288,
      gpus: 8,
      gpusByModel: { 'nvidia-a100': 8 },
    })
    expect(machinesConsumption('gone.class', 2, classes)).toMatchObject({ nodes: 2, vcpus: 0 })
  })
})

describe('what a cluster claims', () => {
  it('a live cluster: itself and every group', () => {
    const claim = clusterClaim(
      {
        deleting: false,
        groups: [
          { desired: workers(1), held: [] },
          { desired: a100(1), held: [] },
        ],
      },
      classes,
    )
    expect(claim).toMatchObject({ clusters: 1, nodes: 2, vcpus: 36, gpus: 4 })
  })

  it('a deleting cluster: only what it still holds, and itself until the last machine goes', () => {
    const holding = clusterClaim(
      {
        deleting: true,
        groups: [
          { desired: null, held: [workers(1)] },
          { desired: null, held: [a100(1)] },
        ],
      },
      classes,
    )
    expect(holding).toMatchObject({ clusters: 1, nodes: 2, gpus: 4 })
    const released = clusterClaim(
      {
        deleting: true,
        groups: [
          { desired: null, held: [] },
          { desired: null, held: [] },
        ],
      },
      classes,
    )
    expect(released).toEqual(emptyConsumption())
  })
})

describe('a request against the limits', () => {
  const limits = { ...unlimitedQuota(), gpus: 16, gpusByModel: { 'nvidia-a100': 8 } }

  it('lists every resource, a line per GPU model limited, used or asked for', () => {
    const usage = { ...emptyConsumption(), clusters: 1, nodes: 1, gpus: 4, gpusByModel: { 'nvidia-h100': 4 } }
    const request = machinesConsumption('gpu.a100x4', 1, classes)
    const lines = quotaLines(limits, usage, request)
    expect(lines.map((l) => l.resource)).toEqual([
      'clusters',
      'nodes',
      'vcpus',
      'memoryMiB',
      'gpus',
      'gpus:nvidia-a100',
      'gpus:nvidia-h100',
    ])
    expect(lines.find((l) => l.resource === 'gpus')).toEqual({
      resource: 'gpus',
      limit: 16,
      usage: 4,
      request: 4,
      remaining: 12,
      exceeded: false,
    })
    // A model the quota does not name is bounded only by `gpus`.
    expect(lines.find((l) => l.resource === 'gpus:nvidia-h100')).toMatchObject({
      limit: null,
      remaining: null,
    })
    expect(lines.every((l) => !l.exceeded)).toBe(true)
  })

  it('refuses a request that takes a resource beyond its limit, naming the resource', () => {
    const usage = { ...emptyConsumption(), gpus: 4, gpusByModel: { 'nvidia-a100': 4 } }
    const lines = quotaLines(limits, usage, machinesConsumption('gpu.a100x4', 2, classes))
    expect(lines.filter((l) => l.exceeded)).toEqual([
      { resource: 'gpus:nvidia-a100', limit: 8, usage: 4, request: 8, remaining: 4, exceeded: true },
    ])
    const error = quotaExceeded(lines, (l) => [`/for/${l.resource}`])
    expect(error).toBeInstanceOf(DomainError)
    expect(error.code).toBe(ErrorCode.quotaExceeded)
    expect(error.violations).toEqual([
      {
        pointer: '/for/gpus:nvidia-a100',
        message: 'gpus:nvidia-a100: the limit is 8, 4 are in use and this request needs 8 more.',
      },
    ])
    expect(error.extensions['exceeded']).toEqual(lines.filter((l) => l.exceeded))
  })

  it('lets a request that gives back or leaves a resource alone through, even over a lowered limit', () => {
    const over = { ...unlimitedQuota(), nodes: 2 }
    const usage = { ...emptyConsumption(), clusters: 1, nodes: 5 }
    expect(quotaLines(over, usage, { ...emptyConsumption(), nodes: -2 }).some((l) => l.exceeded)).toBe(false)
    expect(quotaLines(over, usage, { ...emptyConsumption(), clusters: 1 }).some((l) => l.exceeded)).toBe(
      false,
    )
    const line = quotaLines(over, usage, { ...emptyConsumption(), nodes: 1 }).find(
      (l) => l.resource === 'nodes',
    )
    expect(line).toMatchObject({ exceeded: true, remaining: 0 })
  })

  it('exactly at the limit fits', () => {
    const lines = quotaLines(
      { ...unlimitedQuota(), clusters: 5 },
      { ...emptyConsumption(), clusters: 4 },
      {
        ...emptyConsumption(),
        clusters: 1,
      },
    )
    expect(lines.find((l) => l.resource === 'clusters')).toMatchObject({ exceeded: false, remaining: 1 })
  })
})

describe('arithmetic', () => {
  it('max, difference and amounts work per resource and per GPU model', () => {
    const a = { ...emptyConsumption(), nodes: 3, gpus: 4, gpusByModel: { 'nvidia-a100': 4 } }
    const b = { ...emptyConsumption(), nodes: 1, gpus: 8, gpusByModel: { 'nvidia-h100': 8 } }
    expect(maxConsumption(a, b)).toMatchObject({
      nodes: 3,
      gpus: 8,
      gpusByModel: { 'nvidia-a100': 4, 'nvidia-h100': 8 },
    })
    expect(subtractConsumption(a, b)).toMatchObject({
      nodes: 2,
      gpus: -4,
      gpusByModel: { 'nvidia-a100': 4, 'nvidia-h100': -8 },
    })
    expect(amountOf(a, 'gpus:nvidia-a100')).toBe(4)
    expect(amountOf(a, 'gpus:nvidia-h100')).toBe(0)
    expect(amountOf(a, 'nodes')).toBe(3)
  })

  it('an empty quota bounds nothing', () => {
    expect(isUnlimited(unlimitedQuota())).toBe(true)
    expect(isUnlimited({ ...unlimitedQuota(), gpusByModel: { 'nvidia-a100': 0 } })).toBe(false)
    expect(isUnlimited({ ...unlimitedQuota(), clusters: 0 })).toBe(false)
  })
})
