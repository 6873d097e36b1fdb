import { type Database, isUuid } from '@kiln/db'

// The Kubernetes side of a simulated cluster: its objects derived from Kiln's books (Machine,
// NodeGroup, MachineClass) and the simulated data centre's (simulator.machines), and the
// documents the API serves. JSON only.

export type KubeObject = Record<string, unknown> & {
  metadata: { name: string; labels?: Record<string, string>; creationTimestamp: string }
}

export interface ClusterView {
  id: string
  name: string
  kubernetesVersion: string
  createdAt: Date
  /**
   * The backend's kind. On the simulated data centre its books say whether a machine works; on any
   * other (Ironic's fake hardware) this server stands in for the kubelets, which are Ready once Kiln
   * saw their machine come up.
   */
  backendKind: string
}

interface Taint {
  key: string
  value?: string
  effect: string
}

export const status = (code: number, reason: string, message: string, details?: Record<string, unknown>) => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message,
  reason,
  ...(details ? { details } : {}),
  code,
})

export async function findCluster(db: Database, clusterId: string): Promise<ClusterView | undefined> {
  if (!isUuid(clusterId)) return undefined
  const row = await db.cluster.findUnique({
    where: { id: clusterId },
    select: {
      id: true,
      name: true,
      spec: true,
      createdAt: true,
      template: { select: { backend: { select: { kind: true } } } },
    },
  })
  if (!row) return undefined
  const spec = (row.spec ?? {}) as { kubernetesVersion?: unknown }
  const version = typeof spec.kubernetesVersion === 'string' ? spec.kubernetesVersion : '0.0.0'
  return {
    id: row.id,
    name: row.name,
    kubernetesVersion: version,
    createdAt: row.createdAt,
    backendKind: row.template.backend.kind,
  }
}

export function versionInfo(cluster: ClusterView) {
  const [major = '1', minor = '0'] = cluster.kubernetesVersion.split('.')
  return {
    major,
    minor,
    gitVersion: `v${cluster.kubernetesVersion}`,
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: cluster.createdAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    goVersion: 'go1.23.0',
    compiler: 'gc',
    platform: 'linux/amd64',
  }
}

const rfc3339 = (date: Date) => date.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** The data centre's view of each machine name: 'joined' is healthy. Empty if it has no books yet. */
async function simulatorStates(db: Database, names: string[]): Promise<Map<string, string>> {
  if (names.length === 0) return new Map()
  try {
    const rows = await db.$queryRaw<{ allocated_to: string; state: string }[]>`
      SELECT allocated_to, state FROM simulator.machines WHERE allocated_to = ANY(${names}::text[])`
    return new Map(rows.map((r) => [r.allocated_to, r.state]))
  } catch {
    // No simulator schema in this database: no machine is healthy.
    return new Map()
  }
}

const stringRecord = (value: unknown): Record<string, string> => {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return {}
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).filter(
      (entry): entry is [string, string] => typeof entry[1] === 'string',
    ),
  )
}

const taintList = (value: unknown): Taint[] =>
  Array.isArray(value)
    ? value.filter(
        (t): t is Taint =>
          t !== null && typeof t === 'object' && typeof t.key === 'string' && typeof t.effect === 'string',
      )
    : []

/** One Node per Kiln Machine of the cluster, sorted by name. */
export async function listNodes(db: Database, cluster: ClusterView): Promise<KubeObject[]> {
  const machines = await db.machine.findMany({
    where: { clusterId: cluster.id },
    include: { nodeGroup: { select: { name: true, labels: true, taints: true, role: true } } },
    orderBy: { name: 'asc' },
  })
  const classNames = [...new Set(machines.map((m) => m.machineClass))]
  const classes = new Map(
    (
      await db.machineClass.findMany({
        where: { name: { in: classNames } },
        select: { name: true, cpu: true, memoryMiB: true, gpuCount: true },
      })
    ).map((c) => [c.name, c]),
  )
  const states =
    cluster.backendKind === 'simulator'
      ? await simulatorStates(
          db,
          machines.map((m) => m.name),
        )
      : new Map<string, string>()

  return machines.map((m) => {
    const controlPlane = m.role === 'control-plane'
    const labels: Record<string, string> = {
      ...stringRecord(m.nodeGroup?.labels),
      'kubernetes.io/hostname': m.name,
      'kubernetes.io/os': 'linux',
      'kubernetes.io/arch': 'amd64',
      'node.kubernetes.io/instance-type': m.machineClass,
      'kiln.dev/node-group': m.nodeGroup?.name ?? 'control-plane',
      ...(m.zone ? { 'topology.kubernetes.io/zone': m.zone } : {}),
      // kubectl's ROLES column, and what add-ons select on (the ingress controller, monitoring).
      [`node-role.kubernetes.io/${controlPlane ? 'control-plane' : (m.nodeGroup?.role ?? 'worker')}`]: '',
    }
    const taints = controlPlane
      ? [{ key: 'node-role.kubernetes.io/control-plane', effect: 'NoSchedule' }]
      : taintList(m.nodeGroup?.taints)
    const mc = classes.get(m.machineClass)
    const capacity: Record<string, string> = {
      cpu: String(mc?.cpu ?? 0),
      memory: `${(mc?.memoryMiB ?? 0) * 1024}Ki`,
      pods: '110',
      ...(mc && mc.gpuCount > 0 ? { 'nvidia.com/gpu': String(mc.gpuCount) } : {}),
    }
    const simState = cluster.backendKind === 'simulator' ? states.get(m.name) : 'joined'
    const ready = m.phase === 'Running' && simState === 'joined'
    const reason = ready
      ? 'KubeletReady'
      : m.phase !== 'Running'
        ? `Machine${m.phase}`
        : simState === 'dead'
          ? 'HardwareFailure'
          : 'KubeletNotReady'
    const message = ready
      ? 'kubelet is posting ready status'
      : m.phase !== 'Running'
        ? `machine is ${m.phase}`
        : `simulated machine is ${simState ?? 'not allocated'}`
    const updated = rfc3339(m.updatedAt)
    return {
      kind: 'Node',
      apiVersion: 'v1',
      metadata: {
        name: m.name,
        uid: m.id,
        resourceVersion: String(m.updatedAt.getTime()),
        creationTimestamp: rfc3339(m.createdAt),
        labels,
        annotations: { 'kiln.dev/machine-phase': m.phase },
      },
      spec: {
        // The Ironic node or the simulated machine behind the Node.
        providerID:
          cluster.backendKind === 'ironic'
            ? `ironic://${m.externalId ?? m.name}`
            : `kiln-sim://${m.externalId ?? m.name}`,
        ...(taints.length > 0 ? { taints } : {}),
      },
      status: {
        capacity,
        allocatable: capacity,
        conditions: [
          {
            type: 'Ready',
            status: ready ? 'True' : 'False',
            lastHeartbeatTime: updated,
            lastTransitionTime: updated,
            reason,
            message,
          },
        ],
        addresses: [{ type: 'Hostname', address: m.name }],
        nodeInfo: {
          machineID: m.id.replace(/-/g, ''),
          systemUUID: m.id,
          bootID: m.id,
          kernelVersion: '6.1.0-kiln-sim',
          osImage: 'Kiln simulated node',
          containerRuntimeVersion: 'containerd://1.7.0',
          kubeletVersion: `v${m.kubernetesVersion}`,
          kubeProxyVersion: `v${m.kubernetesVersion}`,
          operatingSystem: 'linux',
          architecture: 'amd64',
        },
      },
    }
  })
}

export function listNamespaces(cluster: ClusterView): KubeObject[] {
  return ['default', 'kube-node-lease', 'kube-public', 'kube-system'].map((name) => ({
    kind: 'Namespace',
    apiVersion: 'v1',
    metadata: {
      name,
      uid: `${cluster.id.slice(0, 24)}${Buffer.from(name).toString('hex').padEnd(12, '0').slice(0, 12)}`,
      resourceVersion: '1',
      creationTimestamp: rfc3339(cluster.createdAt),
      labels: { 'kubernetes.io/metadata.name': name },
    },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  }))
}

// ---- label selectors ---------------------------------------------------------------------

type Requirement =
  | { op: 'exists'; key: string }
  | { op: 'notexists'; key: string }
  | { op: 'in' | 'notin'; key: string; values: string[] }

export class SelectorError extends Error {}

/** Parses a label selector: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`. */
export function parseLabelSelector(selector: string): Requirement[] {
  const parts: string[] = []
  let depth = 0
  let current = ''
  for (const ch of selector) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) {
      parts.push(current)
      current = ''
    } else current += ch
  }
  parts.push(current)
  const requirements: Requirement[] = []
  for (const raw of parts) {
    const part = raw.trim()
    if (part === '') continue
    let match = /^(\S+?)\s+(in|notin)\s*\(([^)]*)\)$/.exec(part)
    if (match) {
      requirements.push({
        op: match[2] as 'in' | 'notin',
        key: match[1]!,
        values: match[3]!.split(',').map((v) => v.trim()),
      })
      continue
    }
    match = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(part)
    if (match) {
      requirements.push({ op: match[2] === '!=' ? 'notin' : 'in', key: match[1]!, values: [match[3]!] })
      continue
    }
    match = /^(!?)\s*([^=!\s(),]+)$/.exec(part)
    if (match) {
      requirements.push(match[1] ? { op: 'notexists', key: match[2]! } : { op: 'exists', key: match[2]! })
      continue
    }
    throw new SelectorError(`unable to parse requirement: '${part}'`)
  }
  return requirements
}

export function matchesSelector(labels: Record<string, string>, requirements: Requirement[]): boolean {
  return requirements.every((r) => {
    const value = labels[r.key]
    if (r.op === 'exists') return value !== undefined
    if (r.op === 'notexists') return value === undefined
    if (r.op === 'in') return value !== undefined && r.values.includes(value)
    return value === undefined || !r.values.includes(value)
  })
}

/**
 * The labels a selector requires with one exact value (`k=v`, `k==v`, `k in (v)`): what a store can
 * look up in an index. Narrowing only: the selector as a whole is still matched afterwards, so for
 * a key required twice the first value is enough here.
 */
export function requiredLabels(requirements: Requirement[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const r of requirements)
    if (r.op === 'in' && r.values.length === 1 && !(r.key in labels)) labels[r.key] = r.values[0]!
  return labels
}

interface FieldRequirement {
  path: string[]
  op: '=' | '!='
  value: string
}

/** Parses a field selector (`metadata.name=x,spec.nodeName!=y`): any dotted path, compared as text. */
export function parseFieldSelector(selector: string): FieldRequirement[] {
  return selector
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .map((part) => {
      const match = /^([A-Za-z][\w.]*)(==|=|!=)(.*)$/.exec(part)
      if (!match) throw new SelectorError(`invalid field selector: '${part}'`)
      return { path: match[1]!.split('.'), op: match[2] === '!=' ? '!=' : '=', value: match[3]! }
    })
}

/** The name a field selector requires (`metadata.name=x` or `==`), if any. */
export function requiredName(requirements: FieldRequirement[]): string | undefined {
  return requirements.find((r) => r.op === '=' && r.path.join('.') === 'metadata.name')?.value
}

export function matchesFieldSelector(
  object: Record<string, unknown>,
  requirements: FieldRequirement[],
): boolean {
  return requirements.every((r) => {
    let value: unknown = object
    for (const key of r.path)
      value =
        value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined
    const text = value === undefined || value === null ? '' : String(value)
    return r.op === '!=' ? text !== r.value : text === r.value
  })
}
