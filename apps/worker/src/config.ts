import Type from 'typebox'
import Value from 'typebox/value'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1 }),
  REDIS_URL: Type.String({ minLength: 1 }),
})

export interface WorkerConfig {
  databaseUrl: string
  redisUrl: string
}

/** Parses the environment once, at boot; refuses to start naming what is missing. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const raw = { DATABASE_URL: env.DATABASE_URL, REDIS_URL: env.REDIS_URL }
  if (!Value.Check(Env, raw)) {
    const problems = [...Value.Errors(Env, raw)].map((e) => `${e.instancePath || '/'}: ${e.message}`)
    throw new Error(`Invalid configuration:\n  ${problems.join('\n  ')}`)
  }
  return { databaseUrl: raw.DATABASE_URL as string, redisUrl: raw.REDIS_URL as string }
}
