// Proves: a bare-metal create survives Ironic going away. Ironic is stopped before a create and
// started again: the create's steps retry (ERR_UNAVAILABLE) and the cluster comes up. Ironic is
// killed (SIGKILL, as a crash or power loss) while a node is being deployed: on restart Ironic fails
// that deploy ("deploy failed"), Kiln puts the node into maintenance, allocates another and finishes.
// An Ironic of this file's own (its own port and database), so stopping it disturbs no other test.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  clusterUrl,
  createCluster,
  getCluster,
  machineRows,
  startOperation,
  waitForOperation,
} from '../../apps/worker/test/support.ts'
import { IronicClient, type IronicNode } from '../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack } from '../support/engine.ts'
import { eventually } from '../support/eventually.ts'
import {
  allocationsNamed,
  crashOwnIronic,
  removeNodes,
  startOwnIronic,
  stopOwnIronic,
} from '../support/ironic.ts'
import { anIronicBackend, anIronicTemplate, type IronicRack } from '../support/ironic-stack.ts'

const port = 6391
let dir: string
let url: string
let admin: IronicClient
let stack: TestStack
let rack: IronicRack

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
/**
 * Each fake deploy takes seconds (the delay applies twice), so a kill seen mid-deploy lands mid-deploy
 * however busy the machine. Every (re)start passes it: start-ironic.sh rewrites the config each time,
 * and a restart without it left the next test's deploys instant, finished before the kill.
 */
const slowDeploys = { IRONIC_FAKE_DEPLOY_DELAY: '5' }
const startIronic = (env: Record<string, string> = {}) =>
  startOwnIronic({ dir, port, env: { ...slowDeploys, ...env } })
const nodes = async () =>
  Promise.all(rack.nodes.map((n) => admin.request<IronicNode>('GET', `v1/nodes/${n.uuid}`)))

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kiln-ironic-'))
  url = await startIronic({ IRONIC_FRESH_DB: '1' })
  admin = new IronicClient({ url })
  // Ironic is down for as long as it takes to start again, minutes on a busy machine: the steps'
  // default 30 min retry horizon outlasts that.
  stack = await startTestStack()
  rack = await anIronicBackend(stack.db, admin, { name: 'metal', cpuNodes: 3, config: { url } })
  await stack.engine!.syncCatalogueOnce()
  await anIronicTemplate(stack.db, rack, { name: 'metal-small', controlPlane: 1, workers: 1 })
  // A fresh Ironic (schema, Python start-up, enrollment) alone can take minutes on a busy machine.
}, 300_000)

afterAll(async () => {
  await stack?.close()
  if (rack) {
    await startIronic().catch(() => undefined)
    await removeNodes(
      admin,
      rack.nodes.map((n) => n.uuid),
    ).catch(() => undefined)
  }
  admin?.close()
  await stopOwnIronic(dir).catch(() => undefined)
  await rm(dir, { recursive: true, force: true })
}, 300_000)

describe('Ironic faults', () => {
  it('a create started while Ironic is down retries and completes once it is back', async () => {
    await stopOwnIronic(dir)
    const op = await createCluster(stack.app, { name: 'while-down', template: 'metal-small' })
    // However long a busy machine takes to get there: the first step fails, retryably, and waits.
    const during = await eventually(
      'the first step to find Ironic unreachable',
      async () => {
        const read = (await stack.app.inject({ method: 'GET', url: `/v1/operations/${op.id}` })).json() as {
          status: string
          steps: { name: string; message: string }[]
        }
        return read.steps[0]?.message.includes('ERR_UNAVAILABLE') ? read : undefined
      },
      60_000,
      100,
    )
    expect(during.status).toBe('running')
    expect(during.steps[0]!.message).toMatch(/ERR_UNAVAILABLE.*unreachable/)
    await startIronic()
    const done = await waitForOperation(stack.app, op.id, 120_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('while-down'))).id,
      120_000,
    )
    expect(deleted.status).toBe('succeeded')
  }, 240_000)

  it('a node whose deploy Ironic lost in a crash is replaced by another node', async () => {
    const op = await createCluster(stack.app, { name: 'crash', template: 'metal-small' })
    // Wait for a node mid-deploy, then kill Ironic as a power loss would.
    const victim = await eventually(
      'a node to reach deploying',
      async () => (await nodes()).find((n) => n.provision_state === 'deploying'),
      120_000,
      50,
    )
    await crashOwnIronic(dir)
    await sleep(3000)
    await startIronic()

    const done = await waitForOperation(stack.app, op.id, 180_000)
    expect(done.status, JSON.stringify(done.steps)).toBe('succeeded')
    const cluster = await getCluster(stack.app, 'crash')
    expect(cluster.status.phase).toBe('Ready')

    // The lost node is out of the pool, in maintenance with Kiln's reason; the cluster runs elsewhere.
    const failed = await admin.request<IronicNode>('GET', `v1/nodes/${victim.uuid}`)
    expect(failed.maintenance).toBe(true)
    expect(failed.maintenance_reason).toContain('Kiln released')
    const rows = await machineRows(stack.db, cluster.id)
    expect(rows).toHaveLength(2)
    expect(rows.map((m) => m.externalId)).not.toContain(victim.uuid)
    for (const m of rows) {
      const node = await admin.request<IronicNode>('GET', `v1/nodes/${m.externalId}`)
      expect(node.provision_state).toBe('active')
    }
    const prefix = `k-${cluster.id.slice(0, 8)}`
    expect((await allocationsNamed(admin, prefix)).map((a) => a.node_uuid).sort()).toEqual(
      rows.map((m) => m.externalId).sort(),
    )

    const deleted = await waitForOperation(
      stack.app,
      (await startOperation(stack.app, 'DELETE', clusterUrl('crash'))).id,
      120_000,
    )
    expect(deleted.status).toBe('succeeded')
    expect(await allocationsNamed(admin, prefix)).toEqual([])
  }, 300_000)
})
