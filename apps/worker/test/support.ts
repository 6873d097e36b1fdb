import { expect } from 'vitest'
import type { Database } from '../../../packages/db/src/index.ts'
import { type SimulatorConfig, SimulatorDriver } from '../../../packages/drivers/src/index.ts'
import { aKubernetesVersion, aMachineClass, aProject, aTemplate } from '../../../test/support/builders.ts'
import {
  apiServerUrls,
  startTestStack,
  type TestStack,
  testDataCentre,
} from '../../../test/support/engine.ts'
import type { KilnApp } from '../../api/src/app.ts'

// Helpers shared by the engine integration tests in this folder (not a test file itself).

export const PROJECT = 'team-a'
export const clusterUrl = (name: string) => `/v1/projects/${PROJECT}/clusters/${name}`

export interface StepBody {
  name: string
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped'
  startedAt: string | null
  finishedAt: string | null
  message: string
  retry?: {
    attempts: number
    since: string
    nextAttemptAt: string
    giveUpAt: string
    lastError: { code: string; message: string }
  } | null
}

export interface OperationBody {
  id: string
  kind: string
  status: 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled'
  progress: number
  steps: StepBody[]
  error: {
    type: string
    title: string
    status: number
    detail: string
    code: string
    reason: 'retryable' | 'user' | 'platform'
    step: string
  } | null
  resource: { kind: string; id: string; name: string }
  cancelRequested: boolean
  finishedAt: string | null
}

export interface ConditionBody {
  type: string
  status: 'True' | 'False' | 'Unknown'
  reason: string
  message: string
  lastTransitionTime: string
}

export interface ClusterBody {
  id: string
  name: string
  generation: number
  template: { name: string; version: number }
  spec: {
    kubernetesVersion: string
    features: Record<string, Record<string, unknown>>
    nodeGroups: { id: string; name: string; count: number; machineClass: string }[]
  }
  status: {
    phase: string
    conditions: ConditionBody[]
    observedGeneration: number
    message: string
    endpoint: string | null
    lastObservedAt: string | null
  }
  activeOperationId: string | null
  deletionRequested: boolean
}

export const isTerminal = (status: string) => ['succeeded', 'failed', 'cancelled'].includes(status)

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Creates a simulator backend whose `config` is the given data centre, its machine classes in the
 * catalogue, Kubernetes 1.31.4 (once) and a template on it.
 */
export async function aSimulatedBackend(
  db: Database,
  name: string,
  config: SimulatorConfig,
  template: { name: string; nodeGroups?: unknown[]; controlPlane?: { count: number; machineClass: string } },
) {
  const apiServerUrl = config.apiServerUrl ?? apiServerUrls.get(db)
  const backend = await db.backend.create({
    data: {
      name,
      kind: 'simulator',
      capabilities: { zones: config.zones },
      config: { ...config, ...(apiServerUrl ? { apiServerUrl } : {}) } as object,
    },
  })
  for (const mc of config.machineClasses) {
    await aMachineClass(db, backend.id, {
      name: mc.name,
      cpu: mc.cpu,
      memoryMiB: mc.memoryMiB,
      gpuModel: mc.gpuModel,
      gpuCount: mc.gpuCount,
      zones: mc.zones ?? config.zones,
    })
  }
  if (!(await db.kubernetesVersion.findUnique({ where: { version: '1.31.4' } })))
    await aKubernetesVersion(db, '1.31.4')
  if (!(await db.project.findUnique({ where: { name: PROJECT } }))) await aProject(db, PROJECT)
  const firstClass = config.machineClasses[0]!.name
  const tpl = await aTemplate(db, backend.id, {
    name: template.name,
    controlPlane: template.controlPlane ?? { count: 1, machineClass: firstClass },
    nodeGroups: template.nodeGroups ?? [
      { name: 'workers', machineClass: firstClass, count: 3, minCount: 1, maxCount: 10 },
    ],
  })
  return { backend, template: tpl }
}

/** The simulator's own books for a backend, read through a driver of our own. */
export const simulatorFor = (stack: TestStack, backend: string, config: SimulatorConfig) =>
  new SimulatorDriver(backend, config, stack.databaseUrl)

export async function createCluster(app: KilnApp, body: Record<string, unknown>): Promise<OperationBody> {
  const res = await app.inject({ method: 'POST', url: `/v1/projects/${PROJECT}/clusters`, payload: body })
  expect(res.statusCode, res.body).toBe(202)
  return res.json() as OperationBody
}

/** Sends a request that must start an operation (202) and returns it. */
export async function startOperation(
  app: KilnApp,
  method: 'POST' | 'PATCH' | 'DELETE',
  url: string,
  payload?: Record<string, unknown>,
): Promise<OperationBody> {
  const res = await app.inject({ method, url, ...(payload ? { payload } : {}) })
  expect(res.statusCode, res.body).toBe(202)
  return res.json() as OperationBody
}

/** `POST /v1/operations/{id}/retry`, which must be accepted (202); returns the operation. */
export async function retryOperation(app: KilnApp, id: string): Promise<OperationBody> {
  const res = await app.inject({ method: 'POST', url: `/v1/operations/${id}/retry` })
  expect(res.statusCode, res.body).toBe(202)
  return res.json() as OperationBody
}

export async function getOperation(app: KilnApp, id: string): Promise<OperationBody> {
  const res = await app.inject({ method: 'GET', url: `/v1/operations/${id}` })
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as OperationBody
}

/** Long-polls `GET /v1/operations/{id}?wait=` until the operation is terminal, within `timeoutMs`. */
export async function waitForOperation(app: KilnApp, id: string, timeoutMs = 20_000): Promise<OperationBody> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const left = Math.max(1, Math.min(10_000, deadline - Date.now()))
    const res = await app.inject({ method: 'GET', url: `/v1/operations/${id}?wait=${left}ms` })
    expect(res.statusCode, res.body).toBe(200)
    const op = res.json() as OperationBody
    if (isTerminal(op.status)) return op
    if (Date.now() >= deadline) {
      throw new Error(
        `operation ${id} (${op.kind}) still ${op.status} after ${timeoutMs} ms: ${JSON.stringify(op.steps)}`,
      )
    }
  }
}

export { eventually } from '../../../test/support/eventually.ts'

export async function getCluster(app: KilnApp, name: string): Promise<ClusterBody> {
  const res = await app.inject({ method: 'GET', url: clusterUrl(name) })
  expect(res.statusCode, res.body).toBe(200)
  return res.json() as ClusterBody
}

export const conditionOf = (cluster: ClusterBody, type: string) =>
  cluster.status.conditions.find((c) => c.type === type)

/** Names of a cluster's machines: simulated machines are allocated to Kiln's deterministic names. */
const prefixOf = (clusterId: string) => `k-${clusterId.slice(0, 8)}-`

/** What the data centre has allocated to one cluster (by its deterministic machine names). */
export async function simulatorNames(sim: SimulatorDriver, clusterId: string): Promise<string[]> {
  const inventory = await sim.inventory()
  return inventory.allocatedNames.filter((n) => n.startsWith(prefixOf(clusterId))).sort()
}

export async function machineRows(db: Database, clusterId: string) {
  return db.machine.findMany({ where: { clusterId }, orderBy: [{ role: 'asc' }, { name: 'asc' }] })
}

/**
 * Kiln's books and the data centre's agree for one cluster: every Machine row is allocated at the
 * backend and nothing is allocated there that Kiln does not record. Returns the rows.
 */
export async function expectBooksAgree(db: Database, sim: SimulatorDriver, clusterId: string) {
  const rows = await machineRows(db, clusterId)
  const names = rows.map((m) => m.name).sort()
  expect(await simulatorNames(sim, clusterId)).toEqual(names)
  const inventory = await sim.inventory()
  if (rows.length > 0) expect(inventory.clusterIds).toContain(clusterId)
  else expect(inventory.clusterIds).not.toContain(clusterId)
  return rows
}

/** Creates a cluster through the API, waits until the create succeeded, and reads the cluster. */
export async function createReady(
  app: KilnApp,
  name: string,
  template: string,
  timeoutMs?: number,
): Promise<ClusterBody> {
  const created = await waitForOperation(app, (await createCluster(app, { name, template })).id, timeoutMs)
  expect(created.status, JSON.stringify(created.steps)).toBe('succeeded')
  return getCluster(app, name)
}

/** An engine test stack on the test data centre with one cluster of template k8s-1.31, created and Ready. */
export async function startStackWithCluster(name: string): Promise<{ stack: TestStack; clusterId: string }> {
  const stack = await startTestStack({ engine: {} })
  await aSimulatedBackend(stack.db, 'sim', testDataCentre(), { name: 'k8s-1.31' })
  return { stack, clusterId: (await createReady(stack.app, name, 'k8s-1.31')).id }
}
