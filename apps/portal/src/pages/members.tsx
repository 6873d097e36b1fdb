import { type FormEvent, useId, useState } from 'react'
import { api, call, type ProjectMember, type ProjectRole, useAction, useLoad } from '../api.ts'
import { FieldMessage, invalidProps, ProblemAlert, splitErrors } from '../components/problem.tsx'
import { Pager, Table } from '../components/table.tsx'
import { NotFoundPage } from './simple.tsx'

const roles: ProjectRole[] = ['viewer', 'member', 'admin']

/**
 * Who may do what in the project: everyone in it sees the list; admins add people and OIDC groups,
 * change their roles and remove them. The API refuses to leave the project without an admin.
 */
export function MembersPage({ project, isAdmin }: { project: string; isAdmin: boolean }) {
  const [cursor, setCursor] = useState<string>()
  const [version, setVersion] = useState(0)
  const members = useLoad(JSON.stringify([project, cursor, version]), (signal) =>
    call(
      api.GET('/v1/projects/{project}/members', { params: { path: { project }, query: { cursor } }, signal }),
    ),
  )
  const reload = () => setVersion((v) => v + 1)
  const change = useAction()

  if (members.problem?.status === 404) return <NotFoundPage />
  const path = (member: ProjectMember) => ({ params: { path: { project, member: member.id } } })
  const setRole = async (member: ProjectMember, role: ProjectRole) => {
    const done = await change.run(() =>
      call(api.PATCH('/v1/projects/{project}/members/{member}', { ...path(member), body: { role } })),
    )
    if (done) reload()
  }
  const remove = async (member: ProjectMember) => {
    const done = await change.run(async () => {
      const result = await call(api.DELETE('/v1/projects/{project}/members/{member}', path(member)))
      return result.ok ? { ok: true as const, data: true } : result
    })
    if (done) reload()
  }

  const page = members.data
  return (
    <>
      <h1>Members</h1>
      {members.problem && <ProblemAlert problem={members.problem} />}
      {change.problem && <ProblemAlert problem={change.problem} />}
      {members.loading && <p>Loading…</p>}
      {page && page.items.length === 0 && <p>No members.</p>}
      {page && page.items.length > 0 && (
        <Table head={isAdmin ? ['Kind', 'Name', 'Role', ''] : ['Kind', 'Name', 'Role']}>
          {page.items.map((member) => (
            <tr key={member.id}>
              <td>{member.kind}</td>
              <td>{member.name}</td>
              <td>
                {isAdmin ? (
                  <select
                    aria-label={`Role of ${member.name}`}
                    value={member.role}
                    disabled={change.busy}
                    onChange={(e) => void setRole(member, e.target.value as ProjectRole)}
                  >
                    {roles.map((r) => (
                      <option key={r} value={r}>
                        {r}
                      </option>
                    ))}
                  </select>
                ) : (
                  member.role
                )}
              </td>
              {isAdmin && (
                <td>
                  <button
                    type="button"
                    className="danger"
                    disabled={change.busy}
                    onClick={() => void remove(member)}
                    aria-label={`Remove ${member.name}`}
                  >
                    Remove
                  </button>
                </td>
              )}
            </tr>
          ))}
        </Table>
      )}
      {page && <Pager cursor={cursor} next={page.nextCursor} onPage={setCursor} />}
      {isAdmin && <AddMember project={project} onAdded={reload} />}
    </>
  )
}

function AddMember({ project, onAdded }: { project: string; onAdded: () => void }) {
  const id = useId()
  const [kind, setKind] = useState<'user' | 'group'>('user')
  const [name, setName] = useState('')
  const [role, setRole] = useState<ProjectRole>('viewer')
  const { run, busy, problem } = useAction()
  const { fields, rest } = splitErrors(problem?.errors ?? [], (pointer) =>
    pointer === '/name' ? pointer : undefined,
  )

  const submit = async (event: FormEvent) => {
    event.preventDefault()
    const added = await run(() =>
      call(
        api.POST('/v1/projects/{project}/members', {
          params: { path: { project } },
          body: { kind, name: name.trim(), role },
        }),
      ),
    )
    if (added) {
      setName('')
      onAdded()
    }
  }

  const ids = { kind: `${id}-kind`, name: `${id}-name`, role: `${id}-role` }
  return (
    <section className="panel" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`}>Add a member</h2>
      {problem && <ProblemAlert problem={problem} errors={rest} />}
      <form className="inline-form" onSubmit={submit} noValidate>
        <label htmlFor={ids.kind}>Kind</label>
        <select id={ids.kind} value={kind} onChange={(e) => setKind(e.target.value as 'user' | 'group')}>
          <option value="user">user (OIDC subject)</option>
          <option value="group">group (OIDC groups claim)</option>
        </select>
        <label htmlFor={ids.name}>Member name</label>
        <input
          id={ids.name}
          type="text"
          autoComplete="off"
          value={name}
          onChange={(e) => setName(e.target.value)}
          {...invalidProps(fields['/name'], ids.name)}
        />
        <label htmlFor={ids.role}>Member role</label>
        <select id={ids.role} value={role} onChange={(e) => setRole(e.target.value as ProjectRole)}>
          {roles.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
        <button type="submit" className="primary" disabled={busy}>
          Add
        </button>
        <FieldMessage message={fields['/name']} id={ids.name} />
      </form>
    </section>
  )
}
