import { type FormEvent, useId, useState } from 'react'
import {
  type ApiProblem,
  api,
  type ClusterCreate,
  type ClusterPlan,
  type ClusterTemplate,
  call,
  type Feature,
  type FeatureOverrides,
  type MachineClass,
  useAction,
  useLoad,
} from '../api.ts'
import {
  baselineValues,
  changedValues,
  FeatureControls,
  type FeatureValues,
  featureProperties,
} from '../components/feature-controls.tsx'
import { FieldMessage, invalidProps, ProblemAlert, splitErrors } from '../components/problem.tsx'
import { Table } from '../components/table.tsx'
import { formatMiB, parseLabels } from '../format.ts'
import { navigate, paths, useLocation } from '../router.ts'
import { NotFoundPage } from './simple.tsx'

/** The list has every version, oldest first: offer each name once, at its latest listed version. */
function latestByName(templates: ClusterTemplate[]): ClusterTemplate[] {
  const latest = new Map<string, ClusterTemplate>()
  for (const t of templates) {
    const seen = latest.get(t.name)
    if (!seen || t.version > seen.version) latest.set(t.name, t)
  }
  return [...latest.values()]
}

const initialCounts = (template: ClusterTemplate | undefined) =>
  Object.fromEntries((template?.nodeGroups ?? []).map((g) => [g.name, String(g.count ?? g.minCount ?? 1)]))

const initialClasses = (template: ClusterTemplate | undefined) =>
  Object.fromEntries((template?.nodeGroups ?? []).map((g) => [g.name, g.machineClass ?? '']))

/** `m1.large — 4 vCPUs, 16 GiB` and the GPUs, for a machine-class choice. */
function describeClass(mc: MachineClass): string {
  const gpus = mc.gpuCount > 0 ? `, ${mc.gpuCount} × ${mc.gpuModel ?? 'GPU'}` : ''
  return `${mc.name} — ${mc.cpu} vCPUs, ${formatMiB(mc.memoryMiB)}${gpus}`
}

export function CreateClusterPage({ project, canMutate }: { project: string; canMutate: boolean }) {
  const { search } = useLocation()
  const templates = useLoad(canMutate ? `templates:${project}` : null, (signal) =>
    call(api.GET('/v1/templates', { params: { query: { project, limit: 500 } }, signal })),
  )
  const features = useLoad(canMutate ? 'features' : null, (signal) =>
    call(api.GET('/v1/features', { params: { query: { limit: 500 } }, signal })),
  )
  if (!canMutate || templates.problem?.status === 404) return <NotFoundPage />
  const problem = templates.problem ?? features.problem
  return (
    <>
      <h1>Create cluster</h1>
      {problem && <ProblemAlert problem={problem} />}
      {templates.data && features.data ? (
        <CreateForm
          project={project}
          templates={latestByName(templates.data.items)}
          features={features.data.items}
          initialTemplate={search.get('template') ?? undefined}
        />
      ) : (
        !problem && <p>Loading…</p>
      )}
    </>
  )
}

interface FormProps {
  project: string
  templates: ClusterTemplate[]
  features: Feature[]
  initialTemplate: string | undefined
}

function CreateForm({ project, templates, features, initialTemplate }: FormProps) {
  const id = useId()
  const [name, setName] = useState('')
  const [templateName, setTemplateName] = useState(
    () => templates.find((t) => t.name === initialTemplate)?.name ?? templates[0]?.name ?? '',
  )
  const template = templates.find((t) => t.name === templateName)
  const baseline = baselineValues(features, template?.features)
  const [counts, setCounts] = useState<Record<string, string>>(() => initialCounts(template))
  const [classes, setClasses] = useState<Record<string, string>>(() => initialClasses(template))
  const backend = template?.backend
  const machineClasses = useLoad(backend ? `machine-classes:${backend}` : null, (signal) =>
    call(api.GET('/v1/machine-classes', { params: { query: { backend, limit: 500 } }, signal })),
  )
  const [featureValues, setFeatureValues] = useState<FeatureValues>(baseline)
  const [labels, setLabels] = useState('')
  const [plan, setPlan] = useState<ClusterPlan>()
  const { run, busy, problem, setProblem } = useAction()

  const chooseTemplate = (next: string) => {
    const chosen = templates.find((t) => t.name === next)
    setTemplateName(next)
    setCounts(initialCounts(chosen))
    setClasses(initialClasses(chosen))
    setFeatureValues(baselineValues(features, chosen?.features))
    setPlan(undefined)
    setProblem(undefined)
  }

  // The pointers the form can show next to a field; anything else stays in the alert.
  const fieldFor = (pointer: string): string | undefined => {
    if (pointer === '/name' || pointer === '/labels') return pointer
    if (pointer === '/template' || pointer === '/templateVersion') return '/template'
    if (pointer.startsWith('/labels/')) return '/labels'
    const group = /^\/nodeGroups\/(\d+)(\/count|\/machineClass)?$/.exec(pointer)
    if (group && template?.nodeGroups[Number(group[1])])
      return `/nodeGroups/${group[1]}${group[2] === '/machineClass' ? '/machineClass' : '/count'}`
    const feature = /^\/features\/([^/]+)\/([^/]+)$/.exec(pointer)
    const known = features.find((f) => f.name === feature?.[1])
    if (known && featureProperties(known).some(([p]) => p === feature?.[2])) return pointer
    return undefined
  }
  const { fields, rest } = splitErrors(problem?.errors ?? [], fieldFor)

  const submit = async (dryRun: boolean) => {
    if (!template) return
    setPlan(undefined)
    const invalid: ApiProblem['errors'] = []
    const parsedLabels = parseLabels(labels)
    if (!parsedLabels)
      invalid.push({ pointer: '/labels', message: 'Write labels as key=value, comma separated.' })
    const nodeGroups = template.nodeGroups.map((group, index) => {
      const raw = counts[group.name] ?? ''
      if (raw.trim() === '' || !Number.isInteger(Number(raw))) {
        invalid.push({ pointer: `/nodeGroups/${index}/count`, message: 'Enter a whole number.' })
      }
      // A class chosen here overrides the template's; the same class stays the template's.
      const machineClass = classes[group.name]
      return {
        name: group.name,
        count: Number(raw),
        ...(machineClass && machineClass !== group.machineClass ? { machineClass } : {}),
      }
    })
    if (invalid.length > 0) {
      setProblem({ status: 0, title: 'Check the highlighted fields.', detail: '', errors: invalid })
      return
    }
    const changed = changedValues(featureValues, baseline)
    const body: ClusterCreate = {
      name: name.trim(),
      template: template.name,
      templateVersion: template.version,
      nodeGroups,
      ...(parsedLabels && Object.keys(parsedLabels).length > 0 ? { labels: parsedLabels } : {}),
      ...(changed ? { features: changed as FeatureOverrides } : {}),
    }
    const params = { path: { project } }
    if (dryRun) {
      const planned = await run(() =>
        call(api.POST('/v1/projects/{project}/cluster-plans', { params, body })),
      )
      if (planned) setPlan(planned)
      return
    }
    const data = await run(() => call(api.POST('/v1/projects/{project}/clusters', { params, body })))
    if (!data) return
    const cluster = paths.cluster(project, data.resource.name || body.name)
    navigate(`${cluster}?operation=${encodeURIComponent(data.id)}`)
  }

  const onSubmit = (event: FormEvent) => {
    event.preventDefault()
    void submit(false)
  }

  if (templates.length === 0)
    return <p>No templates are published yet, so there is nothing to create from.</p>
  const ids = { name: `${id}-name`, template: `${id}-template`, labels: `${id}-labels` }
  return (
    // noValidate: the API's own messages, filed next to each field, are more precise than the browser's.
    <form className="stack" onSubmit={onSubmit} noValidate>
      {problem && <ProblemAlert problem={problem} errors={rest} />}
      <div className="field">
        <label htmlFor={ids.name}>Name</label>
        <input
          id={ids.name}
          type="text"
          autoComplete="off"
          spellCheck={false}
          value={name}
          onChange={(e) => setName(e.target.value)}
          {...invalidProps(fields['/name'], ids.name)}
        />
        <p className="hint">Lower-case letters, digits and dashes.</p>
        <FieldMessage message={fields['/name']} id={ids.name} />
      </div>
      <div className="field">
        <label htmlFor={ids.template}>Template</label>
        <select
          id={ids.template}
          value={templateName}
          onChange={(e) => chooseTemplate(e.target.value)}
          {...invalidProps(fields['/template'], ids.template)}
        >
          {templates.map((t) => (
            <option key={t.name} value={t.name}>
              {t.name}@{t.version} (Kubernetes {t.kubernetesVersion}){t.deprecated ? ' — deprecated' : ''}
            </option>
          ))}
        </select>
        {template?.description && <p className="hint">{template.description}</p>}
        <FieldMessage message={fields['/template']} id={ids.template} />
      </div>
      {template && (
        <fieldset>
          <legend>Node groups</legend>
          <p className="hint">
            Control plane: {template.controlPlane.count} × {template.controlPlane.machineClass}
          </p>
          {machineClasses.problem && <ProblemAlert problem={machineClasses.problem} />}
          {template.nodeGroups.map((group, index) => {
            const fieldId = `${id}-group-${group.name}`
            const classId = `${fieldId}-class`
            const message = fields[`/nodeGroups/${index}/count`]
            const classMessage = fields[`/nodeGroups/${index}/machineClass`]
            const chosen = classes[group.name] ?? ''
            const offered = machineClasses.data?.items ?? []
            return (
              <div key={group.name} className="field inline">
                <label htmlFor={fieldId}>{group.name} nodes</label>
                <input
                  id={fieldId}
                  type="number"
                  step={1}
                  min={group.minCount}
                  max={group.maxCount}
                  value={counts[group.name] ?? ''}
                  onChange={(e) => setCounts({ ...counts, [group.name]: e.target.value })}
                  {...invalidProps(message, fieldId)}
                />
                <label htmlFor={classId}>{group.name} machine class</label>
                <select
                  id={classId}
                  value={chosen}
                  onChange={(e) => setClasses({ ...classes, [group.name]: e.target.value })}
                  {...invalidProps(classMessage, classId)}
                >
                  {/* The template's class first, even before the list has loaded. */}
                  {!offered.some((mc) => mc.name === chosen) && (
                    <option value={chosen}>{chosen || 'default'}</option>
                  )}
                  {offered.map((mc) => (
                    <option key={mc.id} value={mc.name}>
                      {describeClass(mc)}
                    </option>
                  ))}
                </select>
                <span className="hint">
                  {group.minCount !== undefined && group.maxCount !== undefined
                    ? `${group.minCount}–${group.maxCount} nodes`
                    : ''}
                </span>
                <FieldMessage message={message} id={fieldId} />
                <FieldMessage message={classMessage} id={classId} />
              </div>
            )
          })}
        </fieldset>
      )}
      <fieldset>
        <legend>Features</legend>
        <FeatureControls
          features={features}
          values={featureValues}
          onChange={setFeatureValues}
          locked={template?.lockedFeatures}
          errors={fields}
          idPrefix={`${id}-feature`}
        />
      </fieldset>
      <div className="field">
        <label htmlFor={ids.labels}>Labels</label>
        <input
          id={ids.labels}
          type="text"
          placeholder="team=atlas, env=dev"
          value={labels}
          onChange={(e) => setLabels(e.target.value)}
          {...invalidProps(fields['/labels'], ids.labels)}
        />
        <p className="hint">Optional: key=value, comma separated.</p>
        <FieldMessage message={fields['/labels']} id={ids.labels} />
      </div>
      <div className="actions">
        <button type="button" onClick={() => void submit(true)} disabled={busy}>
          Preview
        </button>
        <button type="submit" className="primary" disabled={busy}>
          Create
        </button>
        {busy && <span aria-live="polite">Working…</span>}
      </div>
      {plan && <PlanPreview plan={plan} />}
    </form>
  )
}

function PlanPreview({ plan }: { plan: ClusterPlan }) {
  const headingId = useId()
  const { consumption, quota } = plan
  const gpus = Object.entries(consumption.gpusByModel)
  return (
    <section aria-labelledby={headingId} className="panel">
      <h2 id={headingId}>Preview</h2>
      <p>
        {consumption.nodes} nodes, {consumption.vcpus} vCPUs, {formatMiB(consumption.memoryMiB)} memory
        {gpus.length > 0 ? `, GPUs: ${gpus.map(([model, n]) => `${n} × ${model}`).join(', ')}` : ', no GPUs'}.{' '}
        {quota.accepted ? 'It fits the project quota.' : 'It does not fit the project quota.'}
        {plan.template.deprecated ? ' The template version is deprecated.' : ''}
      </p>
      <Table head={['Resource', 'Limit', 'In use', 'Request', 'Fits']}>
        {quota.resources.map((line) => (
          <tr key={line.resource} className={line.exceeded ? 'exceeded' : undefined}>
            <td>{line.resource}</td>
            <td>{line.limit ?? 'unlimited'}</td>
            <td>{line.usage}</td>
            <td>{line.request}</td>
            <td>{line.exceeded ? 'No' : 'Yes'}</td>
          </tr>
        ))}
      </Table>
    </section>
  )
}
