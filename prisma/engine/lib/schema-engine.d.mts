// Types for the parts of schema-engine.mjs that apps/api/src/migrate.ts uses.
export interface MigrationsList {
  baseDir: string
  lockfile: { path: string; content: string | null }
  migrationDirectories: { path: string }[]
  shadowDbInitScript: string
}
export interface SchemaEngine {
  applyMigrations(input: {
    migrationsList: MigrationsList
    filters: { externalTables: string[]; externalEnums: string[] }
  }): Promise<{ appliedMigrationNames: string[] }>
  free(): void
}
export function loadSchemaEngine(): Promise<{ version: string; wasmPath: string }>
export function openEngine(options: {
  schemaFiles: [string, string][]
  datasource: { url: string; shadowDatabaseUrl?: string }
  log?: (line: string) => void
}): Promise<{ engine: SchemaEngine; adapterFactory: unknown }>
export function readMigrationsList(baseDir: string, shadowDbInitScript?: string): Promise<MigrationsList>
export function ensureDatabaseExists(url: string): Promise<string | undefined>
export function describeEngineError(
  error: unknown,
  adapterFactory?: unknown,
): { errorCode: string | undefined; message: string; meta: unknown; isPanic: boolean }
