import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ironicUrl, testIronicConfig } from '../../../test/support/ironic.ts'
import { DriverError } from '../src/contract.ts'
import { ironicMicroversion } from '../src/ironic/client.ts'
import { IronicDriver } from '../src/ironic/ironic.ts'

// The client's auth and TLS against the real Ironic (noauth: it accepts any token) behind a recording
// proxy, and a stand-in Keystone over HTTPS (Keystone is the one part we cannot run here).

interface Seen {
  method: string
  url: string
  headers: http.IncomingHttpHeaders
  body: string
}

const listen = async (server: http.Server | https.Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

let dir: string
let caPem: string
let keystone: https.Server
let keystoneUrl: string
const keystoneSeen: Seen[] = []
let keystoneAnswer = 201
let proxy: http.Server
let proxyUrl: string
const ironicSeen: Seen[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kiln-tls-'))
  execFileSync('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-subj',
    '/CN=keystone.test',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-days',
    '1',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ])
  caPem = readFileSync(join(dir, 'cert.pem'), 'utf8')
  keystone = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: caPem }, (req, res) => {
    let body = ''
    req.on('data', (c) => {
      body += c
    })
    req.on('end', () => {
      keystoneSeen.push({ method: req.method!, url: req.url!, headers: req.headers, body })
      if (keystoneAnswer !== 201) {
        res.writeHead(keystoneAnswer, { 'Content-Type': 'application/json' })
        res.end(
          JSON.stringify({
            error: { code: keystoneAnswer, message: 'The request you have made requires authentication.' },
          }),
        )
        return
      }
      res.writeHead(201, { 'Content-Type': 'application/json', 'X-Subject-Token': 'gAAAA-test-token' })
      res.end(JSON.stringify({ token: { expires_at: new Date(Date.now() + 3600_000).toISOString() } }))
    })
  })
  keystoneUrl = `https://127.0.0.1:${await listen(keystone)}/v3`
  proxy = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => {
      body += c
    })
    req.on('end', () => {
      ironicSeen.push({ method: req.method!, url: req.url!, headers: req.headers, body })
      const upstream = http.request(
        new URL(req.url!, ironicUrl),
        { method: req.method, headers: { ...req.headers, host: new URL(ironicUrl).host } },
        (up) => {
          res.writeHead(up.statusCode!, up.headers)
          up.pipe(res)
        },
      )
      upstream.end(body)
    })
  })
  proxyUrl = `http://127.0.0.1:${await listen(proxy)}`
  process.env.KILN_TEST_KEYSTONE_PASSWORD = 's3cret'
})

afterAll(async () => {
  keystone?.close()
  proxy?.close()
  rmSync(dir, { recursive: true, force: true })
})

const keystoneAuth = {
  kind: 'keystone' as const,
  authUrl: '',
  username: 'kiln',
  password: { env: 'KILN_TEST_KEYSTONE_PASSWORD' },
  projectName: 'baremetal',
}

describe('Ironic client auth and TLS', () => {
  it('logs in to Keystone once, sends the token and the pinned microversion on every call', async () => {
    keystoneSeen.length = 0
    ironicSeen.length = 0
    const driver = new IronicDriver(
      'metal',
      testIronicConfig({ url: proxyUrl, auth: { ...keystoneAuth, authUrl: keystoneUrl }, tls: { caPem } }),
    )
    await driver.capabilities()
    await driver.capabilities()
    await driver.close()
    expect(keystoneSeen).toHaveLength(1)
    expect(keystoneSeen[0]!.url).toBe('/v3/auth/tokens')
    const login = JSON.parse(keystoneSeen[0]!.body)
    expect(login.auth.identity.password.user).toEqual({
      name: 'kiln',
      password: 's3cret',
      domain: { name: 'Default' },
    })
    expect(login.auth.scope.project.name).toBe('baremetal')
    expect(ironicSeen.length).toBeGreaterThanOrEqual(2)
    for (const seen of ironicSeen) {
      expect(seen.headers['x-auth-token']).toBe('gAAAA-test-token')
      expect(seen.headers['x-openstack-ironic-api-version']).toBe(ironicMicroversion)
    }
  })

  it('refuses a Keystone it cannot verify, without the CA', async () => {
    const driver = new IronicDriver(
      'metal',
      testIronicConfig({ url: proxyUrl, auth: { ...keystoneAuth, authUrl: keystoneUrl } }),
    )
    const error = await driver.capabilities().catch((e: unknown) => e)
    await driver.close()
    expect(error).toBeInstanceOf(DriverError)
    expect((error as DriverError).code).toBe('ERR_UNAVAILABLE')
    expect((error as DriverError).message).toMatch(/SELF_SIGNED|certificate/i)
  })

  it('names the user when Keystone refuses the login, and a missing secret by its reference', async () => {
    keystoneAnswer = 401
    try {
      const driver = new IronicDriver(
        'metal',
        testIronicConfig({ url: proxyUrl, auth: { ...keystoneAuth, authUrl: keystoneUrl }, tls: { caPem } }),
      )
      const refused = (await driver.capabilities().catch((e: unknown) => e)) as DriverError
      expect(refused.code).toBe('ERR_INVALID_REQUEST')
      expect(refused.message).toContain('kiln')
      await driver.close()
    } finally {
      keystoneAnswer = 201
    }
    const unset = new IronicDriver(
      'metal',
      testIronicConfig({
        url: proxyUrl,
        auth: { kind: 'token', token: { env: 'KILN_TEST_NO_SUCH_VARIABLE' } },
      }),
    )
    const missing = (await unset.capabilities().catch((e: unknown) => e)) as DriverError
    expect(missing.code).toBe('ERR_INVALID_REQUEST')
    expect(missing.message).toContain('KILN_TEST_NO_SUCH_VARIABLE')
    await unset.close()
  })
})
