export * from './catalogue.ts'
export * from './producer.ts'
export * from './redis.ts'
export * from './step-runner.ts'
