import type { BackendKind } from '@kiln/domain'
import { CapiDriver } from './capi/capi.ts'
import type { Driver } from './contract.ts'
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

/** Every backend kind maps to a factory: adding a kind without a driver does not compile. */
export const driverRegistry: Record<BackendKind, DriverFactory> = {
  simulator: (backend, deps) =>
    new SimulatorDriver(backend.name, backend.config as SimulatorConfig, deps.databaseUrl),
  ironic: (backend) => new IronicDriver(backend.name, backend.config),
  capi: (backend) => new CapiDriver(backend.name, backend.config),
}

export function createDriver(backend: BackendRecord, deps: DriverDeps): Driver {
  return driverRegistry[backend.kind](backend, deps)
}
