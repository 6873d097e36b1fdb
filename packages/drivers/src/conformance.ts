import { randomUUID } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  type BootstrapMaterial,
  type ClusterRef,
  type Driver,
  DriverError,
  type DriverErrorCode,
  type MachineSpec,
} from './contract.ts'

/** What a driver's test file hands the conformance suite; `setup` runs once per test. */
export interface ConformanceHarness {
  driver: Driver
  machineClass: string
  zone: string
  /** Free machines of `machineClass` in `zone` when `setup` returns; at least 2. */
  capacity: number
  /** Closes `driver` and every driver `makeDriver` returned, and frees the backend. */
  teardown(): Promise<void>
  /** A second instance on the same backend, as another worker (or a restarted one) would have. */
  makeDriver?(): Driver
  /** For drivers whose machines run kubeadm: the material the engine would hand them. */
  bootstrapMaterial?(): Promise<BootstrapMaterial>
  /**
   * Makes the backend stop answering, for `driver` and every `makeDriver` instance, until the
   * returned function is called (teardown ends it too): the outage rules (9, 11).
   */
  startOutage(): Promise<() => Promise<void>>
}

/**
 * The MUST rules of CONTRACT.md as tests; every driver runs them from its own test file:
 * `describeDriverConformance('simulator', async () => ({ driver, machineClass, zone, capacity, teardown }))`.
 * Machine names are unique per test, so tests do not depend on each other or on their order.
 */
export function describeDriverConformance(name: string, setup: () => Promise<ConformanceHarness>) {
  describe(`driver conformance: ${name}`, () => {
    let h: ConformanceHarness
    let prefix: string
    let cluster: ClusterRef

    beforeEach(async () => {
      h = await setup()
      expect(h.capacity, 'the harness must offer at least 2 free machines').toBeGreaterThanOrEqual(2)
      prefix = `conf-${randomUUID().slice(0, 8)}`
      cluster = {
        id: `${prefix}-cluster`,
        name: `${prefix}-cluster`,
        ...(h.bootstrapMaterial ? { bootstrapMaterial: h.bootstrapMaterial } : {}),
      }
    })
    afterEach(async () => {
      await h?.teardown()
    })

    const names = (n: number, tag = 'm') => Array.from({ length: n }, (_, i) => `${prefix}-${tag}${i}`)
    const spec = (machineName: string, overrides: Partial<MachineSpec> = {}): MachineSpec => ({
      name: machineName,
      machineClass: h.machineClass,
      zone: h.zone,
      role: 'worker',
      kubernetesVersion: '1.31.0',
      labels: {},
      taints: [],
      ...overrides,
    })
    const specs = (machineNames: string[]) => machineNames.map((n) => spec(n))
    /** Another instance on the same backend when the harness has one, else the same instance. */
    const another = () => h.makeDriver?.() ?? h.driver
    const free = async (driver: Driver = h.driver) => {
      const caps = await driver.capabilities()
      return caps.machineClasses.find((mc) => mc.name === h.machineClass)?.available[h.zone] ?? 0
    }
    /** `code` undefined: any code of `errorClass`. */
    const expectDriverError = (
      error: unknown,
      code: DriverErrorCode | undefined,
      errorClass: DriverError['errorClass'],
    ) => {
      expect(
        error,
        `expected a ${errorClass} DriverError ${code ?? ''}, got: ${String(error)}`,
      ).toBeInstanceOf(DriverError)
      if (code) expect((error as DriverError).code).toBe(code)
      expect((error as DriverError).errorClass).toBe(errorClass)
      return error as DriverError
    }
    const rejection = async (promise: Promise<unknown>) => {
      try {
        await promise
      } catch (error) {
        return error
      }
      throw new Error('expected the call to fail, it resolved')
    }

    /** A control plane and a worker, bootstrapped and joined. */
    const runningCluster = async () => {
      const [cp, worker] = await h.driver.ensureMachines(cluster, [
        spec(`${prefix}-cp0`, { role: 'control-plane' }),
        spec(`${prefix}-w0`),
      ])
      await h.driver.bootstrap(cluster, [cp!])
      await h.driver.joinMachines(cluster, [worker!])
      return [cp!, worker!] as const
    }

    it('capabilities lists the machine class with its free capacity in the zone', async () => {
      const caps = await h.driver.capabilities()
      expect(caps.zones).toContain(h.zone)
      const mc = caps.machineClasses.find((c) => c.name === h.machineClass)
      expect(mc, `machine class ${h.machineClass}`).toBeDefined()
      expect(mc!.cpu).toBeGreaterThan(0)
      expect(mc!.memoryMiB).toBeGreaterThan(0)
      expect(mc!.available[h.zone]).toBe(h.capacity)
    })

    it('ensureMachines allocates, and is idempotent per name (rule 1)', async () => {
      const wanted = names(2)
      const first = await h.driver.ensureMachines(cluster, specs(wanted))
      expect(first.map((r) => r.name)).toEqual(wanted)
      for (const ref of first) {
        expect(ref.externalId).toBeTruthy()
        expect(ref.machineClass).toBe(h.machineClass)
        expect(ref.zone).toBe(h.zone)
      }
      expect(await free()).toBe(h.capacity - 2)

      const second = await h.driver.ensureMachines(cluster, specs(wanted))
      expect(second).toEqual(first)
      expect(await free()).toBe(h.capacity - 2)
    })

    it('adopts machines by name from another instance, as after a crash (rule 2)', async () => {
      const wanted = names(2)
      const first = await h.driver.ensureMachines(cluster, specs(wanted))
      const adopted = await another().ensureMachines(cluster, specs(wanted))
      expect(adopted.map((r) => r.externalId)).toEqual(first.map((r) => r.externalId))
      expect(await free()).toBe(h.capacity - 2)
    })

    it('gives distinct names distinct machines (rule 3)', async () => {
      const refs = await h.driver.ensureMachines(cluster, specs(names(h.capacity)))
      expect(new Set(refs.map((r) => r.externalId)).size).toBe(h.capacity)
      expect(await free()).toBe(0)
    })

    it('never gives one machine to two names, nor exceeds capacity, under concurrent calls (rule 3)', async () => {
      const instances = [h.driver, another()]
      const wanted = names(h.capacity + 2)
      const results = await Promise.allSettled(
        wanted.map((n, i) => instances[i % instances.length]!.ensureMachines(cluster, [spec(n)])),
      )
      const allocated = results.flatMap((r) => (r.status === 'fulfilled' ? r.value : []))
      const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []))
      expect(allocated).toHaveLength(h.capacity)
      expect(new Set(allocated.map((r) => r.externalId)).size).toBe(h.capacity)
      expect(failures).toHaveLength(2)
      for (const error of failures) expectDriverError(error, 'ERR_CAPACITY', 'platform')
      expect(await free()).toBe(0)
    })

    it('never gives two machines to one name under concurrent calls (rule 3)', async () => {
      const instances = [h.driver, another(), another()]
      for (const machineName of names(3, 'same')) {
        const results = await Promise.allSettled(
          [0, 1, 2, 3].map((i) =>
            instances[i % instances.length]!.ensureMachines(cluster, [spec(machineName)]),
          ),
        )
        const ids = new Set<string>()
        for (const r of results) {
          if (r.status === 'fulfilled') ids.add(r.value[0]!.externalId)
          // Losing a race may be reported, but only as a DriverError the engine retries (rule 11).
          else expectDriverError(r.reason, undefined, 'retryable')
        }
        expect(ids.size, `machines held by ${machineName}`).toBe(1)
        expect(await free()).toBe(h.capacity - 1)
        // A retry after the race adopts the one machine.
        const [again] = await h.driver.ensureMachines(cluster, [spec(machineName)])
        expect(ids.has(again!.externalId)).toBe(true)
        await h.driver.releaseMachines(cluster, [machineName])
        expect(await free()).toBe(h.capacity)
      }
    })

    it('reports a shortage as ERR_CAPACITY naming class and zone, and a retry adopts (rules 4, 15)', async () => {
      const wanted = names(h.capacity + 1)
      const error = expectDriverError(
        await rejection(h.driver.ensureMachines(cluster, specs(wanted))),
        'ERR_CAPACITY',
        'platform',
      )
      expect(error.message).toContain(h.machineClass)
      expect(error.message).toContain(h.zone)
      const refs = await h.driver.ensureMachines(cluster, specs(wanted.slice(0, h.capacity)))
      expect(new Set(refs.map((r) => r.externalId)).size).toBe(h.capacity)
      expect(await free()).toBe(0)
    })

    it('allocates again after release, and release returns the capacity (rules 5, 6, 16)', async () => {
      const [machineName] = names(1)
      await h.driver.ensureMachines(cluster, [spec(machineName!)])
      expect(await free()).toBe(h.capacity - 1)
      await h.driver.releaseMachines(cluster, [machineName!])
      expect(await free()).toBe(h.capacity)
      const [again] = await h.driver.ensureMachines(cluster, [spec(machineName!)])
      expect(again!.name).toBe(machineName)
      expect(again!.externalId).toBeTruthy()
      expect(await free()).toBe(h.capacity - 1)
    })

    it('releaseMachines resolves for names it does not know (rule 6)', async () => {
      await expect(h.driver.releaseMachines(cluster, names(2, 'unknown'))).resolves.toBeUndefined()
      const [known] = names(1)
      await h.driver.ensureMachines(cluster, [spec(known!)])
      await expect(
        h.driver.releaseMachines(cluster, [known!, ...names(1, 'unknown')]),
      ).resolves.toBeUndefined()
      expect(await free()).toBe(h.capacity)
    })

    it('releaseMachines twice resolves (rule 6)', async () => {
      const wanted = names(2)
      await h.driver.ensureMachines(cluster, specs(wanted))
      await h.driver.releaseMachines(cluster, wanted)
      await expect(h.driver.releaseMachines(cluster, wanted)).resolves.toBeUndefined()
      await expect(another().releaseMachines(cluster, wanted)).resolves.toBeUndefined()
      expect(await free()).toBe(h.capacity)
    })

    it('bootstrap twice returns the same endpoint (rule 7)', async () => {
      const controlPlane = await h.driver.ensureMachines(
        cluster,
        names(1, 'cp').map((n) => spec(n, { role: 'control-plane' })),
      )
      const first = await h.driver.bootstrap(cluster, controlPlane)
      expect(first.server).toMatch(/^https:\/\//)
      expect(await h.driver.bootstrap(cluster, controlPlane)).toEqual(first)
      expect(await another().bootstrap(cluster, controlPlane)).toEqual(first)
    })

    it('joinMachines twice resolves (rule 8)', async () => {
      const [cp, worker] = await h.driver.ensureMachines(cluster, [
        spec(`${prefix}-cp0`, { role: 'control-plane' }),
        spec(`${prefix}-w0`),
      ])
      await h.driver.bootstrap(cluster, [cp!])
      await expect(h.driver.joinMachines(cluster, [worker!])).resolves.toBeUndefined()
      await expect(h.driver.joinMachines(cluster, [worker!])).resolves.toBeUndefined()
      await expect(another().joinMachines(cluster, [worker!])).resolves.toBeUndefined()
    })

    it('observe reports joined machines Healthy and unknown names Missing, without throwing (rule 9)', async () => {
      const [cp, worker] = await runningCluster()
      const unknown = `${prefix}-never-asked-for`
      const observed = await h.driver.observe(cluster, [cp.name, worker.name, unknown])
      expect(observed.controlPlaneReachable).toBe(true)
      expect(observed.backendReachable).toBe(true)
      expect(observed.machines.map((m) => [m.name, m.health])).toEqual([
        [cp.name, 'Healthy'],
        [worker.name, 'Healthy'],
        [unknown, 'Missing'],
      ])

      await h.driver.releaseMachines(cluster, [worker.name])
      const afterRelease = await another().observe(cluster, [worker.name])
      expect(afterRelease.machines.map((m) => m.health)).toEqual(['Missing'])
    })

    it('observe of a cluster it never saw reports data, not an exception (rule 9)', async () => {
      const stranger: ClusterRef = { id: `${prefix}-stranger`, name: 'stranger' }
      const wanted = names(2, 'ghost')
      const observed = await h.driver.observe(stranger, wanted)
      expect(observed.controlPlaneReachable).toBe(false)
      expect(observed.backendReachable).toBe(true)
      expect(observed.machines).toEqual(
        wanted.map((n) => expect.objectContaining({ name: n, health: 'Missing' })),
      )
      expect((await h.driver.observe(stranger, [])).machines).toEqual([])
    })

    it('a backend that does not answer: observe reports every machine Unknown, other calls ERR_UNAVAILABLE (rules 9, 11)', async () => {
      const [cp, worker] = await runningCluster()
      const wanted = [cp.name, worker.name]
      const end = await h.startOutage()
      try {
        for (const driver of [h.driver, another()]) {
          const observed = await driver.observe(cluster, wanted)
          // Silence is no evidence: nothing Unhealthy or Missing, and no verdict on the control plane.
          expect(observed.machines).toEqual(
            wanted.map((name) => ({
              name,
              health: 'Unknown',
              reason: expect.stringMatching(/^Unobservable: /),
            })),
          )
          expect(observed.backendReachable).toBe(false)
          expect(observed.unreachableReason).toEqual(expect.any(String))
          expect(observed.controlPlaneReachable).toBe(true)
        }
        expectDriverError(await rejection(h.driver.capabilities()), 'ERR_UNAVAILABLE', 'retryable')
        expectDriverError(
          await rejection(another().ensureMachines(cluster, [spec(`${prefix}-w1`)])),
          'ERR_UNAVAILABLE',
          'retryable',
        )
      } finally {
        await end()
      }
      const after = await h.driver.observe(cluster, wanted)
      expect(after.backendReachable).toBe(true)
      expect(after.machines.map((m) => m.health)).toEqual(['Healthy', 'Healthy'])
    })

    it('rejects an unknown machine class as a user error and allocates nothing (rule 17)', async () => {
      const error = await rejection(
        h.driver.ensureMachines(cluster, [spec(`${prefix}-x`, { machineClass: `${prefix}-no-such-class` })]),
      )
      expectDriverError(error, 'ERR_INVALID_REQUEST', 'user')
      expect(await free()).toBe(h.capacity)
    })
  })
}
