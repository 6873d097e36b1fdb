import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse, stringify } from 'yaml'
import { getClusterSecret } from '../../../packages/db/src/index.ts'
import {
  type CertificateAndKey,
  issueCertificate,
  openCertificate,
  Purpose,
  renderKubeconfig,
  type SealedPrivateKey,
} from '../../../packages/pki/src/index.ts'
import {
  startTestStack,
  type TestStack,
  testDataCentre,
  testMasterKey,
} from '../../../test/support/engine.ts'
import {
  aSimulatedBackend,
  createCluster,
  getCluster,
  machineRows,
  waitForOperation,
} from '../../worker/test/support.ts'
import { type ApiServer, startApiServer } from '../src/server.ts'

// The simulated API server with the real kubectl: one TLS port for every cluster, the cluster
// chosen by SNI, and only client certificates from that cluster's own CA let in.
const run = promisify(execFile)

let stack: TestStack
let server: ApiServer
let dir: string
let clusterId: string
let otherClusterId: string
let kubeconfig: string
const logs: Record<string, unknown>[] = []

async function clusterCa(id: string): Promise<CertificateAndKey> {
  const secret = await getClusterSecret(stack.db, id, Purpose.clusterCa)
  if (!secret) throw new Error(`no cluster-ca for ${id}`)
  return openCertificate(
    id,
    Purpose.clusterCa,
    { kind: 'certificate', certPem: secret.publicPem, sealedKey: secret.sealedKey as SealedPrivateKey },
    testMasterKey,
  )
}

/**
 * A kubeconfig for `serverName` at this server's port. renderKubeconfig has no tls-server-name
 * option yet, so it is added to the cluster entry here.
 */
async function writeKubeconfig(
  file: string,
  options: { serverName: string; trustCa: string; client?: { certPem: string; keyPem: string } },
) {
  const client = options.client ?? { certPem: options.trustCa, keyPem: '-----BEGIN PRIVATE KEY-----\n' }
  const config = parse(
    renderKubeconfig({
      clusterName: 'sim',
      server: `https://127.0.0.1:${server.port}`,
      caCertsPem: [options.trustCa],
      userName: 'admin',
      clientCertPem: client.certPem,
      clientKeyPem: client.keyPem,
    }),
  ) as {
    clusters: { cluster: Record<string, string> }[]
    users: { user: Record<string, string> }[]
  }
  config.clusters[0]!.cluster['tls-server-name'] = options.serverName
  // No client certificate; a token only, so kubectl does not prompt for a password.
  if (!options.client) config.users[0]!.user = { token: 'not-a-certificate' }
  const path = join(dir, file)
  await writeFile(path, stringify(config))
  return path
}

async function adminCertificate(ca: CertificateAndKey, over: { now?: Date; ttlSeconds?: number } = {}) {
  return issueCertificate({
    ca,
    commonName: 'kubernetes-admin',
    organizations: ['system:masters'],
    usage: 'client',
    ttlSeconds: over.ttlSeconds ?? 3600,
    ...(over.now ? { now: over.now } : {}),
  })
}

async function kubectl(config: string, ...args: string[]) {
  const { stdout } = await run(
    'kubectl',
    ['--kubeconfig', config, '--cache-dir', join(dir, 'cache'), '--request-timeout', '15s', ...args],
    { timeout: 20_000 },
  )
  return stdout
}

/** Runs kubectl expecting failure; returns its stderr. */
async function kubectlFails(config: string, ...args: string[]): Promise<string> {
  try {
    const out = await kubectl(config, ...args)
    throw new Error(`kubectl succeeded unexpectedly:\n${out}`)
  } catch (error) {
    const e = error as { code?: unknown; stderr?: string; message: string }
    if (e.message.startsWith('kubectl succeeded')) throw error
    expect(e.code, e.message).not.toBe(0)
    return e.stderr ?? ''
  }
}

// A refused client sees its connection closed (or, without a certificate or with an unknown
// server name, a TLS alert); client-go retries that for ~10 s, then gives up.
// An unknown server name gets a certificate no client trusts.
const refused = /x509|certificate|EOF|tls|handshake/i

interface NodeJson {
  metadata: { name: string; labels: Record<string, string> }
  spec: { taints?: { key: string; effect: string }[] }
  status: {
    capacity: Record<string, string>
    conditions: { type: string; status: string }[]
    nodeInfo: { kubeletVersion: string }
  }
}

beforeAll(async () => {
  stack = await startTestStack({ engine: {} })
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
  for (const name of ['one', 'two']) {
    const op = await waitForOperation(
      stack.app,
      (await createCluster(stack.app, { name, template: 'k8s-1.31' })).id,
      40_000,
    )
    expect(op.status, JSON.stringify(op.steps)).toBe('succeeded')
  }
  clusterId = (await getCluster(stack.app, 'one')).id
  otherClusterId = (await getCluster(stack.app, 'two')).id
  server = await startApiServer({
    db: stack.db,
    masterKey: testMasterKey,
    port: 0,
    log: (event) => logs.push(event),
  })
  dir = await mkdtemp(join(tmpdir(), 'kiln-sim-api-'))
  const ca = await clusterCa(clusterId)
  kubeconfig = await writeKubeconfig('admin.yaml', {
    serverName: server.serverNameOf(clusterId),
    trustCa: ca.certPem,
    client: await adminCertificate(ca),
  })
}, 120_000)

afterAll(async () => {
  await server?.close()
  await stack?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('kubectl against a simulated cluster', () => {
  it('lists exactly the cluster machines as nodes, with their labels, taints and capacity', async () => {
    const machines = await machineRows(stack.db, clusterId)
    expect(machines.length).toBe(4)
    const list = JSON.parse(await kubectl(kubeconfig, 'get', 'nodes', '-o', 'json')) as { items: NodeJson[] }
    expect(list.items.map((n) => n.metadata.name).sort()).toEqual(machines.map((m) => m.name).sort())
    for (const machine of machines) {
      const node = list.items.find((n) => n.metadata.name === machine.name)!
      expect(node.metadata.labels['kubernetes.io/hostname']).toBe(machine.name)
      expect(node.metadata.labels['topology.kubernetes.io/zone']).toBe(machine.zone)
      expect(node.metadata.labels['node.kubernetes.io/instance-type']).toBe('m1.large')
      expect(node.status.capacity).toMatchObject({ cpu: '4', memory: `${16384 * 1024}Ki` })
      expect(node.status.nodeInfo.kubeletVersion).toBe(`v${machine.kubernetesVersion}`)
      expect(node.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True')
      if (machine.role === 'control-plane') {
        expect(node.metadata.labels['node-role.kubernetes.io/control-plane']).toBe('')
        expect(node.metadata.labels['kiln.dev/node-group']).toBe('control-plane')
        expect(node.spec.taints).toEqual([
          { key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' },
        ])
      } else {
        expect(node.metadata.labels['node-role.kubernetes.io/control-plane']).toBeUndefined()
        expect(node.metadata.labels['kiln.dev/node-group']).toBe('workers')
      }
    }
  })

  it('prints the nodes table: NAME STATUS ROLES AGE VERSION, all Ready', async () => {
    const out = await kubectl(kubeconfig, 'get', 'nodes')
    const [header, ...rows] = out.trim().split('\n')
    expect(header!.split(/\s+/)).toEqual(['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION'])
    const machines = await machineRows(stack.db, clusterId)
    expect(rows.map((r) => r.split(/\s+/)[0]).sort()).toEqual(machines.map((m) => m.name).sort())
    for (const row of rows) {
      const [name, state, roles, , version] = row.split(/\s+/)
      const machine = machines.find((m) => m.name === name)!
      expect(state).toBe('Ready')
      // Workers carry their node group's role (worker, ingress or infra) as add-ons select on it.
      expect(roles).toBe(machine.role === 'control-plane' ? 'control-plane' : 'worker')
      expect(version).toBe(`v${machine.kubernetesVersion}`)
    }
  })

  it('filters nodes by label selector', async () => {
    const out = await kubectl(kubeconfig, 'get', 'nodes', '-l', 'kiln.dev/node-group=workers', '-o', 'name')
    const workers = (await machineRows(stack.db, clusterId)).filter((m) => m.role === 'worker')
    expect(out.trim().split('\n').sort()).toEqual(workers.map((m) => `node/${m.name}`).sort())
    const cp = await kubectl(
      kubeconfig,
      'get',
      'nodes',
      '-l',
      'node-role.kubernetes.io/control-plane',
      '-o',
      'name',
    )
    expect(cp.trim().split('\n')).toHaveLength(1)
  })

  it('gets one node, and answers NotFound for a node that does not exist', async () => {
    const [machine] = await machineRows(stack.db, clusterId)
    const node = JSON.parse(await kubectl(kubeconfig, 'get', 'node', machine!.name, '-o', 'json')) as NodeJson
    expect(node.metadata.name).toBe(machine!.name)
    expect(await kubectlFails(kubeconfig, 'get', 'node', 'nope')).toMatch(/NotFound|not found/)
  })

  it('reports the cluster version as the server version', async () => {
    const cluster = await getCluster(stack.app, 'one')
    const version = JSON.parse(await kubectl(kubeconfig, 'version', '-o', 'json')) as {
      serverVersion: { gitVersion: string }
    }
    expect(version.serverVersion.gitVersion).toBe(`v${cluster.spec.kubernetesVersion}`)
  })

  it('lists the namespaces', async () => {
    const out = await kubectl(kubeconfig, 'get', 'namespaces')
    const names = out
      .trim()
      .split('\n')
      .slice(1)
      .map((r) => r.split(/\s+/)[0])
    expect(names).toEqual(expect.arrayContaining(['default', 'kube-system', 'kube-public']))
    expect(out).toMatch(/default\s+Active/)
  })
})

describe('refusals', () => {
  it('refuses a client certificate from another cluster CA', async () => {
    const own = await clusterCa(clusterId)
    const other = await clusterCa(otherClusterId)
    const config = await writeKubeconfig('foreign.yaml', {
      serverName: server.serverNameOf(clusterId),
      trustCa: own.certPem,
      client: await adminCertificate(other),
    })
    expect(await kubectlFails(config, 'get', 'nodes')).toMatch(/Unauthorized/)
    // The same certificate is good at its own cluster.
    const good = await writeKubeconfig('other.yaml', {
      serverName: server.serverNameOf(otherClusterId),
      trustCa: other.certPem,
      client: await adminCertificate(other),
    })
    const names = (await kubectl(good, 'get', 'nodes', '-o', 'name')).trim().split('\n')
    const machines = await machineRows(stack.db, otherClusterId)
    expect(names.sort()).toEqual(machines.map((m) => `node/${m.name}`).sort())
  }, 45_000)

  it('refuses an expired client certificate', async () => {
    const ca = await clusterCa(clusterId)
    const config = await writeKubeconfig('expired.yaml', {
      serverName: server.serverNameOf(clusterId),
      trustCa: ca.certPem,
      client: await adminCertificate(ca, { now: new Date(Date.now() - 3600_000), ttlSeconds: 60 }),
    })
    expect(await kubectlFails(config, 'get', 'nodes')).toMatch(/Unauthorized/)
  }, 45_000)

  it('refuses a client without a certificate', async () => {
    const ca = await clusterCa(clusterId)
    const config = await writeKubeconfig('anonymous.yaml', {
      serverName: server.serverNameOf(clusterId),
      trustCa: ca.certPem,
    })
    expect(await kubectlFails(config, 'get', 'nodes')).toMatch(/Unauthorized/)
  }, 45_000)

  it('refuses an unknown server name', async () => {
    const ca = await clusterCa(clusterId)
    const config = await writeKubeconfig('unknown.yaml', {
      serverName: server.serverNameOf('00000000-0000-4000-8000-000000000000'),
      trustCa: ca.certPem,
      client: await adminCertificate(ca),
    })
    expect(await kubectlFails(config, 'get', 'nodes')).toMatch(refused)
  }, 45_000)
})
