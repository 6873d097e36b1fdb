import { createDatabase } from '@kiln/db'
import { loadApiConfig } from './config.ts'
import { seedDemo } from './seed.ts'

const config = loadApiConfig()
const db = createDatabase({ url: config.databaseUrl })
try {
  await seedDemo(db)
  console.log('seeded: backend sim, machine classes, Kubernetes versions, public templates, project demo')
} finally {
  await db.$disconnect()
}
