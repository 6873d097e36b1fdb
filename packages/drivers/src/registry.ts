import type { BackendKind } from '@kiln/domain'
import { type Driver, DriverError } from './contract.ts'
import { IronicDriver } from './ironic/ironic.ts'
import { type SimulatorConfig, SimulatorDriver } from './simulator/simulator.ts'

export interface BackendRecord {
  name: string
  kind: BackendKind
  config: unknown
}

export interface DriverDeps {
  /** Where the simulator keeps its data centre (its own schema). */
  databaseUrl: string
}

export type DriverFactory = (backend: BackendRecord, deps: DriverDeps) => Driver

/** A kind whose driver is not in this build: every call fails as a user error naming it. */
const notInThisBuild =
  (kind: BackendKind, plannedIn: string): DriverFactory =>
  () => {
    const fail = async (): Promise<never> => {
      throw new DriverError(
        'ERR_NOT_SUPPORTED',
        `Backends of kind '${kind}' are not supported yet (${plannedIn}).`,
      )
    }
    return {
      kind,
      capabilities: fail,
      ensureMachines: fail,
      releaseMachines: fail,
      bootstrap: fail,
      joinMachines: fail,
      observe: fail,
      close: async () => {},
    }
  }

/** Every backend kind maps to a factory: adding a kind without a driver does not compile. */
export const driverRegistry: Record<BackendKind, DriverFactory> = {
  simulator: (backend, deps) =>
    new SimulatorDriver(backend.name, backend.config as SimulatorConfig, deps.databaseUrl),
  ironic: (backend) => new IronicDriver(backend.name, backend.config),
  capi: notInThisBuild('capi', 'the Cluster API driver'),
}

export function createDriver(backend: BackendRecord, deps: DriverDeps): Driver {
  return driverRegistry[backend.kind](backend, deps)
}
