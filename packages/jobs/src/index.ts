export * from './catalogue.ts'
export * from './metrics.ts'
export * from './producer.ts'
export * from './step-runner.ts'
