import { useId, useState } from 'react'
import { api, type Caller, call, type ProjectRole } from '../api.ts'
import { navigate, paths, type Route } from '../router.ts'
import { Link } from './link.tsx'

interface Props {
  caller: Caller
  route: Route
  project: string | undefined
  role: ProjectRole | undefined
  /** Whether a portal session cookie exists to end (not in the single-user mode). */
  canLogOut: boolean
}

export function Header({ caller, route, project, role, canLogOut }: Props) {
  const id = useId()
  const [loggingOut, setLoggingOut] = useState(false)
  const projects = caller.projects.map((p) => p.project)
  // A project reached by URL that is not the caller's still shows as selected.
  if (project && !projects.includes(project)) projects.unshift(project)

  const logOut = async () => {
    setLoggingOut(true)
    await call(api.POST('/v1/auth/logout'))
    // A full reload drops every piece of state; the app then finds no session and shows the login page.
    window.location.assign(paths.home())
  }

  const current = (page: Route['page']) => (route.page === page ? 'page' : undefined)
  return (
    <header className="site-header">
      <div className="container header-inner">
        <Link href={paths.home()} className="brand">
          Kiln
        </Link>
        {projects.length > 0 && (
          <div className="project-switch">
            <label htmlFor={`${id}-project`}>Project</label>
            <select
              id={`${id}-project`}
              value={project ?? ''}
              onChange={(e) => navigate(paths.clusters(e.target.value))}
            >
              {!project && (
                <option value="" disabled>
                  Choose…
                </option>
              )}
              {projects.map((name) => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
          </div>
        )}
        {project && (
          <nav aria-label="Main">
            <Link
              href={paths.clusters(project)}
              aria-current={current('clusters') ?? current('cluster') ?? current('createCluster')}
            >
              Clusters
            </Link>
            <Link href={paths.templates(project)} aria-current={current('templates')}>
              Templates
            </Link>
            <Link href={paths.members(project)} aria-current={current('members')}>
              Members
            </Link>
            {role === 'admin' && (
              <Link href={paths.audit(project)} aria-current={current('audit')}>
                Audit
              </Link>
            )}
          </nav>
        )}
        <div className="user">
          <span className="subject">{caller.subject}</span>
          {role && <span className="badge">{role}</span>}
          {canLogOut && (
            <button type="button" onClick={logOut} disabled={loggingOut}>
              Log out
            </button>
          )}
        </div>
      </div>
    </header>
  )
}
