import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type OidcApi, startOidcApi } from '../../../test/support/oidc.ts'
import { Browser, type Landing, loginFormAction, type RunningIssuer, signIn } from '../../issuer/src/index.ts'
import { buildCli, runCli } from './support.ts'

// `kiln login --oidc` over real HTTP: the API requiring credentials, the issuer (oidc-provider) with
// its public `kiln-cli` client, the built CLI waiting on its loopback port, and a headless browser
// that opens the printed URL and signs in as the demo user.

let oidcApi: OidcApi
let issuer: RunningIssuer
let apiUrl: string
let dir: string
let bundle: string

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-cli-oidc-'))
  bundle = await buildCli(dir)
  oidcApi = await startOidcApi({
    tag: 'cli',
    authentication: 'required',
    settings: (defaults) => ({
      ...defaults,
      scopes: ['openid', 'profile', 'email', 'groups'],
      cliClientId: 'kiln-cli',
    }),
  })
  ;({ issuer, apiUrl } = oidcApi)
  const project = await oidcApi.db.project.create({ data: { name: 'team-a', displayName: 'team-a' } })
  await oidcApi.db.projectMember.create({
    data: {
      projectId: project.id,
      kind: 'group',
      name: 'kiln:demo-admins',
      role: 'admin',
      createdBy: 'test',
    },
  })
})

afterAll(async () => {
  await oidcApi?.close()
  await rm(dir, { recursive: true, force: true })
})

const env = () => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: join(dir, 'home') })

/** Submits a page's form (the one with this id, else the first) with its inputs' values, as a browser would. */
async function submitForm(browser: Browser, page: Landing, id?: string): Promise<Landing> {
  const forms = [...(page.body ?? '').matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/g)]
  const form = forms.find((f) => id === undefined || f[1]!.includes(`id="${id}"`))
  const action = form && /action="([^"]*)"/.exec(form[1]!)?.[1]
  if (!form || action === undefined) throw new Error(`No form ${id ?? ''} on ${page.url}: ${page.body}`)
  const fields = new URLSearchParams()
  for (const input of form[2]!.matchAll(/<input\b[^>]*>/g)) {
    const name = /name="([^"]*)"/.exec(input[0])?.[1]
    if (name) fields.set(name, /value="([^"]*)"/.exec(input[0])?.[1] ?? '')
  }
  return browser.navigate(new URL(action, page.url), { form: fields })
}

describe('kiln login --oidc', () => {
  it('signs in through the browser flow, saves the token, and later commands use it', async () => {
    const child = spawn(
      'node',
      [bundle, 'login', '--url', apiUrl, '--oidc', '--no-browser', '--project', 'team-a'],
      {
        env: env(),
      },
    )
    let stderr = ''
    let stdout = ''
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
    })
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
    const authorizeUrl = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString()
        const m = /sign in:\n\s+(\S+)/.exec(stderr)
        if (m) resolve(m[1]!)
      })
      child.on('exit', () => reject(new Error(`kiln login exited first: ${stderr}`)))
    })
    const authorize = new URL(authorizeUrl)
    expect(authorize.origin + authorize.pathname).toMatch(new RegExp(`^${issuer.issuer}`))
    expect(authorize.searchParams.get('client_id')).toBe('kiln-cli')
    expect(authorize.searchParams.get('code_challenge_method')).toBe('S256')
    const redirectUri = authorize.searchParams.get('redirect_uri')!
    expect(redirectUri).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/kiln-cli\/callback$/)

    // The person's browser: sign in, and follow the issuer's redirect to the CLI's loopback port.
    const browser = new Browser()
    const landing = await signIn(browser, authorize, { username: 'demo', password: 'demo' }, (target) =>
      target.toString().startsWith(redirectUri),
    )
    const callback = await browser.request(landing.url)
    expect(callback.status).toBe(200)
    expect(await callback.text()).toContain('Logged in to Kiln')

    expect(await exited, stderr).toBe(0)
    expect(stderr).toMatch(/Logged in to .* as user:demo until /)
    expect(JSON.parse(stdout)).toMatchObject({ context: 'default', subject: 'user:demo', project: 'team-a' })
    const saved = JSON.parse(await readFile(join(dir, 'home', '.config', 'kiln', 'config.json'), 'utf8'))
    expect(saved.contexts.default.token.split('.')).toHaveLength(3)

    const listed = await runCli(bundle, ['cluster', 'list', '-o', 'json'], env())
    expect(listed.code, listed.stderr).toBe(0)
    expect(JSON.parse(listed.stdout)).toEqual([])
  })

  it('signs in with the device flow: a URL and a code, confirmed and signed in on another device', async () => {
    const child = spawn(
      'node',
      [bundle, 'login', '--url', apiUrl, '--oidc', '--device', '--project', 'team-a', '--context', 'ssh'],
      { env: env() },
    )
    let stderr = ''
    let stdout = ''
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString()
    })
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
    const shown = await new Promise<{ uri: string; code: string; complete: string }>((resolve, reject) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString()
        const m = /open (\S+) and enter the code (\S+)\n\s+\(or open (\S+)\)/.exec(stderr)
        if (m) resolve({ uri: m[1]!, code: m[2]!, complete: m[3]! })
      })
      child.on('exit', () => reject(new Error(`kiln login exited first: ${stderr}`)))
    })
    expect(shown.uri).toBe(`${issuer.issuer}/device`)
    expect(new URL(shown.complete).searchParams.get('user_code')).toBe(shown.code)

    // The other device (a phone, a laptop): the code is filled in, confirmed, then the usual sign-in.
    const browser = new Browser()
    // The complete URL's page submits the code by itself (a script; here, the form it submits).
    const entered = await submitForm(browser, await browser.navigate(shown.complete))
    expect(entered.body).toContain(shown.code)
    const confirmed = await submitForm(browser, entered, 'op.deviceConfirmForm')
    const action = loginFormAction(confirmed)
    expect(action, confirmed.body).toBeDefined()
    const done = await browser.navigate(action!, {
      form: new URLSearchParams({ username: 'demo', password: 'demo' }),
    })
    expect(done.body).toContain('Signed in')

    expect(await exited, stderr).toBe(0)
    expect(JSON.parse(stdout)).toMatchObject({ context: 'ssh', subject: 'user:demo', project: 'team-a' })
    const listed = await runCli(bundle, ['cluster', 'list', '--context', 'ssh', '-o', 'json'], env())
    expect(listed.code, listed.stderr).toBe(0)
  })

  it('takes --device only with --oidc (exit 2)', async () => {
    const misuse = await runCli(bundle, ['login', '--url', apiUrl, '--device'], env())
    expect(misuse.code).toBe(2)
    expect(misuse.stderr).toContain('--device goes with --oidc')
  })

  it('fails with exit 4 when the person cancels at the issuer', async () => {
    const child = spawn('node', [bundle, 'login', '--url', apiUrl, '--oidc', '--no-browser'], { env: env() })
    let stderr = ''
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)))
    const authorizeUrl = await new Promise<string>((resolve) => {
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString()
        const m = /sign in:\n\s+(\S+)/.exec(stderr)
        if (m) resolve(m[1]!)
      })
    })
    const redirectUri = new URL(authorizeUrl).searchParams.get('redirect_uri')!
    const state = new URL(authorizeUrl).searchParams.get('state')!
    // What the issuer sends back when the person denies access.
    const denied = await fetch(`${redirectUri}?error=access_denied&error_description=denied&state=${state}`)
    expect(denied.status).toBe(400)
    expect(await exited).toBe(4)
    expect(stderr).toContain('access_denied')
  })

  it('exits 1 naming the URL when Kiln cannot be reached; Kiln says how the CLI logs in', async () => {
    const unreachable = await runCli(bundle, ['login', '--url', 'http://127.0.0.1:1', '--oidc'], env())
    expect(unreachable.code).toBe(1)
    expect(unreachable.stderr).toContain('Cannot reach the Kiln API at http://127.0.0.1:1')
    const res = await fetch(`${apiUrl}/v1/auth/cli`)
    expect(res.status).toBe(200)
    expect(await res.json()).toEqual({
      issuer: issuer.issuer,
      clientId: 'kiln-cli',
      audience: 'urn:kiln:api',
      scopes: ['openid', 'profile', 'email', 'groups'],
    })
  })
})
