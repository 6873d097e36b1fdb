import { type ReactNode, useEffect, useState } from 'react'
import { type ApiProblem, api, type Caller, call, type ProjectRole, unauthenticatedEvent } from './api.ts'
import { Header } from './components/header.tsx'
import { ProblemAlert } from './components/problem.tsx'
import { AuditPage } from './pages/audit.tsx'
import { ClusterPage } from './pages/cluster.tsx'
import { CreateClusterPage } from './pages/cluster-create.tsx'
import { ClusterListPage } from './pages/cluster-list.tsx'
import { MembersPage } from './pages/members.tsx'
import { LoginPage, NoProjectsPage, NotFoundPage, Redirect } from './pages/simple.tsx'
import { TemplatesPage } from './pages/templates.tsx'
import { parseRoute, paths, type Route, useLocation } from './router.ts'

type Session =
  | { state: 'loading' }
  | { state: 'anonymous' }
  | { state: 'failed'; problem: ApiProblem }
  | { state: 'ready'; caller: Caller; hasSession: boolean }

async function loadSession(signal: AbortSignal): Promise<Session> {
  const identity = await call(api.GET('/v1/auth/me', { signal }))
  if (!identity.ok) {
    if (identity.problem.status === 401) return { state: 'anonymous' }
    // 404: this Kiln has no OIDC issuer (the single-user mode), so there is no session to have.
    if (identity.problem.status !== 404) return { state: 'failed', problem: identity.problem }
  }
  const caller = await call(api.GET('/v1/me', { signal }))
  if (!caller.ok) {
    return caller.problem.status === 401
      ? { state: 'anonymous' }
      : { state: 'failed', problem: caller.problem }
  }
  return { state: 'ready', caller: caller.data, hasSession: identity.ok }
}

function roleIn(caller: Caller, project: string | undefined): ProjectRole | undefined {
  if (project === undefined) return undefined
  if (caller.platformAdmin) return 'admin'
  return caller.projects.find((p) => p.project === project)?.role
}

function page(route: Route, caller: Caller, role: ProjectRole | undefined): ReactNode {
  const canMutate = role === 'member' || role === 'admin'
  switch (route.page) {
    case 'home': {
      const first = caller.projects[0]
      return first ? (
        <Redirect to={paths.clusters(first.project)} />
      ) : (
        <NoProjectsPage subject={caller.subject} />
      )
    }
    case 'clusters':
      return <ClusterListPage key={route.project} project={route.project} canMutate={canMutate} />
    case 'createCluster':
      return <CreateClusterPage key={route.project} project={route.project} canMutate={canMutate} />
    case 'cluster':
      return (
        <ClusterPage
          key={`${route.project}/${route.cluster}`}
          project={route.project}
          cluster={route.cluster}
          canMutate={canMutate}
        />
      )
    case 'templates':
      return <TemplatesPage key={route.project} project={route.project} canMutate={canMutate} />
    case 'audit':
      return role === 'admin' ? <AuditPage key={route.project} project={route.project} /> : <NotFoundPage />
    case 'members':
      return <MembersPage key={route.project} project={route.project} isAdmin={role === 'admin'} />
    case 'notFound':
      return <NotFoundPage />
  }
}

export function App() {
  const location = useLocation()
  const [session, setSession] = useState<Session>({ state: 'loading' })

  useEffect(() => {
    const controller = new AbortController()
    void loadSession(controller.signal).then((loaded) => {
      if (!controller.signal.aborted) setSession(loaded)
    })
    const onUnauthenticated = () => setSession({ state: 'anonymous' })
    window.addEventListener(unauthenticatedEvent, onUnauthenticated)
    return () => {
      controller.abort()
      window.removeEventListener(unauthenticatedEvent, onUnauthenticated)
    }
  }, [])

  if (session.state === 'anonymous') return <LoginPage />
  if (session.state !== 'ready') {
    return (
      <main className="container">
        {session.state === 'loading' ? <p>Loading…</p> : <ProblemAlert problem={session.problem} />}
      </main>
    )
  }
  const route = parseRoute(location.pathname)
  const project = 'project' in route ? route.project : undefined
  const role = roleIn(session.caller, project)
  return (
    <>
      <Header
        caller={session.caller}
        route={route}
        project={project}
        role={role}
        canLogOut={session.hasSession}
      />
      <main className="container">{page(route, session.caller, role)}</main>
    </>
  )
}
