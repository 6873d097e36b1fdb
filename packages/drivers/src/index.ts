export * from './contract.ts'
export * from './registry.ts'
export * from './simulator/simulator.ts'
