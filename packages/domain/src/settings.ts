import Type from 'typebox'
import Value from 'typebox/value'

/**
 * Parses settings (an environment) against a schema once, at boot: defaults applied, strings
 * converted, and every missing or invalid variable named in one error.
 */
export function parseSettings<T extends Type.TSchema>(
  schema: T,
  env: Record<string, string | undefined>,
): Type.Static<T> {
  const raw = Value.Convert(schema, Value.Default(schema, { ...env }))
  if (!Value.Check(schema, raw)) {
    const problems = [...Value.Errors(schema, raw)].map((e) => `${e.instancePath || '/'}: ${e.message}`)
    throw new Error(`Invalid configuration:\n  ${problems.join('\n  ')}`)
  }
  return raw as Type.Static<T>
}

/** `LOG_LEVEL`, which every Kiln process reads (default info). */
export const LogLevelSetting = Type.Union(
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
  { default: 'info' },
)
