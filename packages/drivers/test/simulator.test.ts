import { randomUUID } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest'
import { createTestDatabase } from '../../../test/support/database.ts'
import { describeDriverConformance } from '../src/conformance.ts'
import { type ClusterRef, DriverError, type MachineSpec } from '../src/contract.ts'
import { type SimulatorConfig, SimulatorDriver } from '../src/simulator/simulator.ts'

let db: Awaited<ReturnType<typeof createTestDatabase>>
beforeAll(async () => {
  db = await createTestDatabase(inject('templateDatabase'), inject('runId'))
})
afterAll(async () => {
  await db?.drop()
})

/** Two zones of two racks: m1.large 2 per rack everywhere, gpu.a100x4 1 per rack in zone-a only. */
const dataCentre = (extra: Partial<SimulatorConfig> = {}): SimulatorConfig => ({
  zones: ['zone-a', 'zone-b'],
  racksPerZone: 2,
  machineClasses: [
    { name: 'm1.large', cpu: 8, memoryMiB: 32_768, gpuModel: null, gpuCount: 0, perRack: 2 },
    {
      name: 'gpu.a100x4',
      cpu: 64,
      memoryMiB: 524_288,
      gpuModel: 'nvidia-a100',
      gpuCount: 4,
      perRack: 1,
      zones: ['zone-a'],
    },
  ],
  latency: { default: { minMs: 0, maxMs: 0 } },
  ...extra,
})

/** Each backend name is its own data centre inside the shared `simulator` schema. */
const uniqueBackend = (tag: string) => `${tag}-${randomUUID().slice(0, 8)}`

describeDriverConformance('simulator', async () => {
  const backend = uniqueBackend('conformance')
  const driver = new SimulatorDriver(backend, dataCentre(), db.url)
  const others: SimulatorDriver[] = []
  return {
    driver,
    machineClass: 'm1.large',
    zone: 'zone-a',
    capacity: 4,
    makeDriver: () => {
      const other = new SimulatorDriver(backend, dataCentre(), db.url)
      others.push(other)
      return other
    },
    teardown: async () => {
      await Promise.all([driver, ...others].map((d) => d.close()))
    },
  }
})

describe('simulator driver', () => {
  const open: SimulatorDriver[] = []
  const simulator = (backend: string, config: SimulatorConfig = dataCentre()) => {
    const driver = new SimulatorDriver(backend, config, db.url)
    open.push(driver)
    return driver
  }
  afterEach(async () => {
    await Promise.all(open.splice(0).map((d) => d.close()))
  })

  const prefix = () => `sim-${randomUUID().slice(0, 8)}`
  const clusterRef = (p: string): ClusterRef => ({ id: `${p}-cluster`, name: `${p}-cluster` })
  const spec = (name: string, overrides: Partial<MachineSpec> = {}): MachineSpec => ({
    name,
    machineClass: 'm1.large',
    zone: 'zone-a',
    role: 'worker',
    kubernetesVersion: '1.31.0',
    labels: {},
    taints: [],
    ...overrides,
  })
  const free = async (driver: SimulatorDriver, machineClass: string, zone: string) =>
    (await driver.capabilities()).machineClasses.find((mc) => mc.name === machineClass)?.available[zone]

  it('keeps its state in Postgres: a new instance on the same database sees the allocations', async () => {
    const backend = uniqueBackend('persist')
    const p = prefix()
    const cluster = clusterRef(p)
    const first = simulator(backend)
    const refs = await first.ensureMachines(cluster, [spec(`${p}-a`), spec(`${p}-b`)])
    await first.close()
    open.splice(open.indexOf(first), 1)

    const second = simulator(backend)
    const inventory = await second.inventory()
    expect(inventory.allocated).toBe(2)
    expect(inventory.allocatedNames.sort()).toEqual([`${p}-a`, `${p}-b`])
    expect(inventory.clusterIds).toEqual([cluster.id])
    expect(await free(second, 'm1.large', 'zone-a')).toBe(2)
    const adopted = await second.ensureMachines(cluster, [spec(`${p}-a`), spec(`${p}-b`)])
    expect(adopted).toEqual(refs)
    expect((await second.inventory()).allocated).toBe(2)
  })

  it('killMachine makes observe report the machine Unhealthy with HardwareFailure', async () => {
    const driver = simulator(uniqueBackend('kill'))
    const p = prefix()
    const cluster = clusterRef(p)
    const [cp, worker] = await driver.ensureMachines(cluster, [
      spec(`${p}-cp`, { role: 'control-plane' }),
      spec(`${p}-w`),
    ])
    await driver.bootstrap(cluster, [cp!])
    await driver.joinMachines(cluster, [worker!])
    await driver.killMachine(worker!.name)
    const observed = await driver.observe(cluster, [cp!.name, worker!.name])
    expect(observed.controlPlaneReachable).toBe(true)
    expect(observed.machines).toEqual([
      { name: cp!.name, health: 'Healthy', reason: 'Joined' },
      { name: worker!.name, health: 'Unhealthy', reason: 'HardwareFailure', definite: true },
    ])
  })

  it('reports allocated but not yet joined machines as Unhealthy/NotJoined', async () => {
    const driver = simulator(uniqueBackend('notjoined'))
    const p = prefix()
    const cluster = clusterRef(p)
    await driver.ensureMachines(cluster, [spec(`${p}-w`)])
    const observed = await driver.observe(cluster, [`${p}-w`])
    expect(observed.controlPlaneReachable).toBe(false)
    expect(observed.machines).toEqual([{ name: `${p}-w`, health: 'Unhealthy', reason: 'NotJoined' }])
  })

  describe('seeded faults', () => {
    /** Outcomes of 20 ensureMachines calls on a fresh data centre whose calls fail half the time. */
    const outcomes = async (seed: number) => {
      const driver = simulator(
        uniqueBackend(`faults-${seed}`),
        dataCentre({ faults: { seed, callFailureRate: 0.5 } }),
      )
      const p = prefix()
      const cluster = clusterRef(p)
      const result: Array<'ok' | 'fail'> = []
      for (let i = 0; i < 20; i++) {
        const name = `${p}-${i}`
        try {
          await driver.ensureMachines(cluster, [spec(name)])
          result.push('ok')
        } catch (error) {
          expect(error).toBeInstanceOf(DriverError)
          expect((error as DriverError).code).toBe('ERR_TRANSIENT')
          expect((error as DriverError).errorClass).toBe('retryable')
          result.push('fail')
          continue
        }
        // Release draws from the same seeded stream and can fail too: retry until it is released.
        for (let attempt = 0; ; attempt++) {
          expect(attempt).toBeLessThan(50)
          try {
            await driver.releaseMachines(cluster, [name])
            break
          } catch (error) {
            expect((error as DriverError).code).toBe('ERR_TRANSIENT')
          }
        }
      }
      expect((await driver.inventory()).allocated).toBe(0)
      return result
    }

    it('the same seed gives the same sequence of failures and successes', async () => {
      const first = await outcomes(42)
      const second = await outcomes(42)
      expect(second).toEqual(first)
      expect(first).toContain('ok')
      expect(first).toContain('fail')
    })

    it('a different seed gives a different sequence', async () => {
      expect(await outcomes(7)).not.toEqual(await outcomes(42))
    })
  })

  it('latency delays every call by at least its minimum', async () => {
    const driver = simulator(
      uniqueBackend('latency'),
      dataCentre({ latency: { default: { minMs: 50, maxMs: 60 } } }),
    )
    await driver.capabilities() // creates the schema outside the measurement
    const p = prefix()
    const started = performance.now()
    await driver.ensureMachines(clusterRef(p), [spec(`${p}-a`)])
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(50)
    // The point is the minimum; the ceiling only catches a runaway delay, with room for a busy machine.
    expect(elapsed).toBeLessThan(10_000)
  })

  it('inventory and capabilities count racks, classes and zones', async () => {
    const driver = simulator(uniqueBackend('inventory'))
    // zone-a: 2 racks x (2 m1.large + 1 gpu.a100x4) = 6; zone-b: 2 racks x 2 m1.large = 4.
    expect(await driver.inventory()).toEqual({ total: 10, allocated: 0, allocatedNames: [], clusterIds: [] })
    const caps = await driver.capabilities()
    expect(caps.zones).toEqual(['zone-a', 'zone-b'])
    expect(caps.machineClasses).toEqual([
      {
        name: 'm1.large',
        cpu: 8,
        memoryMiB: 32_768,
        gpuModel: null,
        gpuCount: 0,
        available: { 'zone-a': 4, 'zone-b': 4 },
      },
      {
        name: 'gpu.a100x4',
        cpu: 64,
        memoryMiB: 524_288,
        gpuModel: 'nvidia-a100',
        gpuCount: 4,
        available: { 'zone-a': 2 },
      },
    ])

    const p = prefix()
    const cluster = clusterRef(p)
    await driver.ensureMachines(cluster, [
      spec(`${p}-a`),
      spec(`${p}-b`, { zone: 'zone-b' }),
      spec(`${p}-gpu`, { machineClass: 'gpu.a100x4' }),
    ])
    const inventory = await driver.inventory()
    expect(inventory.total).toBe(10)
    expect(inventory.allocated).toBe(3)
    expect(inventory.allocatedNames.sort()).toEqual([`${p}-a`, `${p}-b`, `${p}-gpu`].sort())
    expect(inventory.clusterIds).toEqual([cluster.id])
    expect(await free(driver, 'm1.large', 'zone-a')).toBe(3)
    expect(await free(driver, 'm1.large', 'zone-b')).toBe(3)
    expect(await free(driver, 'gpu.a100x4', 'zone-a')).toBe(1)
  })

  it('a capacity error names the machine class and the zone', async () => {
    const driver = simulator(uniqueBackend('capacity'))
    const p = prefix()
    const cluster = clusterRef(p)
    const gpu = (name: string, zone = 'zone-a') => spec(name, { machineClass: 'gpu.a100x4', zone })
    await driver.ensureMachines(cluster, [gpu(`${p}-0`), gpu(`${p}-1`)])
    // Out of machines where the class is offered: a capacity error for the platform team.
    // Asking for a zone the class is not offered in: the request must change (a user error).
    for (const [request, zone, code, errorClass] of [
      [gpu(`${p}-2`), 'zone-a', 'ERR_CAPACITY', 'platform'],
      [gpu(`${p}-3`, 'zone-b'), 'zone-b', 'ERR_INVALID_REQUEST', 'user'],
    ] as const) {
      const error = await driver.ensureMachines(cluster, [request]).catch((e: unknown) => e)
      expect(error).toBeInstanceOf(DriverError)
      expect((error as DriverError).code).toBe(code)
      expect((error as DriverError).errorClass).toBe(errorClass)
      expect((error as DriverError).message).toContain("'gpu.a100x4'")
      expect((error as DriverError).message).toContain(`'${zone}'`)
    }
  })
})
