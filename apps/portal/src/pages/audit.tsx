import { type FormEvent, useId, useState } from 'react'
import { api, call, useLoad } from '../api.ts'
import { ProblemAlert } from '../components/problem.tsx'
import { Pager, Table } from '../components/table.tsx'
import { formatTime } from '../format.ts'
import { NotFoundPage } from './simple.tsx'

export function AuditPage({ project }: { project: string }) {
  const id = useId()
  const [actionInput, setActionInput] = useState('')
  const [actorInput, setActorInput] = useState('')
  const [filters, setFilters] = useState({ action: '', actor: '' })
  const [cursor, setCursor] = useState<string>()
  const events = useLoad(JSON.stringify([project, filters, cursor]), (signal) =>
    call(
      api.GET('/v1/projects/{project}/audit', {
        params: {
          path: { project },
          query: {
            action: filters.action || undefined,
            actor: filters.actor || undefined,
            order: 'desc',
            cursor,
          },
        },
        signal,
      }),
    ),
  )

  const apply = (event: FormEvent) => {
    event.preventDefault()
    const action = actionInput.trim()
    // The API takes an exact action or a prefix ending in ".*"; "cluster." clearly means the latter.
    setFilters({ action: action.endsWith('.') ? `${action}*` : action, actor: actorInput.trim() })
    setCursor(undefined)
  }

  if (events.problem?.status === 404) return <NotFoundPage />
  const page = events.data
  return (
    <>
      <h1>Audit log</h1>
      <form className="filters" onSubmit={apply}>
        <div className="field">
          <label htmlFor={`${id}-action`}>Action</label>
          <input
            id={`${id}-action`}
            type="text"
            placeholder="cluster.* or cluster.create"
            value={actionInput}
            onChange={(e) => setActionInput(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${id}-actor`}>Actor</label>
          <input
            id={`${id}-actor`}
            type="text"
            placeholder="user:alice"
            value={actorInput}
            onChange={(e) => setActorInput(e.target.value)}
          />
        </div>
        <button type="submit">Apply filters</button>
      </form>
      {events.problem && <ProblemAlert problem={events.problem} />}
      {events.loading && <p>Loading…</p>}
      {page && page.items.length === 0 && <p>No audit events.</p>}
      {page && page.items.length > 0 && (
        <Table head={['Time', 'Actor', 'Action', 'Target']}>
          {page.items.map((event) => (
            <tr key={event.id}>
              <td>{formatTime(event.createdAt)}</td>
              <td>{event.actor}</td>
              <td>
                <code>{event.action}</code>
              </td>
              <td>
                {event.targetKind}/{event.targetId}
              </td>
            </tr>
          ))}
        </Table>
      )}
      <Pager cursor={cursor} next={page?.nextCursor} onPage={setCursor} />
    </>
  )
}
