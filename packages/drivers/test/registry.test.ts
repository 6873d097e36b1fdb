import { allBackendKinds } from '@kiln/domain'
import { describe, expect, it } from 'vitest'
import { CapiDriver } from '../src/capi/capi.ts'
import { DriverError } from '../src/contract.ts'
import { IronicDriver } from '../src/ironic/ironic.ts'
import { createDriver, driverRegistry } from '../src/registry.ts'
import { SimulatorDriver } from '../src/simulator/simulator.ts'

const deps = { databaseUrl: 'postgresql://postgres@127.0.0.1:5432/unused' }
const ironicConfig = {
  url: 'http://127.0.0.1:6385',
  images: { default: { source: 'http://images/k8s.qcow2', checksum: 'abc' } },
  controlPlaneEndpoint: { server: 'https://{clusterId}.k8s.example.org:6443' },
}

describe('driver registry', () => {
  it('has a factory for every backend kind, and each driver reports its kind', async () => {
    expect(Object.keys(driverRegistry).sort()).toEqual([...allBackendKinds].sort())
    for (const kind of allBackendKinds) {
      const driver = createDriver(
        {
          name: `registry-${kind}`,
          kind,
          config: kind === 'ironic' ? ironicConfig : { zones: [], racksPerZone: 0, machineClasses: [] },
        },
        deps,
      )
      expect(driver.kind).toBe(kind)
      await driver.close()
    }
  })

  it('builds the simulator from the backend record', async () => {
    const driver = createDriver(
      { name: 'dc1', kind: 'simulator', config: { zones: ['zone-a'], racksPerZone: 1, machineClasses: [] } },
      deps,
    )
    expect(driver).toBeInstanceOf(SimulatorDriver)
    expect((driver as SimulatorDriver).backend).toBe('dc1')
    await driver.close()
  })

  it('builds the Cluster API driver; a config it cannot use fails every call as a user error naming the field', async () => {
    const driver = createDriver({ name: 'clouds', kind: 'capi', config: { namespace: 'kiln' } }, deps)
    expect(driver).toBeInstanceOf(CapiDriver)
    const cluster = { id: 'c', name: 'c' }
    for (const call of [
      () => driver.capabilities(),
      () => driver.releaseMachines(cluster, ['m']),
      () => driver.bootstrap(cluster, [{ name: 'm', externalId: 'x', zone: 'z', machineClass: 'c' }]),
      () => driver.observe(cluster, ['m']),
    ]) {
      const error = await call().catch((e: unknown) => e)
      expect(error).toBeInstanceOf(DriverError)
      expect((error as DriverError).code).toBe('ERR_INVALID_REQUEST')
      expect((error as DriverError).errorClass).toBe('user')
      expect((error as DriverError).message).toContain('config.kubeconfig')
    }
    await expect(driver.close()).resolves.toBeUndefined()
  })

  it('builds the Ironic driver, and refuses a config it cannot use, naming the field', () => {
    const config = ironicConfig
    const driver = createDriver({ name: 'metal', kind: 'ironic', config }, deps)
    expect(driver).toBeInstanceOf(IronicDriver)
    for (const [broken, field] of [
      [{ ...config, url: 'ftp://x' }, 'config.url'],
      [
        { ...config, images: { default: { source: 'http://images/x.qcow2' } } },
        'config.images.default.checksum',
      ],
      [{ ...config, controlPlaneEndpoint: { server: 'http://plain' } }, 'config.controlPlaneEndpoint.server'],
    ] as const) {
      let error: unknown
      try {
        createDriver({ name: 'metal', kind: 'ironic', config: broken }, deps)
      } catch (e) {
        error = e
      }
      expect(error).toBeInstanceOf(DriverError)
      expect((error as DriverError).code).toBe('ERR_INVALID_REQUEST')
      expect((error as DriverError).message).toContain(field)
    }
  })
})
