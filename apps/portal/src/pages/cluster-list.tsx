import { type FormEvent, useId, useState } from 'react'
import { api, type Cluster, type ClusterPhase, call, useLoad } from '../api.ts'
import { Link } from '../components/link.tsx'
import { ProblemAlert } from '../components/problem.tsx'
import { Pager, Table } from '../components/table.tsx'
import { formatTime } from '../format.ts'
import { paths } from '../router.ts'
import { NotFoundPage } from './simple.tsx'

// A record rather than an array so the compiler flags a phase added to (or dropped from) the schema.
const phaseSet: Record<ClusterPhase, true> = {
  Pending: true,
  Provisioning: true,
  Ready: true,
  Updating: true,
  Degraded: true,
  Failed: true,
  Deleting: true,
}
export const clusterPhases = Object.keys(phaseSet) as ClusterPhase[]

const nodeCount = (cluster: Cluster) =>
  cluster.spec.controlPlane.count + cluster.spec.nodeGroups.reduce((sum, group) => sum + group.count, 0)

export function ClusterListPage({ project, canMutate }: { project: string; canMutate: boolean }) {
  const id = useId()
  const [labelInput, setLabelInput] = useState('')
  const [label, setLabel] = useState('')
  const [phase, setPhase] = useState<ClusterPhase | ''>('')
  const [cursor, setCursor] = useState<string>()
  const clusters = useLoad(JSON.stringify([project, label, phase, cursor]), (signal) =>
    call(
      api.GET('/v1/projects/{project}/clusters', {
        params: {
          path: { project },
          query: { label: label ? [label] : undefined, phase: phase || undefined, cursor },
        },
        signal,
      }),
    ),
  )

  const applyLabel = (event: FormEvent) => {
    event.preventDefault()
    setLabel(labelInput.trim())
    setCursor(undefined)
  }

  if (clusters.problem?.status === 404) return <NotFoundPage />
  const page = clusters.data
  return (
    <>
      <div className="page-head">
        <h1>Clusters</h1>
        {canMutate && (
          <Link className="button primary" href={paths.createCluster(project)}>
            Create cluster
          </Link>
        )}
      </div>
      <form className="filters" onSubmit={applyLabel}>
        <div className="field">
          <label htmlFor={`${id}-label`}>Label</label>
          <input
            id={`${id}-label`}
            type="text"
            placeholder="key=value"
            value={labelInput}
            onChange={(e) => setLabelInput(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-phase`}>Phase</label>
          <select
            id={`${id}-phase`}
            value={phase}
            onChange={(e) => {
              setPhase(e.target.value as ClusterPhase | '')
              setCursor(undefined)
            }}
          >
            <option value="">any</option>
            {clusterPhases.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Apply filters</button>
      </form>
      {clusters.problem && <ProblemAlert problem={clusters.problem} />}
      {clusters.loading && <p>Loading…</p>}
      {page && page.items.length === 0 && (
        <p>No clusters{label || phase ? ' match these filters' : ' yet'}.</p>
      )}
      {page && page.items.length > 0 && (
        <Table head={['Name', 'Phase', 'Kubernetes', 'Template', 'Nodes', 'Created']}>
          {page.items.map((cluster) => (
            <tr key={cluster.id}>
              <td>
                <Link href={paths.cluster(project, cluster.name)}>{cluster.name}</Link>
              </td>
              <td>
                <span className={`phase phase-${cluster.status.phase}`}>{cluster.status.phase}</span>
              </td>
              <td>{cluster.spec.kubernetesVersion}</td>
              <td>
                {cluster.template.name}@{cluster.template.version}
              </td>
              <td>{nodeCount(cluster)}</td>
              <td>{formatTime(cluster.createdAt)}</td>
            </tr>
          ))}
        </Table>
      )}
      <Pager cursor={cursor} next={page?.nextCursor} onPage={setCursor} />
    </>
  )
}
