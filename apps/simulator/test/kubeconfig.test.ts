import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startTestStack, type TestStack, testDataCentre } from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  clusterUrl,
  createCluster,
  getCluster,
  waitForOperation,
} from '../../worker/test/support.ts'

// The whole path a user takes: create a cluster through Kiln's API, ask Kiln for a kubeconfig, and
// use it with the real kubectl against the simulated API server (one port, routed by TLS SNI).
const run = promisify(execFile)
let stack: TestStack
let dir: string

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  // Its clusters answer on the stack's simulated API server.
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
  dir = await mkdtemp(join(tmpdir(), 'kiln-kubeconfig-'))
}, 60_000)

afterAll(async () => {
  await stack?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

async function issue(
  cluster: string,
  body: Record<string, unknown> = {},
  headers: Record<string, string> = {},
) {
  return stack.app.inject({
    method: 'POST',
    url: `${clusterUrl(cluster)}/kubeconfig`,
    payload: body,
    headers,
  })
}

describe('POST …/clusters/{cluster}/kubeconfig', () => {
  it('issues a kubeconfig that real kubectl uses to list the cluster’s nodes', async () => {
    const op = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name: 'web', template: 'k8s-1.31' })).id,
    )
    expect(op.status).toBe('succeeded')
    const cluster = await getCluster(stack.app, 'web')
    const res = await issue('web', { ttlSeconds: 3600 })
    expect(res.statusCode, res.body).toBe(201)
    const body = res.json<{ kubeconfig: string; username: string; groups: string[]; expiresAt: string }>()
    expect(body.groups).toEqual(['system:masters'])
    const expiresIn = Date.parse(body.expiresAt) - Date.now()
    expect(expiresIn).toBeGreaterThan(3500_000)
    expect(expiresIn).toBeLessThanOrEqual(3600_000)
    const config = parse(body.kubeconfig) as {
      clusters: { cluster: { server: string; 'tls-server-name': string } }[]
    }
    expect(config.clusters[0]!.cluster.server).toBe(`https://127.0.0.1:${stack.apiServer.port}`)
    expect(config.clusters[0]!.cluster['tls-server-name']).toBe(`${cluster.id}.clusters.sim.kiln.internal`)

    const file = join(dir, 'web.yaml')
    await writeFile(file, body.kubeconfig, { mode: 0o600 })
    const { stdout } = await run('kubectl', ['--kubeconfig', file, 'get', 'nodes', '-o', 'name'], {
      timeout: 20_000,
    })
    const machines = await stack.db.machine.findMany({
      where: { clusterId: cluster.id },
      select: { name: true },
    })
    expect(stdout.trim().split('\n').sort()).toEqual(machines.map((m) => `node/${m.name}`).sort())

    const audit = await stack.db.auditEvent.findMany({
      where: { action: 'credential.kubeconfig.issue', targetId: cluster.id },
    })
    expect(audit).toHaveLength(1)
    // The audit records the credential, never the key.
    expect(JSON.stringify(audit[0]!.data)).not.toMatch(/PRIVATE KEY/)
  })

  it('caps the lifetime at 7 days and defaults to 24 hours', async () => {
    expect((await issue('web', { ttlSeconds: 8 * 24 * 3600 })).statusCode).toBe(400)
    const res = await issue('web')
    expect(res.statusCode).toBe(201)
    const expiresIn = Date.parse(res.json<{ expiresAt: string }>().expiresAt) - Date.now()
    expect(expiresIn).toBeGreaterThan(23.9 * 3600_000)
    expect(expiresIn).toBeLessThanOrEqual(24 * 3600_000)
  })

  it('refuses an Idempotency-Key: a credential is never stored to be replayed', async () => {
    const res = await issue('web', {}, { 'idempotency-key': 'k1' })
    expect(res.statusCode).toBe(400)
    expect(res.json<{ errors: { pointer: string }[] }>().errors[0]!.pointer).toBe('/Idempotency-Key')
    expect(await stack.db.idempotencyRecord.count()).toBe(0)
  })

  it('answers 409 while the cluster has no API server, and 404 for another project’s cluster', async () => {
    await stack.stopEngine()
    await createCluster(stack.app, { name: 'pending', template: 'k8s-1.31' })
    expect((await issue('pending')).statusCode).toBe(409)
    expect(
      (
        await stack.app.inject({
          method: 'POST',
          url: '/v1/projects/team-b/clusters/web/kubeconfig',
          payload: {},
        })
      ).statusCode,
    ).toBe(404)
    await stack.startEngine()
  })
})
