export { loadSimulatorConfig, type SimulatorConfig } from './config.ts'
export { type ApiServer, type ApiServerOptions, defaultDomain, startApiServer } from './server.ts'
