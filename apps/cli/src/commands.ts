import { writeFile } from 'node:fs/promises'
import type { Cluster, Operation, Schemas } from '@kiln/client'
import { type Api, call, connect } from './api.ts'
import { configPath, readConfig, writeConfig } from './config.ts'
import { CliError, ExitCode, usageError } from './errors.ts'
import { followOperation, getOperation, type Progress } from './follow.ts'
import { oidcDeviceLogin, oidcLogin } from './oidc-login.ts'
import { age, type Output, parseDuration, print, table } from './output.ts'

export interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  multiple?: boolean
  /** Shown in --help: `--name VALUE  description`. */
  value?: string
  description: string
}

export interface RunContext {
  api(): Promise<Api>
  out: Output
  progress: Progress
  /** Flags that choose the connection, for commands that write the config (login). */
  connectionFlags: { context?: string; url?: string; token?: string; project?: string }
}

export interface Invocation {
  values: Record<string, string | boolean | string[] | undefined>
  positionals: string[]
}

export interface Command {
  path: string[]
  summary: string
  /** Arguments after the command path, e.g. `NAME`. */
  args: string[]
  options: Record<string, OptionSpec>
  examples: string[]
  run(ctx: RunContext, invocation: Invocation): Promise<void>
}

const waitOption: OptionSpec = {
  type: 'boolean',
  description: 'Follow the operation until it ends; exit 1 if it fails.',
}

const str = (v: Invocation['values'][string]) => (typeof v === 'string' ? v : undefined)
const list = (v: Invocation['values'][string]) => (Array.isArray(v) ? v : typeof v === 'string' ? [v] : [])

/** `k=v` pairs of a repeatable flag. */
function pairs(values: string[], flag: string): [string, string][] {
  return values.map((entry) => {
    const at = entry.indexOf('=')
    if (at <= 0) throw usageError(`${flag} takes KEY=VALUE, not '${entry}'.`)
    return [entry.slice(0, at), entry.slice(at + 1)]
  })
}

/** `T` or `T@3`. */
function templateRef(value: string): { template: string; templateVersion?: number } {
  const [template, version] = value.split('@')
  if (!template) throw usageError('--template needs a template name (see kiln templates list).')
  if (version === undefined) return { template }
  if (!/^\d+$/.test(version)) throw usageError(`--template ${value}: the version after @ is a number.`)
  return { template, templateVersion: Number(version) }
}

const truthy = new Set(['on', 'true', 'yes', 'enabled'])
const falsy = new Set(['off', 'false', 'no', 'disabled'])

/**
 * `--feature gpu=on`, `--feature ingress=nginx`, `--feature monitoring.retentionDays=30`, read with
 * the feature catalogue's JSON Schemas: on/off sets `enabled`, a bare value sets the field whose enum
 * has it, `feature.field=value` sets that field, typed as its schema says.
 */
export function featureOverrides(
  entries: string[],
  catalogue: Schemas['Feature'][],
): Record<string, Record<string, unknown>> {
  const features: Record<string, Record<string, unknown>> = {}
  for (const [key, raw] of pairs(entries, '--feature')) {
    const [name, explicitField] = key.split('.', 2) as [string, string | undefined]
    const feature = catalogue.find((f) => f.name === name)
    if (!feature)
      throw usageError(
        `--feature ${key}: no feature '${name}'; the features are ${catalogue.map((f) => f.name).join(', ')}.`,
      )
    const properties = ((feature.schema as { properties?: Record<string, Record<string, unknown>> })
      .properties ?? {}) as Record<string, { type?: string; enum?: unknown[] }>
    let field = explicitField
    if (!field) {
      if ((truthy.has(raw) || falsy.has(raw)) && properties.enabled) field = 'enabled'
      else field = Object.keys(properties).find((p) => properties[p]!.enum?.includes(raw))
    }
    if (!field || !properties[field]) {
      const fields = Object.entries(properties)
        .map(([p, s]) => `${name}.${p}${s.enum ? ` (${s.enum.join('|')})` : ''}`)
        .join(', ')
      throw usageError(
        `--feature ${key}=${raw}: '${name}' has no field for '${raw}'; its fields are ${fields}.`,
      )
    }
    const type = properties[field]!.type
    let value: unknown = raw
    if (type === 'boolean') {
      if (!truthy.has(raw) && !falsy.has(raw)) throw usageError(`--feature ${key}=${raw}: on or off.`)
      value = truthy.has(raw)
    } else if (type === 'integer' || type === 'number') {
      value = Number(raw)
      if (!Number.isFinite(value)) throw usageError(`--feature ${key}=${raw}: a number.`)
    }
    features[name] = { ...features[name], [field]: value }
  }
  return features
}

/** Every item of a list, following `nextCursor` from page to page (every list is paged alike). */
async function everyPage<T>(
  fetchPage: (query: {
    limit: number
    cursor?: string
  }) => Promise<{ items: T[]; nextCursor: string | null }>,
): Promise<T[]> {
  const items: T[] = []
  let cursor: string | undefined
  do {
    const page = await fetchPage({ limit: 500, ...(cursor ? { cursor } : {}) })
    items.push(...page.items)
    cursor = page.nextCursor ?? undefined
  } while (cursor)
  return items
}

async function catalogue(api: Api) {
  return everyPage((query) => call(api, api.client.GET('/v1/features', { params: { query } })))
}

const clusterPath = (api: Api, name: string) => ({ path: { project: api.project(), cluster: name } })

const nodeCount = (c: Cluster) =>
  c.spec.nodeGroups.reduce((sum, g) => sum + g.count, 0) + (c.spec.controlPlane?.count ?? 0)

const clusterTable = (clusters: Cluster[]) =>
  table(clusters, [
    ['NAME', (c) => c.name],
    ['PHASE', (c) => c.status.phase],
    ['VERSION', (c) => c.spec.kubernetesVersion],
    ['TEMPLATE', (c) => `${c.template.name}@${c.template.version}`],
    ['NODES', nodeCount],
    ['EXPIRES', (c) => c.expiresAt ?? '-'],
    ['AGE', (c) => age(c.createdAt)],
  ])

function clusterDetails(c: Cluster): string {
  const rows: [string, unknown][] = [
    ['Name', c.name],
    ['Project', c.project],
    ['Phase', c.status.phase],
    ['Message', c.status.message],
    ['Kubernetes', c.spec.kubernetesVersion],
    ['Template', `${c.template.name}@${c.template.version}`],
    ['Endpoint', c.status.endpoint],
    ['Labels', Object.entries(c.labels ?? {}).map(([k, v]) => `${k}=${v}`)],
    ['Expires', c.expiresAt],
    ['Operation', c.activeOperationId],
    ['Created', c.createdAt],
  ]
  const head = table(rows, [
    ['FIELD', (r) => r[0]],
    ['VALUE', (r) => r[1]],
  ])
  const groups = table(c.spec.nodeGroups, [
    ['NODE GROUP', (g) => g.name],
    ['MACHINE CLASS', (g) => g.machineClass],
    ['COUNT', (g) => g.count],
    ['ZONES', (g) => g.zones],
  ])
  const conditions = table(c.status.conditions, [
    ['CONDITION', (x) => x.type],
    ['STATUS', (x) => x.status],
    ['REASON', (x) => x.reason],
    ['SINCE', (x) => age(x.lastTransitionTime)],
    ['MESSAGE', (x) => x.message],
  ])
  return `${head}\n\n${groups}\n\n${conditions}`
}

const operationTable = (op: Operation) =>
  `${table(
    [op],
    [
      ['ID', (o) => o.id],
      ['KIND', (o) => o.kind],
      ['STATUS', (o) => o.status],
      ['PROGRESS', (o) => `${o.progress}%`],
      ['RESOURCE', (o) => `${o.resource.kind}/${o.resource.name}`],
    ],
  )}${
    op.error ? `\n\n${op.error.title}: ${op.error.detail} [${op.error.reason}, ${op.error.code}]` : ''
  }\n\n${table(op.steps, [
    ['STEP', (s) => s.name],
    ['STATUS', (s) => s.status],
    ['MESSAGE', (s) => s.message],
  ])}`

/**
 * Starts an operation and either prints it, or (with --wait) follows it and prints `then()` when it
 * succeeded. A failed operation exits 1 (followOperation throws).
 */
async function accepted(
  ctx: RunContext,
  api: Api,
  op: Operation,
  wait: boolean,
  then?: () => Promise<{ value: unknown; render: (v: never) => string } | undefined>,
) {
  ctx.progress.write(`${op.resource.kind} ${op.resource.name}: ${op.kind} operation ${op.id} ${op.status}\n`)
  if (!wait) {
    print(ctx.out, op, operationTable)
    return
  }
  const done = await followOperation(api, op.id, ctx.progress)
  const result = then ? await then() : undefined
  if (result) print(ctx.out, result.value, result.render as (v: unknown) => string)
  else print(ctx.out, done, operationTable)
}

/** What --wait prints once a change to a cluster is done: the cluster as it is now. */
const showCluster = (api: Api, name: string) => async () => ({
  value: await getCluster(api, name),
  render: clusterDetails as (v: never) => string,
})

const getCluster = (api: Api, name: string) =>
  call(api, api.client.GET('/v1/projects/{project}/clusters/{cluster}', { params: clusterPath(api, name) }))

const templateTable = (rows: Schemas['ClusterTemplate'][]) =>
  table(rows, [
    ['NAME', (t) => t.name],
    ['VERSION', (t) => t.version],
    ['KUBERNETES', (t) => `${t.kubernetesVersion} (${t.kubernetesVersionLifecycle})`],
    ['BACKEND', (t) => t.backend],
    ['NODE GROUPS', (t) => t.nodeGroups.map((g) => `${g.name}=${g.count}×${g.machineClass}`)],
    ['LOCKED', (t) => t.lockedFeatures],
    ['DESCRIPTION', (t) => t.description],
  ])

export const commands: Command[] = [
  {
    path: ['login'],
    summary: 'Save an API URL and token (or an OIDC login) as a named context, after checking them',
    args: [],
    options: {
      oidc: {
        type: 'boolean',
        description: 'Sign in with your browser at Kiln’s identity provider instead of a token.',
      },
      'no-browser': { type: 'boolean', description: 'With --oidc: only print the URL to open.' },
      device: {
        type: 'boolean',
        description: 'With --oidc: sign in on another device with a code (no browser needed here).',
      },
    },
    examples: [
      'kiln login --url https://kiln.example.org --token kiln_ab12cd34_… --project ml-team',
      'kiln login --url https://kiln.example.org --oidc --project ml-team',
      'kiln login --url https://kiln.example.org --oidc --device   # over SSH: a URL and a code',
      'kiln login --context staging --url https://kiln-staging.example.org --token "$STAGING_TOKEN"',
      '# In CI, skip login: export KILN_URL=… KILN_TOKEN=… KILN_PROJECT=…',
    ],
    async run(ctx, { values }) {
      const flags = ctx.connectionFlags
      if (!flags.url) throw usageError('kiln login needs --url (and --token or --oidc).')
      if (values.oidc && flags.token) throw usageError('kiln login takes --token or --oidc, not both.')
      if (values.device && !values.oidc)
        throw usageError('--device goes with --oidc: kiln login --oidc --device.')
      // Checked before it is saved: the context may not exist yet, so no saved one is read.
      const unauthenticated = connect({ url: flags.url })
      let token = flags.token
      let tokenExpiresAt: string | undefined
      if (values.oidc) {
        const tokens = values.device
          ? await oidcDeviceLogin(unauthenticated, ctx.progress)
          : await oidcLogin(unauthenticated, ctx.progress, { openBrowser: !values['no-browser'] })
        token = tokens.accessToken
        tokenExpiresAt = tokens.expiresAt
      }
      const api = connect({
        url: flags.url,
        ...(token ? { token } : {}),
        ...(flags.project ? { project: flags.project } : {}),
      })
      const me = await call(api, api.client.GET('/v1/me'))
      const path = configPath()
      const config = await readConfig(path)
      const name = flags.context ?? config.currentContext ?? 'default'
      config.contexts[name] = {
        url: flags.url,
        ...(token ? { token } : {}),
        ...(tokenExpiresAt ? { tokenExpiresAt } : {}),
        ...(flags.project ? { project: flags.project } : {}),
      }
      config.currentContext = name
      await writeConfig(config, path)
      ctx.progress.write(
        `Logged in to ${flags.url} as ${me.subject}${tokenExpiresAt ? ` until ${tokenExpiresAt}` : ''}; context '${name}' saved in ${path}.\n`,
      )
      print(
        ctx.out,
        { context: name, url: flags.url, subject: me.subject, project: flags.project ?? null },
        (v) =>
          table(
            [v],
            [
              ['CONTEXT', (x) => x.context],
              ['URL', (x) => x.url],
              ['SUBJECT', (x) => x.subject],
              ['PROJECT', (x) => x.project],
            ],
          ),
      )
    },
  },
  {
    path: ['context', 'list'],
    summary: 'List the saved contexts',
    args: [],
    options: {},
    examples: ['kiln context list'],
    async run(ctx) {
      const config = await readConfig()
      const rows = Object.entries(config.contexts).map(([name, c]) => ({
        name,
        current: name === config.currentContext,
        url: c.url,
        project: c.project ?? null,
      }))
      print(ctx.out, rows, (r) =>
        table(r, [
          ['CURRENT', (x) => (x.current ? '*' : '')],
          ['NAME', (x) => x.name],
          ['URL', (x) => x.url],
          ['PROJECT', (x) => x.project],
        ]),
      )
    },
  },
  {
    path: ['context', 'use'],
    summary: 'Make a saved context the current one',
    args: ['NAME'],
    options: {},
    examples: ['kiln context use staging'],
    async run(ctx, { positionals: [name] }) {
      const config = await readConfig()
      if (!config.contexts[name!])
        throw new CliError(ExitCode.notFound, `No context '${name}'; see kiln context list.`)
      config.currentContext = name!
      await writeConfig(config)
      ctx.progress.write(`Current context: ${name}\n`)
    },
  },
  {
    path: ['templates', 'list'],
    summary: 'List the cluster templates you can use',
    args: [],
    options: {},
    examples: ['kiln templates list', 'kiln templates list -o yaml'],
    async run(ctx) {
      const api = await ctx.api()
      const project = api.context.project ? { project: api.context.project } : {}
      const items = await everyPage((query) =>
        call(api, api.client.GET('/v1/templates', { params: { query: { ...query, ...project } } })),
      )
      print(ctx.out, items, templateTable)
    },
  },
  {
    path: ['templates', 'delete'],
    summary: 'Delete a template and all its versions (platform admins; refused while clusters use it)',
    args: ['NAME'],
    options: {},
    examples: ['kiln templates delete k8s-1.29'],
    async run(ctx, { positionals: [name] }) {
      const api = await ctx.api()
      await call(
        api,
        api.client.DELETE('/v1/templates/{template}', { params: { path: { template: name! } } }),
      )
      ctx.progress.write(`Deleted template ${name} (every version).\n`)
    },
  },
  {
    path: ['admin', 'rotate-master-key'],
    summary:
      'Re-seal every cluster private key with the newest master key (platform admins; see docs/operations.md)',
    args: [],
    options: {},
    examples: ['kiln admin rotate-master-key'],
    async run(ctx) {
      const api = await ctx.api()
      const rotation = await call(api, api.client.POST('/v1/master-key-rotations'))
      print(ctx.out, rotation, (r) =>
        table(
          [r],
          [
            ['KEY', (x) => x.keyId],
            ['RESEALED', (x) => x.resealed],
            ['ALREADY-CURRENT', (x) => x.alreadyCurrent],
            ['REMAINING', (x) => x.remaining],
            ['TOTAL', (x) => x.total],
          ],
        ),
      )
      if (rotation.remaining > 0) {
        ctx.progress.write(
          `${rotation.remaining} key(s) were sealed meanwhile with an older key: restart every process with the new KILN_MASTER_KEYS, then run this again.\n`,
        )
      }
    },
  },
  {
    path: ['features', 'list'],
    summary: 'List the features a cluster can switch (--feature NAME=VALUE)',
    args: [],
    options: {},
    examples: ['kiln features list', 'kiln features list -o json | jq ".[].name"'],
    async run(ctx) {
      const api = await ctx.api()
      print(ctx.out, await catalogue(api), (rows) =>
        table(rows, [
          ['NAME', (f) => f.name],
          ['DEFAULT', (f) => JSON.stringify(f.default)],
          ['MUTABLE', (f) => f.mutable],
          ['PER GROUP', (f) => f.nodeGroupScoped],
          ['BACKENDS', (f) => f.backends],
          ['TITLE', (f) => f.title],
        ]),
      )
    },
  },
  {
    path: ['machine-classes', 'list'],
    summary: 'List machine classes (sizes) of every backend',
    args: [],
    options: {
      backend: { type: 'string', value: 'NAME', description: 'Only this backend’s classes.' },
      gpu: { type: 'boolean', description: 'Only classes with GPUs.' },
    },
    examples: ['kiln machine-classes list', 'kiln machine-classes list --gpu --backend metal'],
    async run(ctx, { values }) {
      const api = await ctx.api()
      const filters = {
        ...(str(values.backend) ? { backend: str(values.backend) } : {}),
        ...(values.gpu ? { gpu: true } : {}),
      }
      const items = await everyPage((query) =>
        call(api, api.client.GET('/v1/machine-classes', { params: { query: { ...query, ...filters } } })),
      )
      print(ctx.out, items, (rows) =>
        table(rows, [
          ['NAME', (m) => m.name],
          ['BACKEND', (m) => m.backend],
          ['CPU', (m) => m.cpu],
          ['MEMORY', (m) => `${Math.round(m.memoryMiB / 1024)}Gi`],
          ['GPU', (m) => (m.gpuCount ? `${m.gpuCount}×${m.gpuModel}` : '-')],
          ['ZONES', (m) => m.zones],
        ]),
      )
    },
  },
  {
    path: ['cluster', 'create'],
    summary: 'Create a cluster from a template',
    args: ['NAME'],
    options: {
      template: { type: 'string', short: 't', value: 'T[@VERSION]', description: 'Template (and version).' },
      nodes: {
        type: 'string',
        multiple: true,
        value: 'GROUP=COUNT',
        description: 'Node group size; repeat.',
      },
      feature: {
        type: 'string',
        multiple: true,
        value: 'NAME=VALUE',
        description: 'gpu=on, ingress=nginx, monitoring.retentionDays=30; repeat.',
      },
      label: { type: 'string', multiple: true, value: 'KEY=VALUE', description: 'Cluster label; repeat.' },
      ttl: { type: 'string', value: 'DURATION', description: 'Delete the cluster after this long (2h, 1d).' },
      'idempotency-key': {
        type: 'string',
        value: 'KEY',
        description: 'Retries with the same key return the first answer: one cluster.',
      },
      wait: waitOption,
      'dry-run': {
        type: 'boolean',
        description: 'Validate and show the plan and quota use; create nothing.',
      },
    },
    examples: [
      'kiln cluster create ci-4711 --template k8s-1.31 --ttl 2h --wait',
      'kiln cluster create gpu-lab -t k8s-1.31-gpu@2 --nodes gpu=2 --feature ingress=nginx --label team=ml',
      'kiln cluster create ci-$CI_PIPELINE_ID -t k8s-1.32 --idempotency-key $CI_JOB_ID --wait -o json',
      'kiln cluster create test -t k8s-1.31 --feature monitoring=on --dry-run',
    ],
    async run(ctx, { values, positionals: [name] }) {
      const api = await ctx.api()
      const templateFlag = str(values.template)
      if (!templateFlag) throw usageError('kiln cluster create needs --template T (see kiln templates list).')
      const features = list(values.feature)
      const body = {
        name: name!,
        ...templateRef(templateFlag),
        ...(list(values.label).length
          ? { labels: Object.fromEntries(pairs(list(values.label), '--label')) }
          : {}),
        ...(str(values.ttl)
          ? {
              expiresAt: new Date(Date.now() + parseDuration(str(values.ttl)!, '--ttl') * 1000).toISOString(),
            }
          : {}),
        ...(features.length ? { features: featureOverrides(features, await catalogue(api)) } : {}),
        ...(list(values.nodes).length
          ? {
              nodeGroups: pairs(list(values.nodes), '--nodes').map(([group, count]) => {
                if (!/^\d+$/.test(count))
                  throw usageError(`--nodes ${group}=${count}: the count is a number.`)
                return { name: group, count: Number(count) }
              }),
            }
          : {}),
      }
      const key = str(values['idempotency-key'])
      if (values['dry-run']) {
        const plan = await call(
          api,
          api.client.POST('/v1/projects/{project}/cluster-plans', {
            params: { path: { project: api.project() } },
            body: body as never,
          }),
        )
        print(ctx.out, plan, (p) => JSON.stringify(p, null, 2))
        return
      }
      const op = await call(
        api,
        api.client.POST('/v1/projects/{project}/clusters', {
          params: {
            path: { project: api.project() },
            ...(key ? { header: { 'idempotency-key': key } } : {}),
          },
          body: body as never,
        }),
      )
      await accepted(ctx, api, op, Boolean(values.wait), showCluster(api, name!))
    },
  },
  {
    path: ['cluster', 'get'],
    summary: 'Show a cluster: phase, conditions, node groups',
    args: ['NAME'],
    options: {},
    examples: ['kiln cluster get ci-4711', 'kiln cluster get ci-4711 -o json | jq -r .status.phase'],
    async run(ctx, { positionals: [name] }) {
      const api = await ctx.api()
      print(ctx.out, await getCluster(api, name!), clusterDetails)
    },
  },
  {
    path: ['cluster', 'list'],
    summary: 'List the project’s clusters',
    args: [],
    options: {
      label: {
        type: 'string',
        multiple: true,
        value: 'KEY=VALUE',
        description: 'Only with this label; repeat.',
      },
      phase: { type: 'string', value: 'PHASE', description: 'Only in this phase (Ready, Provisioning, …).' },
      template: { type: 'string', value: 'NAME', description: 'Only from this template.' },
    },
    examples: ['kiln cluster list', 'kiln cluster list --label pipeline=4711 --phase Ready -o json'],
    async run(ctx, { values }) {
      const api = await ctx.api()
      const filters = {
        ...(list(values.label).length ? { label: list(values.label) } : {}),
        ...(str(values.phase) ? { phase: str(values.phase) as Cluster['status']['phase'] } : {}),
        ...(str(values.template) ? { template: str(values.template) } : {}),
      }
      const clusters = await everyPage((query) =>
        call(
          api,
          api.client.GET('/v1/projects/{project}/clusters', {
            params: { path: { project: api.project() }, query: { ...query, ...filters } },
          }),
        ),
      )
      print(ctx.out, clusters, clusterTable)
    },
  },
  {
    path: ['cluster', 'delete'],
    summary: 'Delete a cluster and release its machines',
    args: ['NAME'],
    options: { wait: waitOption },
    examples: ['kiln cluster delete ci-4711 --wait'],
    async run(ctx, { values, positionals: [name] }) {
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.DELETE('/v1/projects/{project}/clusters/{cluster}', { params: clusterPath(api, name!) }),
      )
      await accepted(ctx, api, op, Boolean(values.wait))
    },
  },
  {
    path: ['cluster', 'resize'],
    summary: 'Change the size of a node group',
    args: ['NAME', 'GROUP=COUNT'],
    options: { wait: waitOption },
    examples: ['kiln cluster resize ci-4711 workers=5 --wait'],
    async run(ctx, { values, positionals: [name, size] }) {
      const [[group, count]] = pairs([size!], 'GROUP=COUNT') as [[string, string]]
      if (!/^\d+$/.test(count)) throw usageError(`${size}: the count is a number.`)
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.POST('/v1/projects/{project}/clusters/{cluster}/nodegroups/{nodegroup}/resize', {
          params: { path: { project: api.project(), cluster: name!, nodegroup: group } },
          body: { count: Number(count) },
        }),
      )
      await accepted(ctx, api, op, Boolean(values.wait), showCluster(api, name!))
    },
  },
  {
    path: ['cluster', 'upgrades'],
    summary: 'List the template versions a cluster can be upgraded to now',
    args: ['NAME'],
    options: {},
    examples: ['kiln cluster upgrades ci-4711', "kiln cluster upgrades ci-4711 -o json | jq -r '.[0].name'"],
    async run(ctx, { positionals: [name] }) {
      const api = await ctx.api()
      const items = await everyPage((query) =>
        call(
          api,
          api.client.GET('/v1/projects/{project}/clusters/{cluster}/upgrades', {
            params: { ...clusterPath(api, name!), query },
          }),
        ),
      )
      print(ctx.out, items, templateTable)
    },
  },
  {
    path: ['cluster', 'upgrade'],
    summary: 'Upgrade a cluster to a newer template version',
    args: ['NAME'],
    options: {
      template: {
        type: 'string',
        short: 't',
        value: 'T[@VERSION]',
        description: 'Target template; default: the newest version of its own.',
      },
      wait: waitOption,
    },
    examples: ['kiln cluster upgrade ci-4711 --wait', 'kiln cluster upgrade ci-4711 -t k8s-1.32 --wait'],
    async run(ctx, { values, positionals: [name] }) {
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.POST('/v1/projects/{project}/clusters/{cluster}/upgrade', {
          params: clusterPath(api, name!),
          body: str(values.template) ? templateRef(str(values.template)!) : {},
        }),
      )
      await accepted(ctx, api, op, Boolean(values.wait), showCluster(api, name!))
    },
  },
  {
    path: ['cluster', 'features', 'set'],
    summary: 'Change features of a live cluster',
    args: ['NAME'],
    options: {
      feature: {
        type: 'string',
        multiple: true,
        value: 'NAME=VALUE',
        description: 'monitoring=on, ingress=traefik; repeat.',
      },
      wait: waitOption,
    },
    examples: ['kiln cluster features set ci-4711 --feature monitoring=on --feature ingress=nginx --wait'],
    async run(ctx, { values, positionals: [name] }) {
      const entries = list(values.feature)
      if (entries.length === 0)
        throw usageError('kiln cluster features set needs at least one --feature NAME=VALUE.')
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.PATCH('/v1/projects/{project}/clusters/{cluster}', {
          params: clusterPath(api, name!),
          body: { features: featureOverrides(entries, await catalogue(api)) as never },
        }),
      )
      await accepted(ctx, api, op, Boolean(values.wait), showCluster(api, name!))
    },
  },
  {
    path: ['kubeconfig'],
    summary: 'Write a kubeconfig for a cluster (to stdout, or to a file with -o)',
    args: ['NAME'],
    options: {
      ttl: {
        type: 'string',
        value: 'DURATION',
        description: 'How long the credential lasts (5m–7d; default 24h).',
      },
      output: { type: 'string', short: 'o', value: 'FILE', description: 'Write to FILE (mode 0600).' },
    },
    examples: [
      'kiln kubeconfig ci-4711 --ttl 1h -o kubeconfig && kubectl --kubeconfig kubeconfig get nodes',
      'kiln kubeconfig ci-4711 > ~/.kube/ci-4711',
    ],
    async run(ctx, { values, positionals: [name] }) {
      const api = await ctx.api()
      const ttl = str(values.ttl)
      const issued = await call(
        api,
        api.client.POST('/v1/projects/{project}/clusters/{cluster}/kubeconfig', {
          params: clusterPath(api, name!),
          body: ttl ? { ttlSeconds: parseDuration(ttl, '--ttl') } : {},
        }),
      )
      const file = str(values.output)
      if (file) {
        await writeFile(file, issued.kubeconfig, { mode: 0o600 })
        ctx.progress.write(
          `Wrote ${file} for cluster ${name} (${issued.username}, expires ${issued.expiresAt}).\n`,
        )
      } else {
        ctx.out.write(issued.kubeconfig.endsWith('\n') ? issued.kubeconfig : `${issued.kubeconfig}\n`)
      }
    },
  },
  {
    path: ['operation', 'get'],
    summary: 'Show an operation and its steps',
    args: ['ID'],
    options: {},
    examples: ['kiln operation get 0b6c…'],
    async run(ctx, { positionals: [id] }) {
      const api = await ctx.api()
      print(ctx.out, await getOperation(api, id!), operationTable)
    },
  },
  {
    path: ['operation', 'wait'],
    summary: 'Follow an operation until it ends; exit 1 if it fails',
    args: ['ID'],
    options: {},
    examples: ['kiln operation wait 0b6c…'],
    async run(ctx, { positionals: [id] }) {
      const api = await ctx.api()
      print(ctx.out, await followOperation(api, id!, ctx.progress), operationTable)
    },
  },
  {
    path: ['operation', 'cancel'],
    summary: 'Ask a running operation to stop at its next step',
    args: ['ID'],
    options: { wait: waitOption },
    examples: ['kiln operation cancel 0b6c…'],
    async run(ctx, { values, positionals: [id] }) {
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.POST('/v1/operations/{operation}/cancel', { params: { path: { operation: id! } } }),
      )
      if (!values.wait) return print(ctx.out, op, operationTable)
      try {
        await followOperation(api, id!, ctx.progress)
      } catch (error) {
        // Cancelled is what was asked for.
        if (!(error instanceof CliError && /was cancelled/.test(error.message))) throw error
      }
      print(ctx.out, await getOperation(api, id!), operationTable)
    },
  },
  {
    path: ['operation', 'retry'],
    summary: 'Retry a failed operation from the step that failed',
    args: ['ID'],
    options: { wait: waitOption },
    examples: ['kiln operation retry 0b6c… --wait'],
    async run(ctx, { values, positionals: [id] }) {
      const api = await ctx.api()
      const op = await call(
        api,
        api.client.POST('/v1/operations/{operation}/retry', { params: { path: { operation: id! } } }),
      )
      await accepted(ctx, api, op, Boolean(values.wait))
    },
  },
]
