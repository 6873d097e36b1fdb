import { parseSettings } from '@kiln/domain'
import Type from 'typebox'
import { userAccessToken } from './browser.ts'

// Prints an access token for the Kiln API from the development issuer, for the shell:
//   curl -H "Authorization: Bearer $(npm run -s token -w @kiln/issuer -- demo demo)" …
// It logs in as a browser would (authorization code + PKCE, public client kiln-cli), not with a
// password grant.

const Env = Type.Object({
  KILN_OIDC_ISSUER: Type.String({ pattern: '^https?://', default: 'http://127.0.0.1:8081' }),
  KILN_OIDC_AUDIENCE: Type.String({ minLength: 1, default: 'urn:kiln:api' }),
})
const env = parseSettings(Env, process.env)
const [username = 'demo', password = username] = process.argv.slice(2)
try {
  const { accessToken } = await userAccessToken({
    issuer: env.KILN_OIDC_ISSUER,
    audience: env.KILN_OIDC_AUDIENCE,
    username,
    password,
  })
  process.stdout.write(`${accessToken}\n`)
} catch (error) {
  console.error(
    `Could not get a token from ${env.KILN_OIDC_ISSUER}: ${error instanceof Error ? error.message : error}`,
  )
  process.exit(1)
}
