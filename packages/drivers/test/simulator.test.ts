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
    startOutage: async () => {
      await driver.startOutage()
      return () => driver.endOutage()
    },
    teardown: async () => {
      await driver.endOutage()
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

  /** A control plane and a worker, bootstrapped and joined. */
  const running = async (driver: SimulatorDriver) => {
    const p = prefix()
    const cluster = clusterRef(p)
    const [cp, worker] = await driver.ensureMachines(cluster, [
      spec(`${p}-cp`, { role: 'control-plane' }),
      spec(`${p}-w`),
    ])
    await driver.bootstrap(cluster, [cp!])
    await driver.joinMachines(cluster, [worker!])
    return { p, cluster, names: [cp!.name, worker!.name] }
  }

  it('killMachine makes observe report the machine Unhealthy with HardwareFailure', async () => {
    const driver = simulator(uniqueBackend('kill'))
    const { cluster, names } = await running(driver)
    await driver.killMachine(names[1]!)
    const observed = await driver.observe(cluster, names)
    expect(observed.controlPlaneReachable).toBe(true)
    expect(observed.machines).toEqual([
      { name: names[0], health: 'Healthy', reason: 'Joined' },
      { name: names[1], health: 'Unhealthy', reason: 'HardwareFailure', definite: true },
    ])
  })

  const rejection = (promise: Promise<unknown>) =>
    promise.then(
      () => {
        throw new Error('expected the call to fail')
      },
      (error: unknown) => error as DriverError,
    )

  describe('outages', () => {
    it('an outage started by one instance is seen by another: calls fail ERR_UNAVAILABLE, observe says Unknown', async () => {
      const backend = uniqueBackend('outage')
      const demo = simulator(backend)
      const { cluster, names } = await running(demo)
      const worker = simulator(backend)
      expect((await worker.observe(cluster, names)).backendReachable).toBe(true)
      await demo.startOutage()
      // The worker's instance reads the outage within its 250 ms cache.
      await new Promise((resolve) => setTimeout(resolve, 300))
      const observed = await worker.observe(cluster, names)
      expect(observed).toEqual({
        controlPlaneReachable: true,
        backendReachable: false,
        unreachableReason: expect.stringContaining(`The simulated data centre '${backend}' does not answer`),
        machines: names.map((name) => ({
          name,
          health: 'Unknown',
          reason: expect.stringMatching(/^Unobservable: The simulated data centre/),
        })),
      })
      for (const call of [
        () => worker.capabilities(),
        () => worker.ensureMachines(cluster, [spec(`${names[1]}-2`)]),
        () => worker.releaseMachines(cluster, [names[1]!]),
        () => worker.bootstrap(cluster, []),
        () =>
          worker.joinMachines(cluster, [
            { name: names[1]!, externalId: 'x', zone: 'zone-a', machineClass: 'm1.large' },
          ]),
      ]) {
        const error = await rejection(call())
        expect(error).toBeInstanceOf(DriverError)
        expect(error.code).toBe('ERR_UNAVAILABLE')
        expect(error.message).toContain('does not answer')
      }
      // Nothing was released or allocated meanwhile.
      expect((await demo.inventory()).allocatedNames.sort()).toEqual([...names].sort())

      await demo.endOutage()
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect((await worker.observe(cluster, names)).machines.map((m) => m.health)).toEqual([
        'Healthy',
        'Healthy',
      ])
      await expect(worker.capabilities()).resolves.toMatchObject({ zones: ['zone-a', 'zone-b'] })
    })

    it('an outage for some milliseconds ends by itself', async () => {
      const driver = simulator(uniqueBackend('outage-for'))
      await driver.startOutage({ forMs: 400 })
      expect((await rejection(driver.capabilities())).message).toMatch(/does not answer .*until \d{4}-/)
      await new Promise((resolve) => setTimeout(resolve, 700))
      await expect(driver.capabilities()).resolves.toBeDefined()
    })

    it('failObservations: only the next N observations go unanswered, shared by every instance', async () => {
      const backend = uniqueBackend('outage-obs')
      const demo = simulator(backend)
      const { cluster, names } = await running(demo)
      await demo.startOutage({ failObservations: 2 })
      const worker = simulator(backend)
      // Everything else answers meanwhile.
      await expect(worker.capabilities()).resolves.toBeDefined()
      const healths = []
      for (const driver of [worker, demo, worker]) {
        const observed = await driver.observe(cluster, names)
        healths.push([observed.backendReachable, ...observed.machines.map((m) => m.health)])
      }
      expect(healths).toEqual([
        [false, 'Unknown', 'Unknown'],
        [false, 'Unknown', 'Unknown'],
        [true, 'Healthy', 'Healthy'],
      ])
    })
  })

  it('a machine in maintenance is Unhealthy with the reason, and released it stays out of the pool', async () => {
    const driver = simulator(uniqueBackend('maint'))
    const { cluster, names } = await running(driver)
    const before = await free(driver, 'm1.large', 'zone-a')
    await driver.setMaintenance(names[1]!, 'fan failure')
    const observed = await driver.observe(cluster, names)
    expect(observed.machines).toEqual([
      { name: names[0], health: 'Healthy', reason: 'Joined' },
      { name: names[1], health: 'Unhealthy', reason: 'Maintenance: fan failure', definite: true },
    ])
    expect(observed.backendReachable).toBe(true)
    await driver.releaseMachines(cluster, [names[1]!])
    expect(await free(driver, 'm1.large', 'zone-a')).toBe(before)
    await driver.releaseMachines(cluster, [names[0]!])
    expect(await free(driver, 'm1.large', 'zone-a')).toBe(before! + 1)
  })

  it('forgets a cluster once its last machine is released: no row per deleted cluster', async () => {
    const driver = simulator(uniqueBackend('forget'))
    const { cluster, names } = await running(driver)
    const other = await running(driver)
    expect((await driver.inventory()).controlPlanes).toEqual([cluster.id, other.cluster.id].sort())
    await driver.releaseMachines(cluster, [names[1]!])
    // Machines left: the control plane still runs.
    expect((await driver.inventory()).controlPlanes).toContain(cluster.id)
    expect((await driver.observe(cluster, [])).controlPlaneReachable).toBe(true)
    await driver.releaseMachines(cluster, [names[0]!])
    expect((await driver.inventory()).controlPlanes).toEqual([other.cluster.id])
    expect((await driver.observe(cluster, [])).controlPlaneReachable).toBe(false)
    // Bootstrapping again (a cluster rebuilt from nothing) brings it back.
    const [cp] = await driver.ensureMachines(cluster, [spec(`${names[0]}-again`, { role: 'control-plane' })])
    await driver.bootstrap(cluster, [cp!])
    expect((await driver.observe(cluster, [])).controlPlaneReachable).toBe(true)
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
    expect(await driver.inventory()).toEqual({
      total: 10,
      allocated: 0,
      allocatedNames: [],
      clusterIds: [],
      controlPlanes: [],
    })
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
