import { readFileSync } from 'node:fs'
import { schemaViolations } from '@kiln/domain'
import Type, { type Static, type TSchema } from 'typebox'
import { DriverError } from './contract.ts'

// Secrets are named, never stored: a backend's config lives in the database, so it holds the name of
// an environment variable or a file (a mounted Kubernetes or Docker secret) instead of the value.
export const SecretReferenceSchema = Type.Union(
  [
    Type.Object(
      {
        env: Type.String({
          minLength: 1,
          description: 'An environment variable of the worker holding the secret.',
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        file: Type.String({
          minLength: 1,
          description: 'A file holding the secret; read on every use, so a rotated file is picked up.',
        }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: '{"env": NAME} or {"file": PATH}: where the worker reads the secret' },
)
export type SecretReference = Type.Static<typeof SecretReferenceSchema>

/** The secret's value, read now; a missing one is a configuration error naming where it was looked for. */
export function readSecret(reference: SecretReference, what: string): string {
  let value: string | undefined
  try {
    value = 'file' in reference ? readFileSync(reference.file, 'utf8').trim() : process.env[reference.env]
  } catch {
    value = undefined
  }
  if (!value) {
    const where =
      'file' in reference ? `the file ${reference.file}` : `the environment variable ${reference.env}`
    throw new DriverError('ERR_INVALID_REQUEST', `The ${what} is not set: give ${where} a value.`)
  }
  return value
}

/** Refuses a config the driver cannot work with, naming the field, before any call is made. */
export function checkBackendConfig<S extends TSchema>(
  schema: S,
  backend: string,
  config: unknown,
): Static<S> {
  const violations = schemaViolations(schema, config)
  if (violations.length > 0) {
    const named = violations.map((v) => `config${v.pointer.replaceAll('/', '.')} ${v.message}`).join('; ')
    throw new DriverError('ERR_INVALID_REQUEST', `The ${backend} backend's ${named}.`)
  }
  return config as Static<S>
}
