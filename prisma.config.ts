import { defineConfig } from 'prisma/config'

// One source of truth for the prisma CLI. The schema engine is the offline WebAssembly
// shim in prisma/engine (see README, "Prisma offline").
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: {
    url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/kiln',
    shadowDatabaseUrl: process.env.SHADOW_DATABASE_URL,
  },
})
