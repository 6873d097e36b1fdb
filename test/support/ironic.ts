import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import {
  type BootstrapMaterial,
  IronicApiError,
  type IronicClient,
  type IronicConfig,
  type IronicNode,
} from '@kiln/drivers'
import { generateCertificateAuthority, generateServiceAccountKeyPair, Purpose } from '@kiln/pki'

// The real Ironic the tests use: scripts/ironic/start-ironic.sh (run by scripts/test.sh) installs and
// starts it from Debian's packages with the fake-hardware driver standing in for servers. Every test
// enrolls its own nodes under a resource class of its own, so tests in parallel never see each other's.

export const ironicUrl = process.env.KILN_TEST_IRONIC_URL ?? 'http://127.0.0.1:6385'

const run = promisify(execFile)

export interface EnrollRequest {
  resourceClass: string
  count: number
  zone?: string
  traits?: string[]
  properties?: Record<string, unknown>
  /** Name prefix; unique per call when omitted. */
  prefix?: string
}

/** Enrolls fake-hardware nodes and walks them to `available` (manage → provide), powered on. */
export async function enrollNodes(client: IronicClient, request: EnrollRequest): Promise<IronicNode[]> {
  const prefix = request.prefix ?? `t-${randomBytes(3).toString('hex')}`
  const nodes: IronicNode[] = []
  for (let i = 0; i < request.count; i++) {
    const node = await client.request<IronicNode>('POST', 'v1/nodes', {
      name: `${prefix}-${request.resourceClass.toLowerCase().replace(/[^a-z0-9-]/g, '-')}-${i}`,
      driver: 'fake-hardware',
      resource_class: request.resourceClass,
      properties: {
        cpus: 32,
        memory_mb: 131072,
        local_gb: 960,
        cpu_arch: 'x86_64',
        ...(request.zone ? { zone: request.zone } : {}),
        ...request.properties,
      },
    })
    if (request.traits?.length)
      await client.request('PUT', `v1/nodes/${node.uuid}/traits`, { traits: request.traits })
    nodes.push(node)
  }
  await Promise.all(nodes.map((n) => moveTo(client, n.uuid, 'manage', 'manageable')))
  await Promise.all(nodes.map((n) => moveTo(client, n.uuid, 'provide', 'available')))
  await Promise.all(
    nodes.map((n) => client.request('PUT', `v1/nodes/${n.uuid}/states/power`, { target: 'power on' })),
  )
  return nodes
}

/** Asks for a provision transition and waits until the node rests in `state`. */
export async function moveTo(client: IronicClient, uuid: string, target: string, state: string) {
  await client.request('PUT', `v1/nodes/${uuid}/states/provision`, { target })
  await waitForNode(client, uuid, (n) => n.provision_state === state && !n.target_provision_state)
}

export async function waitForNode(
  client: IronicClient,
  uuid: string,
  done: (node: IronicNode) => boolean,
  timeoutMs = 20_000,
): Promise<IronicNode> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const node = await client.request<IronicNode>('GET', `v1/nodes/${uuid}`)
    if (done(node)) return node
    if (Date.now() > deadline)
      throw new Error(`node ${uuid} did not get there: ${node.provision_state} (${node.last_error})`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Removes test nodes whatever their state: maintenance first, as Ironic deletes only idle nodes then. */
export async function removeNodes(client: IronicClient, uuids: string[]) {
  await Promise.all(
    uuids.map(async (uuid) => {
      try {
        const node = await client.request<IronicNode>('GET', `v1/nodes/${uuid}`)
        if (node.allocation_uuid) {
          await client.request('DELETE', `v1/allocations/${node.allocation_uuid}`).catch(() => {})
        }
        await client.request('PUT', `v1/nodes/${uuid}/maintenance`, { reason: 'test teardown' })
        await client.request('DELETE', `v1/nodes/${uuid}`)
      } catch (error) {
        if (!(error instanceof IronicApiError && error.status === 404)) throw error
      }
    }),
  )
}

/** The allocations whose names start with `prefix`. */
export async function allocationsNamed(client: IronicClient, prefix: string) {
  const { allocations } = await client.request<{
    allocations: { name: string | null; node_uuid: string | null; state: string }[]
  }>('GET', 'v1/allocations?limit=1000')
  return allocations.filter((a) => a.name?.startsWith(prefix))
}

/**
 * The config drive Ironic stored for a node. Ironic masks instance secrets in answers unless its policy
 * shows them; the test Ironic's policy does (scripts/ironic/start-ironic.sh), real ones should not.
 */
export async function configDriveOf(client: IronicClient, uuid: string) {
  const node = await client.request<{ instance_info: { configdrive?: unknown } }>(
    'GET',
    `v1/nodes/${uuid}?fields=instance_info`,
  )
  return node.instance_info.configdrive as
    | { user_data?: string; meta_data?: Record<string, unknown> }
    | undefined
}

/** A backend config for the test Ironic; the control plane is reached wherever `server` says. */
export function testIronicConfig(over: Partial<IronicConfig> = {}): IronicConfig {
  return {
    url: ironicUrl,
    images: {
      default: {
        source: 'http://images.example.org/kiln-node-k8s.qcow2',
        checksum: 'a'.repeat(64),
      },
    },
    controlPlaneEndpoint: { server: 'https://{clusterId}.k8s.test:6443' },
    timeouts: { deploySeconds: 60, releaseSeconds: 60, allocationSeconds: 30 },
    pollIntervalMs: { min: 50, max: 500 },
    ...over,
  }
}

/** Real authorities, generated once per file: what the engine would hand a bare-metal driver. */
export async function testBootstrapMaterial(kubernetesVersion = '1.31.4'): Promise<BootstrapMaterial> {
  const [clusterCa, etcdCa, frontProxyCa, serviceAccount] = await Promise.all([
    generateCertificateAuthority({ purpose: Purpose.clusterCa, validityDays: 1 }),
    generateCertificateAuthority({ purpose: Purpose.etcdCa, validityDays: 1 }),
    generateCertificateAuthority({ purpose: Purpose.frontProxyCa, validityDays: 1 }),
    generateServiceAccountKeyPair(),
  ])
  return {
    kubernetesVersion,
    controlPlaneInitialized: false,
    clusterCaBundlePem: clusterCa.certPem,
    clusterCa,
    etcdCa,
    frontProxyCa,
    serviceAccount,
    joinToken: `${randomBytes(3).toString('hex')}.${randomBytes(8).toString('hex')}`,
    podSubnet: '10.244.0.0/16',
    serviceSubnet: '10.96.0.0/12',
  }
}

/** Starts (or restarts) an Ironic of the test's own, for tests that stop it; returns its URL. */
export async function startOwnIronic(options: {
  dir: string
  port: number
  env?: Record<string, string>
}): Promise<string> {
  await run('bash', ['scripts/ironic/start-ironic.sh'], {
    env: {
      ...process.env,
      IRONIC_DIR: options.dir,
      IRONIC_PORT: String(options.port),
      ...options.env,
    },
  })
  return `http://127.0.0.1:${options.port}`
}

export async function stopOwnIronic(dir: string) {
  await run('bash', ['scripts/ironic/stop-ironic.sh'], { env: { ...process.env, IRONIC_DIR: dir } })
}

/**
 * Kills Ironic as a power loss would: SIGKILL, and its pidfile left behind for the next start to
 * cope with (a CI machine that outlived a session's Ironic looks the same).
 */
export async function crashOwnIronic(dir: string) {
  const pid = Number(await readFile(join(dir, 'ironic.pid'), 'utf8'))
  process.kill(pid, 'SIGKILL')
  while (isAlive(pid)) await sleep(50)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
