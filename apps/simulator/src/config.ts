import { LogLevelSetting, parseSettings } from '@kiln/domain'
import Type from 'typebox'
import { defaultDomain } from './server.ts'

const Env = Type.Object({
  DATABASE_URL: Type.String({ minLength: 1 }),
  /** Base64 of 32 bytes: opens each cluster's sealed CA key, as the worker's. */
  KILN_MASTER_KEY: Type.Optional(Type.String({ minLength: 1 })),
  /** Comma-separated base64 master keys, newest first: the first seals, any opens (rotation). */
  KILN_MASTER_KEYS: Type.Optional(Type.String({ minLength: 1 })),
  KILN_DEV_MODE: Type.Boolean({ default: false }),
  SIMULATOR_API_HOST: Type.String({ minLength: 1, default: '127.0.0.1' }),
  SIMULATOR_API_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 6443 }),
  SIMULATOR_API_DOMAIN: Type.String({ minLength: 1, default: defaultDomain }),
  LOG_LEVEL: LogLevelSetting,
})

export interface SimulatorConfig {
  databaseUrl: string
  /** Base64 of 32 bytes; resolved with masterKeyringFromSettings at boot. */
  masterKey: string | undefined
  masterKeys: string | undefined
  devMode: boolean
  host: string
  port: number
  domain: string
  logLevel: string
}

/** Parses the environment once, at boot; refuses to start naming what is missing. */
export function loadSimulatorConfig(env: NodeJS.ProcessEnv = process.env): SimulatorConfig {
  const c = parseSettings(Env, env)
  return {
    databaseUrl: c.DATABASE_URL,
    masterKey: c.KILN_MASTER_KEY,
    masterKeys: c.KILN_MASTER_KEYS,
    devMode: c.KILN_DEV_MODE,
    host: c.SIMULATOR_API_HOST,
    port: c.SIMULATOR_API_PORT,
    domain: c.SIMULATOR_API_DOMAIN.toLowerCase(),
    logLevel: c.LOG_LEVEL,
  }
}
