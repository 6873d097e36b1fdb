import { type FormEvent, useCallback, useEffect, useId, useRef, useState } from 'react'
import {
  type ApiProblem,
  api,
  type Cluster,
  type ClusterTemplate,
  call,
  type Feature,
  type FeatureOverrides,
  type Operation,
  useAction,
  useLoad,
} from '../api.ts'
import {
  baselineValues,
  changedValues,
  FeatureControls,
  type FeatureValues,
  featurePointer,
} from '../components/feature-controls.tsx'
import { OperationPanel } from '../components/operation-panel.tsx'
import { invalidProps, ProblemAlert, splitErrors } from '../components/problem.tsx'
import { Table } from '../components/table.tsx'
import { formatLabels, formatTime, formatValue } from '../format.ts'
import { navigate, paths, useLocation } from '../router.ts'
import { NotFoundPage, Redirect } from './simple.tsx'

const transitional = new Set(['Pending', 'Provisioning', 'Updating', 'Deleting'])

interface Props {
  project: string
  cluster: string
  canMutate: boolean
}

export function ClusterPage({ project, cluster: name, canMutate }: Props) {
  const { search } = useLocation()
  const loaded = useLoad(`cluster:${project}/${name}`, (signal) =>
    call(
      api.GET('/v1/projects/{project}/clusters/{cluster}', {
        params: { path: { project, cluster: name }, query: { limit: 500 } },
        signal,
      }),
    ),
  )
  const cluster = loaded.data
  const { reload } = loaded
  const features = useLoad(canMutate ? 'features' : null, (signal) =>
    call(api.GET('/v1/features', { params: { query: { limit: 500 } }, signal })),
  )
  const templateName = cluster?.template.name
  const templates = useLoad(templateName ? `templates:${project}:${templateName}` : null, (signal) =>
    call(
      api.GET('/v1/templates', { params: { query: { project, name: templateName, limit: 500 } }, signal }),
    ),
  )

  // What the cluster can be upgraded to, as the API decides; asked again once its template changed.
  const current = cluster ? `${cluster.template.name}@${cluster.template.version}` : null
  const upgrades = useLoad(canMutate && current ? `upgrades:${project}/${name}:${current}` : null, (signal) =>
    call(
      api.GET('/v1/projects/{project}/clusters/{cluster}/upgrades', {
        params: { path: { project, cluster: name }, query: { limit: 500 } },
        signal,
      }),
    ),
  )

  // The operation on screen: the one named in the URL, the cluster's active one, or one just started here.
  const [followed, setFollowed] = useState<{ id: string; seq: number } | undefined>(() => {
    const id = search.get('operation')
    return id ? { id, seq: 0 } : undefined
  })
  const activeId = cluster?.activeOperationId
  useEffect(() => {
    if (activeId) setFollowed((current) => (current?.id === activeId ? current : { id: activeId, seq: 0 }))
  }, [activeId])
  const follow = useCallback(
    (operation: Operation) => {
      setFollowed((current) => ({ id: operation.id, seq: (current?.seq ?? 0) + 1 }))
      reload()
    },
    [reload],
  )

  // A deleted cluster answers 404: then the list is where to go, not the Not found page.
  const deleting = useRef(false)
  if (cluster?.deletionRequested || cluster?.status.phase === 'Deleting') deleting.current = true
  const onFinished = (operation: Operation) => {
    if (operation.kind === 'cluster.delete' && operation.status === 'succeeded')
      navigate(paths.clusters(project))
    else reload()
  }

  // While an operation runs its stream drives the reloads; otherwise a phase still in motion (the
  // worker observes the cluster after the operation) is polled until it settles.
  const settling = cluster !== undefined && !activeId && transitional.has(cluster.status.phase)
  useEffect(() => {
    if (!settling) return
    const timer = setInterval(reload, 3000)
    return () => clearInterval(timer)
  }, [settling, reload])

  if (loaded.problem?.status === 404) {
    return deleting.current ? <Redirect to={paths.clusters(project)} /> : <NotFoundPage />
  }
  if (!cluster) return loaded.problem ? <ProblemAlert problem={loaded.problem} /> : <p>Loading…</p>
  const template = templates.data?.items.find((t) => t.version === cluster.template.version)
  return (
    <>
      <h1>{cluster.name}</h1>
      {loaded.problem && <ProblemAlert problem={loaded.problem} />}
      <dl className="facts summary">
        <dt>Phase</dt>
        <dd>
          <span data-testid="cluster-phase" className={`phase phase-${cluster.status.phase}`}>
            {cluster.status.phase}
          </span>
        </dd>
        <dt>Message</dt>
        <dd>{cluster.status.message || '—'}</dd>
        <dt>Kubernetes</dt>
        <dd>{cluster.spec.kubernetesVersion}</dd>
        <dt>Template</dt>
        <dd>
          {cluster.template.name}@{cluster.template.version}
        </dd>
        <dt>Endpoint</dt>
        <dd>{cluster.status.endpoint ? <code>{cluster.status.endpoint}</code> : '—'}</dd>
        <dt>Labels</dt>
        <dd>{formatLabels(cluster.labels)}</dd>
        <dt>Expires</dt>
        <dd>{cluster.expiresAt ? formatTime(cluster.expiresAt) : 'never'}</dd>
      </dl>
      <NotConverged cluster={cluster} />
      {followed && (
        <OperationPanel
          key={`${followed.id}:${followed.seq}`}
          operationId={followed.id}
          canMutate={canMutate}
          onFinished={onFinished}
          onFollow={follow}
        />
      )}
      <Conditions cluster={cluster} />
      <NodeGroups project={project} cluster={cluster} canMutate={canMutate} onOperation={follow} />
      <Configuration cluster={cluster} />
      {canMutate && (
        <section className="panel" aria-labelledby="features-heading">
          <h2 id="features-heading">Features</h2>
          {features.problem && <ProblemAlert problem={features.problem} />}
          {features.data ? (
            <FeatureToggles
              key={JSON.stringify(cluster.spec.features)}
              project={project}
              cluster={cluster}
              features={features.data.items.filter((f) => f.mutable)}
              locked={template?.lockedFeatures}
              onOperation={follow}
              onUpdated={reload}
            />
          ) : (
            !features.problem && <p>Loading…</p>
          )}
        </section>
      )}
      {canMutate && (
        <Upgrade
          project={project}
          cluster={cluster}
          targets={upgrades.data?.items}
          loadProblem={upgrades.problem}
          onOperation={follow}
        />
      )}
      <Kubeconfig project={project} cluster={cluster} />
      {canMutate && (
        <Delete
          project={project}
          cluster={cluster}
          onOperation={(operation) => {
            deleting.current = true
            follow(operation)
          }}
        />
      )}
    </>
  )
}

/**
 * A cluster built differently from its spec (a change cancelled or failed half-way) says so at the
 * top, in the API's own words: the phase alone would not tell what is missing or what to do.
 */
function NotConverged({ cluster }: { cluster: Cluster }) {
  const specApplied = cluster.status.conditions.find((c) => c.type === 'SpecApplied')
  if (specApplied?.status !== 'False') return null
  return (
    <div className="alert" role="status" data-testid="not-converged">
      <p className="alert-title">Not converged ({specApplied.reason})</p>
      <p>{specApplied.message}</p>
    </div>
  )
}

function Conditions({ cluster }: { cluster: Cluster }) {
  return (
    <section className="panel" aria-labelledby="conditions-heading">
      <h2 id="conditions-heading">Conditions</h2>
      <Table head={['Type', 'Status', 'Reason', 'Message', 'Since']}>
        {cluster.status.conditions.map((c) => (
          <tr key={c.type}>
            <td>{c.type}</td>
            <td>{c.status}</td>
            <td>{c.reason}</td>
            <td>{c.message}</td>
            <td>{formatTime(c.lastTransitionTime)}</td>
          </tr>
        ))}
      </Table>
    </section>
  )
}

/** Effective values with where each came from, read from the spec's and node groups' provenance. */
function Configuration({ cluster }: { cluster: Cluster }) {
  const { spec } = cluster
  const rows: { key: string; value: unknown; source: string | undefined }[] = [
    {
      key: 'controlPlane.count',
      value: spec.controlPlane.count,
      source: spec.provenance['/controlPlane/count'],
    },
    {
      key: 'controlPlane.machineClass',
      value: spec.controlPlane.machineClass,
      source: spec.provenance['/controlPlane/machineClass'],
    },
  ]
  for (const [feature, values] of Object.entries(spec.features)) {
    for (const [property, value] of Object.entries(values)) {
      rows.push({
        key: `${feature}.${property}`,
        value,
        source: spec.provenance[featurePointer(feature, property)],
      })
    }
  }
  // Node-group values only where a group overrides the cluster; the rest repeat the rows above.
  for (const group of spec.nodeGroups) {
    for (const [pointer, source] of Object.entries(group.provenance)) {
      const [, root, feature, property] = pointer.split('/')
      if (source !== 'nodeGroup' || root !== 'features' || !feature || !property) continue
      rows.push({
        key: `${group.name}: ${feature}.${property}`,
        value: group.features[feature]?.[property],
        source,
      })
    }
  }
  return (
    <section className="panel" aria-labelledby="config-heading">
      <h2 id="config-heading">Effective configuration</h2>
      <Table head={['Setting', 'Value', 'Source']}>
        {rows.map((row) => (
          <tr key={row.key}>
            <td>
              <code>{row.key}</code>
            </td>
            <td>
              <code>{formatValue(row.value)}</code>
            </td>
            <td>{row.source ?? '—'}</td>
          </tr>
        ))}
      </Table>
    </section>
  )
}

interface SectionProps {
  project: string
  cluster: Cluster
  onOperation: (operation: Operation) => void
}

function NodeGroups({ project, cluster, canMutate, onOperation }: SectionProps & { canMutate: boolean }) {
  return (
    <section className="panel" aria-labelledby="nodegroups-heading">
      <h2 id="nodegroups-heading">Node groups</h2>
      <Table head={['Name', 'Machine class', 'Count', 'Zones', ...(canMutate ? ['Resize'] : [])]}>
        {cluster.spec.nodeGroups.map((group) => (
          <tr key={group.id}>
            <td>{group.name}</td>
            <td>{group.machineClass}</td>
            <td>
              {group.count} <span className="muted">({`${group.minCount}–${group.maxCount}`})</span>
            </td>
            <td>{group.zones.join(', ') || '—'}</td>
            {canMutate && (
              <td>
                <ResizeForm
                  key={`${group.id}:${group.count}`}
                  project={project}
                  cluster={cluster}
                  group={group}
                  onOperation={onOperation}
                />
              </td>
            )}
          </tr>
        ))}
      </Table>
    </section>
  )
}

type NodeGroup = Cluster['spec']['nodeGroups'][number]

function ResizeForm({ project, cluster, group, onOperation }: SectionProps & { group: NodeGroup }) {
  const id = useId()
  const [count, setCount] = useState(String(group.count))
  const { run, busy, problem } = useAction()
  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const path = { project, cluster: cluster.name, nodegroup: group.name }
    const operation = await run(() =>
      call(
        api.POST('/v1/projects/{project}/clusters/{cluster}/nodegroups/{nodegroup}/resize', {
          params: { path },
          body: { count: Number(count) },
        }),
      ),
    )
    if (operation) onOperation(operation)
  }
  const message =
    problem && [problem.detail || problem.title, ...problem.errors.map((e) => e.message)].join(' ')
  return (
    <form className="inline-form" onSubmit={submit} noValidate>
      <label htmlFor={`${id}-count`}>{group.name} size</label>
      <input
        id={`${id}-count`}
        type="number"
        step={1}
        min={group.minCount}
        max={group.maxCount}
        value={count}
        onChange={(e) => setCount(e.target.value)}
        {...invalidProps(message, `${id}-count`)}
      />
      <button type="submit" disabled={busy}>
        Resize
      </button>
      {message && (
        <p id={`${id}-count-error`} role="alert" className="field-error">
          {message}
        </p>
      )}
    </form>
  )
}

interface TogglesProps extends SectionProps {
  features: Feature[]
  locked: string[] | undefined
  onUpdated: () => void
}

function FeatureToggles({ project, cluster, features, locked, onOperation, onUpdated }: TogglesProps) {
  const id = useId()
  const baseline = baselineValues(features, cluster.spec.features)
  const [values, setValues] = useState<FeatureValues>(baseline)
  const [notice, setNotice] = useState('')
  const { run, busy, problem } = useAction()
  const { fields, rest } = splitErrors(problem?.errors ?? [], (pointer) =>
    /^\/features\/[^/]+\/[^/]+$/.test(pointer) ? pointer : undefined,
  )

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const changed = changedValues(values, baseline)
    setNotice(changed ? '' : 'Nothing to apply: every value is as it is now.')
    if (!changed) return
    const path = { project, cluster: cluster.name }
    const answer = await run(() =>
      call(
        api.PATCH('/v1/projects/{project}/clusters/{cluster}', {
          params: { path },
          body: { features: changed as FeatureOverrides },
        }),
      ),
    )
    // An operation already succeeded had nothing to build: the cluster is updated, nothing to follow.
    if (answer?.status === 'succeeded') onUpdated()
    else if (answer) onOperation(answer)
  }

  if (features.length === 0) return <p>No feature can change on a live cluster.</p>
  return (
    <form className="stack" onSubmit={submit} noValidate>
      {problem && <ProblemAlert problem={problem} errors={rest} />}
      <FeatureControls
        features={features}
        values={values}
        onChange={setValues}
        locked={locked}
        errors={fields}
        idPrefix={`${id}-toggle`}
      />
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Apply features
        </button>
        <span aria-live="polite">{notice}</span>
      </div>
    </form>
  )
}

interface UpgradeProps extends SectionProps {
  targets: ClusterTemplate[] | undefined
  loadProblem: ApiProblem | undefined
}

function Upgrade({ project, cluster, targets, loadProblem, onOperation }: UpgradeProps) {
  const id = useId()
  const [choice, setChoice] = useState('')
  const { run, busy, problem } = useAction()
  const selected = targets?.find((t) => t.id === choice) ?? targets?.[0]

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    if (!selected) return
    const path = { project, cluster: cluster.name }
    const body = { template: selected.name, templateVersion: selected.version }
    const operation = await run(() =>
      call(api.POST('/v1/projects/{project}/clusters/{cluster}/upgrade', { params: { path }, body })),
    )
    if (operation) onOperation(operation)
  }

  return (
    <section className="panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>Upgrade</h2>
      {loadProblem && <ProblemAlert problem={loadProblem} />}
      {problem && <ProblemAlert problem={problem} />}
      {!targets ? (
        !loadProblem && <p>Loading…</p>
      ) : targets.length === 0 ? (
        <p>Up to date</p>
      ) : (
        <form className="inline-form" onSubmit={submit}>
          <label htmlFor={`${id}-version`}>Upgrade to</label>
          <select id={`${id}-version`} value={selected?.id} onChange={(e) => setChoice(e.target.value)}>
            {targets.map((t) => (
              <option key={t.id} value={t.id}>
                {t.name}@{t.version} (Kubernetes {t.kubernetesVersion}
                {t.kubernetesVersionLifecycle === 'deprecated' ? ', deprecated' : ''})
              </option>
            ))}
          </select>
          <button type="submit" disabled={busy}>
            Upgrade
          </button>
        </form>
      )}
    </section>
  )
}

const lifetimes = [
  { seconds: 3600, label: '1 hour' },
  { seconds: 28800, label: '8 hours' },
  { seconds: 86400, label: '24 hours' },
  { seconds: 604800, label: '7 days' },
]

function Kubeconfig({ project, cluster }: { project: string; cluster: Cluster }) {
  const id = useId()
  const [ttl, setTtl] = useState('3600')
  const [notice, setNotice] = useState('')
  const { run, busy, problem } = useAction()

  const download = async (event: FormEvent) => {
    event.preventDefault()
    const path = { project, cluster: cluster.name }
    const issued = await run(() =>
      call(
        api.POST('/v1/projects/{project}/clusters/{cluster}/kubeconfig', {
          params: { path },
          body: { ttlSeconds: Number(ttl) },
        }),
      ),
    )
    if (!issued) return
    const url = URL.createObjectURL(new Blob([issued.kubeconfig], { type: 'application/yaml' }))
    const link = document.createElement('a')
    link.href = url
    link.download = `${cluster.name}.kubeconfig`
    document.body.append(link)
    link.click()
    link.remove()
    // Revoked on the next tick: the click has handed the URL to the download by then.
    setTimeout(() => URL.revokeObjectURL(url), 0)
    setNotice(`Issued for ${issued.username}, valid until ${formatTime(issued.expiresAt)}.`)
  }

  return (
    <section className="panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>Kubeconfig</h2>
      {problem && <ProblemAlert problem={problem} />}
      <form className="inline-form" onSubmit={download}>
        <label htmlFor={`${id}-ttl`}>Kubeconfig lifetime</label>
        <select id={`${id}-ttl`} value={ttl} onChange={(e) => setTtl(e.target.value)}>
          {lifetimes.map((l) => (
            <option key={l.seconds} value={String(l.seconds)}>
              {l.label}
            </option>
          ))}
        </select>
        <button type="submit" disabled={busy}>
          Download kubeconfig
        </button>
      </form>
      <p aria-live="polite" className="hint">
        {notice}
      </p>
    </section>
  )
}

function Delete({ project, cluster, onOperation }: SectionProps) {
  const id = useId()
  const [confirming, setConfirming] = useState(false)
  const [typed, setTyped] = useState('')
  const { run, busy, problem } = useAction()
  const confirmed = typed === cluster.name

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    if (!confirmed) return
    const path = { project, cluster: cluster.name }
    const operation = await run(() =>
      call(api.DELETE('/v1/projects/{project}/clusters/{cluster}', { params: { path } })),
    )
    if (!operation) return
    setConfirming(false)
    onOperation(operation)
  }

  return (
    <section className="panel danger-zone" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>Delete</h2>
      {problem && <ProblemAlert problem={problem} />}
      {cluster.deletionRequested ? (
        <p>Deletion requested.</p>
      ) : !confirming ? (
        <button type="button" className="danger" onClick={() => setConfirming(true)}>
          Delete cluster
        </button>
      ) : (
        <form className="stack" onSubmit={submit}>
          <p>This deletes the cluster and releases its machines. It cannot be undone.</p>
          <div className="field">
            <label htmlFor={`${id}-confirm`}>Type the cluster name to confirm</label>
            <input
              id={`${id}-confirm`}
              type="text"
              autoComplete="off"
              spellCheck={false}
              value={typed}
              onChange={(e) => setTyped(e.target.value)}
            />
          </div>
          <div className="actions">
            <button type="submit" className="danger" disabled={!confirmed || busy}>
              Delete
            </button>
            <button
              type="button"
              onClick={() => {
                setConfirming(false)
                setTyped('')
              }}
            >
              Cancel
            </button>
          </div>
        </form>
      )}
    </section>
  )
}
