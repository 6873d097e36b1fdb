import createFetchClient, { type Client, type ClientOptions } from 'openapi-fetch'
import type { components, paths } from './schema.d.ts'

export type { components, paths }
export type Schemas = components['schemas']
export type Cluster = Schemas['Cluster']
export type Operation = Schemas['Operation']
export type Problem = Schemas['Problem']
export type KilnClient = Client<paths>

/** A typed client for the Kiln API, generated from openapi/kiln.v1.yaml. */
export function createKilnClient(options: ClientOptions & { baseUrl: string }): KilnClient {
  return createFetchClient<paths>(options)
}
