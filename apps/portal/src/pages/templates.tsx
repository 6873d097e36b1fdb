import { api, type ClusterTemplate, call, useLoad } from '../api.ts'
import { Link } from '../components/link.tsx'
import { ProblemAlert } from '../components/problem.tsx'
import { formatValue } from '../format.ts'
import { paths } from '../router.ts'
import { NotFoundPage } from './simple.tsx'

function TemplateCard({
  template,
  project,
  canMutate,
}: {
  template: ClusterTemplate
  project: string
  canMutate: boolean
}) {
  const headingId = `template-${template.id}`
  const settings = Object.entries(template.features).flatMap(([feature, values]) =>
    Object.entries(values).map(([property, value]) => ({ key: `${feature}.${property}`, value })),
  )
  return (
    <article className="card" aria-labelledby={headingId}>
      <h2 id={headingId}>
        {template.name} <span className="muted">v{template.version}</span>
        {template.deprecated && <span className="badge warn">deprecated</span>}
      </h2>
      {template.description && <p>{template.description}</p>}
      <dl className="facts">
        <dt>Kubernetes</dt>
        <dd>
          {template.kubernetesVersion}{' '}
          <span className={`badge lifecycle-${template.kubernetesVersionLifecycle}`}>
            {template.kubernetesVersionLifecycle}
          </span>
        </dd>
        <dt>Backend</dt>
        <dd>{template.backend}</dd>
        <dt>Control plane</dt>
        <dd>
          {template.controlPlane.count} × {template.controlPlane.machineClass}
        </dd>
        <dt>Node groups</dt>
        <dd>
          <ul className="plain">
            {template.nodeGroups.map((group) => (
              <li key={group.name}>
                {group.name}: {group.count ?? group.minCount ?? 0} × {group.machineClass ?? 'default'}
              </li>
            ))}
          </ul>
        </dd>
        <dt>Features</dt>
        <dd>
          {settings.length === 0 ? (
            'defaults'
          ) : (
            <ul className="plain">
              {settings.map((s) => (
                <li key={s.key}>
                  <code>
                    {s.key} = {formatValue(s.value)}
                  </code>
                </li>
              ))}
            </ul>
          )}
        </dd>
        <dt>Locked</dt>
        <dd>{template.lockedFeatures.length === 0 ? 'none' : template.lockedFeatures.join(', ')}</dd>
      </dl>
      {canMutate && (
        <Link className="button" href={paths.createCluster(project, template.name)}>
          Use this template
        </Link>
      )}
    </article>
  )
}

export function TemplatesPage({ project, canMutate }: { project: string; canMutate: boolean }) {
  const templates = useLoad(`templates:${project}`, (signal) =>
    call(api.GET('/v1/templates', { params: { query: { project, limit: 500 } }, signal })),
  )
  if (templates.problem?.status === 404) return <NotFoundPage />
  return (
    <>
      <h1>Templates</h1>
      {templates.problem && <ProblemAlert problem={templates.problem} />}
      {templates.loading && <p>Loading…</p>}
      {templates.data?.items.length === 0 && <p>No templates are published yet.</p>}
      <div className="cards">
        {templates.data?.items.map((template) => (
          <TemplateCard key={template.id} template={template} project={project} canMutate={canMutate} />
        ))}
      </div>
    </>
  )
}
