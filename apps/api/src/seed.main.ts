import { createDatabase } from '@kiln/db'
import { createLogger } from '@kiln/telemetry'
import { loadApiConfig } from './config.ts'
import { seedDemo } from './seed.ts'

const config = loadApiConfig()
const logger = createLogger({ service: 'kiln-seed', level: config.logLevel })
const db = createDatabase({ url: config.databaseUrl })
try {
  await seedDemo(db)
  logger.info('seeded: backend sim, machine classes, Kubernetes versions, public templates, project demo')
} finally {
  await db.$disconnect()
}
