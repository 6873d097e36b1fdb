import { execFile, execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  type ClusterBody,
  clusterUrl,
  conditionOf,
  createCluster,
  getCluster,
  sleep,
  waitForOperation,
} from '../../worker/test/support.ts'

// CSR signing and the two-phase cluster CA rotation, end to end: Kiln's API signs and rotates, the
// worker runs the rotation operations, the simulated API server (default settings) follows the
// cluster's CAs, and the real kubectl is the client.
const run = promisify(execFile)
let stack: TestStack
let dir: string

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  // Its clusters answer on the stack's simulated API server.
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
  dir = await mkdtemp(join(tmpdir(), 'kiln-ca-rotation-'))
}, 60_000)

afterAll(async () => {
  await stack?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

interface Problem {
  type: string
  status: number
  detail: string
  errors?: { pointer: string; in: string; message: string }[]
}

interface Authority {
  purpose: string
  certificatePem: string
  generation: number
  state: 'current' | 'previous'
  fingerprintSha256: string
}

async function readyCluster(name: string): Promise<ClusterBody> {
  const op = await waitForOperation(
    stack.app,
    (await createCluster(stack.app, { name, template: 'k8s-1.31' })).id,
  )
  expect(op.status, JSON.stringify(op.steps)).toBe('succeeded')
  return getCluster(stack.app, name)
}

const post = (url: string, payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
  stack.app.inject({ method: 'POST', url, payload, headers })

async function clusterCas(cluster: string): Promise<Authority[]> {
  const res = await stack.app.inject({ url: `${clusterUrl(cluster)}/ca` })
  expect(res.statusCode, res.body).toBe(200)
  return res.json<{ items: Authority[] }>().items.filter((i) => i.purpose === 'cluster-ca')
}

/** A PEM CSR and its key, made by OpenSSL as a user would. */
function opensslCsr(keyAlgorithm: string[], subject: string): { csrPem: string; keyPem: string } {
  const keyFile = join(dir, `key-${Math.random().toString(36).slice(2)}.pem`)
  const csrPem = execFileSync(
    'openssl',
    ['req', '-new', ...keyAlgorithm, '-nodes', '-keyout', keyFile, '-subj', subject],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  )
  return { csrPem, keyPem: readFileSync(keyFile, 'utf8') }
}

async function issueKubeconfig(cluster: string, name: string): Promise<string> {
  const res = await post(`${clusterUrl(cluster)}/kubeconfig`, { ttlSeconds: 3600 })
  expect(res.statusCode, res.body).toBe(201)
  const file = join(dir, `${name}.yaml`)
  await writeFile(file, res.json<{ kubeconfig: string }>().kubeconfig, { mode: 0o600 })
  return file
}

/** What a kubeconfig carries: the CAs it trusts and its client certificate. */
function kubeconfigParts(yaml: string) {
  const config = parse(yaml) as {
    clusters: { cluster: { 'certificate-authority-data': string } }[]
    users: { user: { 'client-certificate-data': string; 'client-key-data': string } }[]
  }
  const decode = (b64: string) => Buffer.from(b64, 'base64').toString('utf8')
  return {
    caPems: decode(config.clusters[0]!.cluster['certificate-authority-data']).match(
      /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g,
    )!,
    certPem: decode(config.users[0]!.user['client-certificate-data']),
    keyPem: decode(config.users[0]!.user['client-key-data']),
  }
}

const signedBy = (certPem: string, caPem: string) => {
  const cert = new X509Certificate(certPem)
  const ca = new X509Certificate(caPem)
  return cert.checkIssued(ca) && cert.verify(ca.publicKey)
}

/** `kubectl get nodes -o name`: the node names, or the failure (exit code and stderr). */
async function kubectlNodes(
  args: string[],
): Promise<{ ok: true; nodes: string[] } | { ok: false; stderr: string }> {
  try {
    const { stdout } = await run('kubectl', [...args, 'get', 'nodes', '-o', 'name'], {
      timeout: 30_000,
      env: { ...process.env, KUBECONFIG: join(dir, 'none') },
    })
    return { ok: true, nodes: stdout.trim().split('\n').sort() }
  } catch (error) {
    return { ok: false, stderr: String((error as { stderr?: string }).stderr ?? error) }
  }
}

async function machineNodes(clusterId: string) {
  const machines = await stack.db.machine.findMany({ where: { clusterId }, select: { name: true } })
  return machines.map((m) => `node/${m.name}`).sort()
}

/** The serving certificate the simulated API server presents for a cluster now. */
function servingCertificate(serverName: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port: stack.apiServer.port,
      servername: serverName,
      rejectUnauthorized: false,
    })
    socket.once('secureConnect', () => {
      const cert = socket.getPeerX509Certificate()
      socket.end()
      if (cert) resolve(cert)
      else reject(new Error('no serving certificate'))
    })
    socket.once('error', reject)
  })
}

async function rotate(cluster: string, phase: 'start' | 'complete') {
  const res = await post(`${clusterUrl(cluster)}/rotate-ca`, { phase })
  expect(res.statusCode, res.body).toBe(202)
  const op = res.json<{ id: string; kind: string }>()
  expect(res.headers.location).toBe(`/v1/operations/${op.id}`)
  expect(op.kind).toBe(`cluster.rotate-ca-${phase}`)
  return waitForOperation(stack.app, op.id)
}

describe('POST …/clusters/{cluster}/csr', () => {
  let cluster: ClusterBody
  beforeAll(async () => {
    cluster = await readyCluster('signer')
  }, 60_000)

  it.each([
    ['RSA 2048', ['-newkey', 'rsa:2048']],
    ['ECDSA P-256', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
  ])(
    'signs an OpenSSL %s CSR; the certificate chains to the cluster CA and real kubectl uses it',
    async (name, keyAlgorithm) => {
      const { csrPem, keyPem } = opensslCsr(keyAlgorithm, '/O=system:masters/CN=ci-bot@example.com')
      const res = await post(`${clusterUrl('signer')}/csr`, { csrPem, ttlSeconds: 1800 })
      expect(res.statusCode, res.body).toBe(201)
      const body = res.json<{
        certificatePem: string
        caPem: string
        username: string
        groups: string[]
        notAfter: string
        serialNumber: string
      }>()
      expect(body).toMatchObject({ username: 'ci-bot@example.com', groups: ['system:masters'] })
      const [ca] = await clusterCas('signer')
      expect(body.caPem.trim()).toBe(ca!.certificatePem.trim())
      expect(signedBy(body.certificatePem, ca!.certificatePem)).toBe(true)
      const cert = new X509Certificate(body.certificatePem)
      expect(cert.serialNumber.toLowerCase()).toBe(body.serialNumber)
      expect(Date.parse(cert.validTo)).toBe(Date.parse(body.notAfter))
      expect(Date.parse(body.notAfter) - Date.now()).toBeLessThanOrEqual(1800_000)
      expect(Date.parse(body.notAfter) - Date.now()).toBeGreaterThan(1700_000)

      const files = {
        ca: join(dir, `${name}-ca.pem`),
        cert: join(dir, `${name}.crt`),
        key: join(dir, `${name}.key`),
      }
      await writeFile(files.ca, body.caPem)
      await writeFile(files.cert, body.certificatePem)
      await writeFile(files.key, keyPem, { mode: 0o600 })
      const result = await kubectlNodes([
        `--server=https://127.0.0.1:${stack.apiServer.port}`,
        `--tls-server-name=${stack.apiServer.serverNameOf(cluster.id)}`,
        `--certificate-authority=${files.ca}`,
        `--client-certificate=${files.cert}`,
        `--client-key=${files.key}`,
      ])
      expect(result).toEqual({ ok: true, nodes: await machineNodes(cluster.id) })

      const audit = await stack.db.auditEvent.findMany({
        where: { action: 'credential.csr.sign', targetId: cluster.id },
      })
      const row = audit.find((a) => (a.data as { serial?: string }).serial === body.serialNumber)
      expect(row?.data).toMatchObject({
        username: 'ci-bot@example.com',
        groups: ['system:masters'],
        caGeneration: 1,
      })
      expect(row?.actor).toBe('user:local-operator')
    },
  )

  it('refuses groups the caller’s role does not grant, naming /csrPem and the group', async () => {
    // The local operator's role grants system:masters only (what the kubeconfig route gives it), so
    // a CSR asking for another group breaks the subset rule. A non-admin asking for
    // system:masters is the same rule, tested in packages/pki/test/cluster-authority.test.ts.
    const { csrPem } = opensslCsr(
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      '/O=system:masters/O=cluster-admins/CN=eve',
    )
    const res = await post(`${clusterUrl('signer')}/csr`, { csrPem })
    expect(res.statusCode, res.body).toBe(422)
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/)
    const problem = res.json<Problem>()
    expect(problem.errors).toEqual([
      { pointer: '/csrPem', in: 'body', message: expect.stringMatching(/not allowed: cluster-admins\.$/) },
    ])
  })

  it.each([
    ['garbage', 'not a csr'],
    ['a certificate instead of a CSR', 'CERTIFICATE'],
    ['a CSR whose signature does not verify', 'TAMPERED'],
    ['an Ed25519 key', 'ED25519'],
    ['a 1024-bit RSA key', 'RSA1024'],
  ])('answers 422 at /csrPem for %s', async (_what, kind) => {
    let csrPem = kind
    if (kind === 'CERTIFICATE') csrPem = (await clusterCas('signer'))[0]!.certificatePem
    if (kind === 'TAMPERED') {
      const good = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=bob').csrPem
      const der = Buffer.from(good.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')
      der[der.length - 1]! ^= 0x01
      csrPem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`
    }
    if (kind === 'ED25519') csrPem = opensslCsr(['-newkey', 'ed25519'], '/CN=bob').csrPem
    if (kind === 'RSA1024') csrPem = opensslCsr(['-newkey', 'rsa:1024'], '/CN=bob').csrPem
    const res = await post(`${clusterUrl('signer')}/csr`, { csrPem })
    expect(res.statusCode, res.body).toBe(422)
    expect(res.json<Problem>().errors?.map((e) => e.pointer)).toEqual(['/csrPem'])
  })

  it('shares the kubeconfig route’s refusals: no Idempotency-Key, at most 7 days, 409 before the CA exists', async () => {
    const { csrPem } = opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], '/CN=bob')
    const replay = await post(`${clusterUrl('signer')}/csr`, { csrPem }, { 'idempotency-key': 'k-1' })
    expect(replay.statusCode).toBe(400)
    expect(replay.json<Problem>().errors?.[0]?.pointer).toBe('/Idempotency-Key')
    expect(await stack.db.idempotencyRecord.count()).toBe(0)
    expect(
      (await post(`${clusterUrl('signer')}/csr`, { csrPem, ttlSeconds: 8 * 24 * 3600 })).statusCode,
    ).toBe(400)

    await stack.stopEngine()
    try {
      await createCluster(stack.app, { name: 'unsigned', template: 'k8s-1.31' })
      const early = await post(`${clusterUrl('unsigned')}/csr`, { csrPem })
      expect(early.statusCode, early.body).toBe(409)
      expect((await post(`${clusterUrl('unsigned')}/rotate-ca`, { phase: 'start' })).statusCode).toBe(409)
    } finally {
      await stack.startEngine()
    }
  })
})

describe('two-phase cluster CA rotation', () => {
  it('keeps old credentials working until complete, then only new ones work', async () => {
    const cluster = await readyCluster('rotating')
    const nodes = await machineNodes(cluster.id)
    const serverName = stack.apiServer.serverNameOf(cluster.id)
    const complete409 = await post(`${clusterUrl('rotating')}/rotate-ca`, { phase: 'complete' })
    expect(complete409.statusCode, complete409.body).toBe(409)
    expect(complete409.json<Problem>().detail).toMatch(/No CA rotation is in progress/)

    // Kubeconfig A, before the rotation: one CA, generation 1.
    const [generation1] = await clusterCas('rotating')
    expect(generation1).toMatchObject({ generation: 1, state: 'current' })
    const fileA = await issueKubeconfig('rotating', 'a')
    const a = kubeconfigParts(readFileSync(fileA, 'utf8'))
    expect(a.caPems).toHaveLength(1)
    expect(await kubectlNodes(['--kubeconfig', fileA])).toEqual({ ok: true, nodes })

    // Start: generation 2 is trusted beside 1 and signs everything new.
    const start = await rotate('rotating', 'start')
    expect(start.status, JSON.stringify(start.steps)).toBe('succeeded')
    expect(start.steps.map((s) => [s.name, s.status])).toEqual([
      ['issue-next-ca', 'succeeded'],
      ['distribute-ca-bundle', 'succeeded'],
    ])
    expect(start.steps[1]!.message).toMatch(/generations 1, 2/)
    const during = await getCluster(stack.app, 'rotating')
    expect(conditionOf(during, 'CertificateAuthorityRotating')).toMatchObject({
      status: 'True',
      reason: 'NewCertificateAuthorityTrusted',
    })
    expect(during.status.phase).toBe('Ready')
    expect(during.activeOperationId).toBeNull()
    const cas = await clusterCas('rotating')
    expect(cas.map((c) => [c.generation, c.state])).toEqual([
      [1, 'previous'],
      [2, 'current'],
    ])
    const generation2 = cas[1]!
    expect(generation2.certificatePem).not.toBe(generation1!.certificatePem)

    const again = await post(`${clusterUrl('rotating')}/rotate-ca`, { phase: 'start' })
    expect(again.statusCode, again.body).toBe(409)
    expect(again.json<Problem>().detail).toMatch(/already in progress/)

    // The serving certificate stays on generation 1, so A (which trusts only 1) still verifies it.
    await sleep(1200)
    expect(signedBy((await servingCertificate(serverName)).toString(), generation1!.certificatePem)).toBe(
      true,
    )
    expect(await kubectlNodes(['--kubeconfig', fileA])).toEqual({ ok: true, nodes })

    // Kubeconfig B, after start: signed by generation 2, trusting both.
    const fileB = await issueKubeconfig('rotating', 'b')
    const b = kubeconfigParts(readFileSync(fileB, 'utf8'))
    expect(b.caPems.map((p) => p.trim())).toEqual([
      generation1!.certificatePem.trim(),
      generation2.certificatePem.trim(),
    ])
    expect(signedBy(b.certPem, generation2.certificatePem)).toBe(true)
    expect(signedBy(b.certPem, generation1!.certificatePem)).toBe(false)
    expect(await kubectlNodes(['--kubeconfig', fileB])).toEqual({ ok: true, nodes })
    // A CSR signed now comes from generation 2 too.
    const { csrPem } = opensslCsr(
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      '/O=system:masters/CN=ci',
    )
    const signed = await post(`${clusterUrl('rotating')}/csr`, { csrPem })
    expect(signed.statusCode, signed.body).toBe(201)
    expect(
      signedBy(signed.json<{ certificatePem: string }>().certificatePem, generation2.certificatePem),
    ).toBe(true)
    expect(signed.json<{ caPem: string }>().caPem.match(/BEGIN CERTIFICATE/g)).toHaveLength(2)

    // A long-lived connection authenticated with A's certificate (kubectl's connections are short),
    // opened during the rotation and kept across its completion.
    const agentA = new https.Agent({
      keepAlive: true,
      maxSockets: 1,
      ca: a.caPems,
      cert: a.certPem,
      key: a.keyPem,
      servername: serverName,
    })
    expect(await requestVia(agentA, serverName)).toEqual({ status: 200, reused: false })

    // Complete: generation 1 and its key are gone.
    const complete = await rotate('rotating', 'complete')
    expect(complete.status, JSON.stringify(complete.steps)).toBe('succeeded')
    expect(complete.steps.map((s) => s.name)).toEqual(['retire-previous-ca', 'distribute-ca-bundle'])
    expect(complete.steps[0]!.message).toMatch(/generation 1 destroyed/)
    const completedAt = Date.now()
    expect(await clusterCas('rotating')).toEqual([
      expect.objectContaining({ generation: 2, state: 'current' }),
    ])
    expect(
      await stack.db.clusterSecret.findMany({
        where: { clusterId: cluster.id, purpose: 'cluster-ca' },
        select: { generation: true },
      }),
    ).toEqual([{ generation: 2 }])
    const after = await getCluster(stack.app, 'rotating')
    expect(conditionOf(after, 'CertificateAuthorityRotating')).toMatchObject({
      status: 'False',
      reason: 'RotationCompleted',
    })
    expect((await post(`${clusterUrl('rotating')}/rotate-ca`, { phase: 'complete' })).statusCode).toBe(409)

    // Within a few seconds (the API server re-reads a cluster's CA generations every second) the
    // connection A kept open is refused: its certificate is checked again against the CAs trusted now.
    const seen: { status: number; reused: boolean }[] = []
    for (let last = { status: 200, reused: true }; last.status === 200; await sleep(50)) {
      last = await requestVia(agentA, serverName)
      seen.push(last)
      expect(Date.now() - completedAt, 'A is still accepted long after complete').toBeLessThan(5000)
    }
    expect(seen.at(-1)).toEqual({ status: 401, reused: true })
    expect(seen.every((r) => r.reused)).toBe(true)
    agentA.destroy()
    // New handshakes get a serving certificate from generation 2, which A does not trust, and A's
    // certificate is no longer trusted: kubectl with A fails; B keeps working.
    expect(signedBy((await servingCertificate(serverName)).toString(), generation2.certificatePem)).toBe(true)
    const failure = await kubectlNodes(['--kubeconfig', fileA])
    expect(failure.ok).toBe(false)
    expect(failure.ok ? '' : failure.stderr).toMatch(/certificate|Unauthorized/i)
    expect(await kubectlNodes(['--kubeconfig', fileB])).toEqual({ ok: true, nodes })

    // Every step is in the audit log, and no private key is anywhere in the database.
    const actions = (
      await stack.db.auditEvent.findMany({ where: { targetId: cluster.id }, orderBy: { id: 'asc' } })
    ).map((e) => e.action)
    for (const action of [
      'credential.ca-rotation.start',
      'credential.ca.issue',
      'credential.ca-rotation.complete',
      'credential.ca.retire',
    ]) {
      expect(actions).toContain(action)
    }
    expect(actions.filter((a) => a === 'credential.kubeconfig.issue')).toHaveLength(2)
    expect(actions.filter((a) => a === 'credential.csr.sign')).toHaveLength(1)
    await expectNoPlaintextPrivateKeys()
  }, 120_000)
})

/** GET /api over a kept-alive connection: the status and whether the connection was reused. */
function requestVia(agent: https.Agent, serverName: string): Promise<{ status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: stack.apiServer.port,
        path: '/api',
        agent,
        servername: serverName,
        headers: { host: serverName },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }))
      },
    )
    req.once('error', reject)
    req.end()
  })
}

/** Every row of every table, as JSON: nothing may hold a PEM private key. */
async function expectNoPlaintextPrivateKeys() {
  const tables = await stack.db.$queryRaw<{ schema: string; name: string }[]>`
    SELECT table_schema AS schema, table_name AS name FROM information_schema.tables
    WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'`
  let sealed = 0
  for (const { schema, name } of tables) {
    const rows = await stack.db.$queryRawUnsafe<{ row: string }[]>(
      `SELECT row_to_json(t)::text AS row FROM "${schema}"."${name}" t`,
    )
    for (const { row } of rows) {
      expect(row, `${schema}.${name}`).not.toMatch(/-----BEGIN[A-Z ]*PRIVATE KEY-----/)
      if (name === 'ClusterSecret' && row.includes('"ciphertext"')) sealed++
    }
  }
  // The scan saw sealed keys: at least the rotated cluster's three CAs and service-account key.
  expect(sealed).toBeGreaterThanOrEqual(4)
}
