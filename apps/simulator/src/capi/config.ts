import { LogLevelSetting, parseSettings } from '@kiln/domain'
import Type from 'typebox'

const Env = Type.Object({
  KUBECONFIG: Type.String({ minLength: 1 }),
  /** Comma-separated namespaces; all when absent. */
  CAPI_NAMESPACES: Type.Optional(Type.String({ minLength: 1 })),
  CAPI_INTERVAL_MS: Type.Integer({ minimum: 10, default: 200 }),
  LOG_LEVEL: LogLevelSetting,
})

export interface StandInConfig {
  kubeconfig: string
  namespaces: string[] | undefined
  intervalMs: number
  logLevel: string
}

/** Parses the stand-in's environment once, at boot; refuses to start naming what is missing. */
export function loadStandInConfig(env: NodeJS.ProcessEnv = process.env): StandInConfig {
  const c = parseSettings(Env, env)
  return {
    // KUBECONFIG may list several files, as for kubectl; the stand-in reads the first.
    kubeconfig: c.KUBECONFIG.split(':')[0]!,
    namespaces: c.CAPI_NAMESPACES?.split(',')
      .map((n) => n.trim())
      .filter(Boolean),
    intervalMs: c.CAPI_INTERVAL_MS,
    logLevel: c.LOG_LEVEL,
  }
}
