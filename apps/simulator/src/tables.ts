import type { ResourceType } from './resources.ts'
import type { KubeObject } from './store.ts'

// Server-side printing: `kubectl get` asks for `as=Table` and prints the columns the server
// chooses, so each kind gets the columns a real API server gives it (priority 1 = `-o wide`).

/** Kubernetes' duration.HumanDuration, as `kubectl get` shows ages. */
export function humanDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000))
  if (seconds < 120) return `${seconds}s`
  const minutes = Math.floor(seconds / 60)
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`
  if (minutes < 180) return `${minutes}m`
  const hours = Math.floor(minutes / 60)
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`
  if (hours < 48) return `${hours}h`
  const days = Math.floor(hours / 24)
  if (days < 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`
  if (days < 365 * 2) return `${days}d`
  const years = Math.floor(days / 365)
  if (years < 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`
  return `${years}y`
}

interface Column {
  name: string
  type: string
  format: string
  description: string
  priority: number
}

type Cells = (o: KubeObject, now: number) => unknown[]

const column = (name: string, priority = 0, type = 'string', format = ''): Column => ({
  name,
  type,
  format,
  description: name,
  priority,
})

const nameColumn: Column = {
  ...column('Name', 0, 'string', 'name'),
  description: 'Name must be unique within a namespace. Cannot be updated.',
}
const ageColumn: Column = {
  ...column('Age'),
  description: 'CreationTimestamp is when this object was created.',
}

const get = (o: unknown, path: string): unknown => {
  let value = o
  for (const key of path
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter(Boolean))
    value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined
  return value
}
const num = (o: unknown, path: string) => Number(get(o, path) ?? 0)
const age = (o: KubeObject, now: number) =>
  humanDuration(now - Date.parse(String(o.metadata.creationTimestamp)))
const orNone = (value: unknown) => (value === undefined || value === '' ? '<none>' : value)

function nodeRoles(labels: Record<string, string>) {
  const roles = Object.keys(labels)
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length))
    .filter((r) => r !== '')
  return roles.length > 0 ? roles.sort().join(',') : '<none>'
}

const selectorText = (selector: unknown) => {
  const labels = (get(selector, 'matchLabels') ?? selector ?? {}) as Record<string, string>
  const text = Object.entries(labels)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  return text === '' ? '<none>' : text
}

const containersOf = (o: KubeObject) =>
  (get(o, 'spec.template.spec.containers') ?? []) as { name: string; image?: string }[]

const byKind: Record<string, { columns: Column[]; cells: Cells }> = {
  Node: {
    columns: [
      nameColumn,
      column('Status'),
      column('Roles'),
      ageColumn,
      column('Version'),
      column('OS-Image', 1),
      column('Kernel-Version', 1),
      column('Container-Runtime', 1),
    ],
    cells: (o, now) => {
      const ready =
        ((get(o, 'status.conditions') ?? []) as { type: string; status: string }[]).find(
          (c) => c.type === 'Ready',
        )?.status === 'True'
      return [
        o.metadata.name,
        ready ? 'Ready' : 'NotReady',
        nodeRoles((o.metadata.labels ?? {}) as Record<string, string>),
        age(o, now),
        get(o, 'status.nodeInfo.kubeletVersion'),
        get(o, 'status.nodeInfo.osImage'),
        get(o, 'status.nodeInfo.kernelVersion'),
        get(o, 'status.nodeInfo.containerRuntimeVersion'),
      ]
    },
  },
  Namespace: {
    columns: [nameColumn, column('Status'), ageColumn],
    cells: (o, now) => [o.metadata.name, get(o, 'status.phase') ?? 'Active', age(o, now)],
  },
  Pod: {
    columns: [
      nameColumn,
      column('Ready'),
      column('Status'),
      column('Restarts', 0, 'string'),
      ageColumn,
      column('IP', 1),
      column('Node', 1),
      column('Nominated Node', 1),
      column('Readiness Gates', 1),
    ],
    cells: (o, now) => {
      const statuses = (get(o, 'status.containerStatuses') ?? []) as {
        ready: boolean
        restartCount: number
      }[]
      const total = ((get(o, 'spec.containers') ?? []) as unknown[]).length
      return [
        o.metadata.name,
        `${statuses.filter((c) => c.ready).length}/${total}`,
        get(o, 'metadata.deletionTimestamp') ? 'Terminating' : (get(o, 'status.phase') ?? 'Pending'),
        String(statuses.reduce((sum, c) => sum + (c.restartCount ?? 0), 0)),
        age(o, now),
        orNone(get(o, 'status.podIP')),
        orNone(get(o, 'spec.nodeName')),
        '<none>',
        '<none>',
      ]
    },
  },
  Deployment: {
    columns: [
      nameColumn,
      column('Ready'),
      column('Up-to-date', 0, 'integer'),
      column('Available', 0, 'integer'),
      ageColumn,
      column('Containers', 1),
      column('Images', 1),
      column('Selector', 1),
    ],
    cells: (o, now) => [
      o.metadata.name,
      `${num(o, 'status.readyReplicas')}/${num(o, 'spec.replicas')}`,
      num(o, 'status.updatedReplicas'),
      num(o, 'status.availableReplicas'),
      age(o, now),
      containersOf(o)
        .map((c) => c.name)
        .join(','),
      containersOf(o)
        .map((c) => c.image)
        .join(','),
      selectorText(get(o, 'spec.selector')),
    ],
  },
  DaemonSet: {
    columns: [
      nameColumn,
      column('Desired', 0, 'integer'),
      column('Current', 0, 'integer'),
      column('Ready', 0, 'integer'),
      column('Up-to-date', 0, 'integer'),
      column('Available', 0, 'integer'),
      column('Node Selector'),
      ageColumn,
    ],
    cells: (o, now) => [
      o.metadata.name,
      num(o, 'status.desiredNumberScheduled'),
      num(o, 'status.currentNumberScheduled'),
      num(o, 'status.numberReady'),
      num(o, 'status.updatedNumberScheduled'),
      num(o, 'status.numberAvailable'),
      selectorText(get(o, 'spec.template.spec.nodeSelector')),
      age(o, now),
    ],
  },
  StatefulSet: {
    columns: [nameColumn, column('Ready'), ageColumn],
    cells: (o, now) => [
      o.metadata.name,
      `${num(o, 'status.readyReplicas')}/${num(o, 'spec.replicas')}`,
      age(o, now),
    ],
  },
  ReplicaSet: {
    columns: [
      nameColumn,
      column('Desired', 0, 'integer'),
      column('Current', 0, 'integer'),
      column('Ready', 0, 'integer'),
      ageColumn,
    ],
    cells: (o, now) => [
      o.metadata.name,
      num(o, 'spec.replicas'),
      num(o, 'status.replicas'),
      num(o, 'status.readyReplicas'),
      age(o, now),
    ],
  },
  Service: {
    columns: [
      nameColumn,
      column('Type'),
      column('Cluster-IP'),
      column('External-IP'),
      column('Port(s)'),
      ageColumn,
      column('Selector', 1),
    ],
    cells: (o, now) => {
      const ports = (get(o, 'spec.ports') ?? []) as { port: number; nodePort?: number; protocol?: string }[]
      const lb = (get(o, 'status.loadBalancer.ingress') ?? []) as { ip?: string }[]
      const type = String(get(o, 'spec.type') ?? 'ClusterIP')
      return [
        o.metadata.name,
        type,
        get(o, 'spec.clusterIP') ?? '<none>',
        lb.length > 0 ? lb.map((i) => i.ip).join(',') : type === 'LoadBalancer' ? '<pending>' : '<none>',
        ports.length > 0
          ? ports
              .map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`)
              .join(',')
          : '<none>',
        age(o, now),
        selectorText(get(o, 'spec.selector')),
      ]
    },
  },
  ConfigMap: {
    columns: [nameColumn, column('Data', 0, 'integer'), ageColumn],
    cells: (o, now) => [
      o.metadata.name,
      Object.keys((o.data ?? {}) as object).length + Object.keys((o.binaryData ?? {}) as object).length,
      age(o, now),
    ],
  },
  Secret: {
    columns: [nameColumn, column('Type'), column('Data', 0, 'integer'), ageColumn],
    cells: (o, now) => [
      o.metadata.name,
      o.type ?? 'Opaque',
      Object.keys((o.data ?? {}) as object).length,
      age(o, now),
    ],
  },
  CustomResourceDefinition: {
    columns: [nameColumn, column('Created At', 0, 'date')],
    cells: (o) => [o.metadata.name, o.metadata.creationTimestamp],
  },
}

function printerColumnsOf(type: ResourceType): { columns: Column[]; cells: Cells } | undefined {
  const printed = type.printerColumns
  if (!printed || printed.length === 0) return undefined
  return {
    columns: [
      nameColumn,
      ...printed.map((c) => ({
        name: c.name,
        type: c.type,
        format: c.format ?? '',
        description: c.description ?? c.name,
        priority: c.priority ?? 0,
      })),
    ],
    cells: (o, now) => [
      o.metadata.name,
      ...printed.map((c) =>
        c.jsonPath === '.metadata.creationTimestamp' ? age(o, now) : (get(o, c.jsonPath) ?? null),
      ),
    ],
  }
}

const fallback = {
  columns: [nameColumn, ageColumn],
  cells: (o: KubeObject, now: number) => [o.metadata.name, age(o, now)],
}

export function table(
  type: ResourceType,
  objects: KubeObject[],
  resourceVersion: string,
  includeObject: string,
) {
  const now = Date.now()
  const printer = byKind[type.kind] ?? printerColumnsOf(type) ?? fallback
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: printer.columns,
    rows: objects.map((o) => ({
      cells: printer.cells(o, now),
      ...(includeObject === 'None'
        ? {}
        : {
            object:
              includeObject === 'Object'
                ? o
                : { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
          }),
    })),
  }
}
