import { useEffect } from 'react'
import { Link } from '../components/link.tsx'
import { navigate, paths } from '../router.ts'

export function NotFoundPage() {
  return (
    <>
      <h1>Not found</h1>
      <p>There is nothing here, or it is not visible to you.</p>
      <p>
        <Link href={paths.home()}>Go to your clusters</Link>
      </p>
    </>
  )
}

export function NoProjectsPage({ subject }: { subject: string }) {
  return (
    <>
      <h1>No projects</h1>
      <p>
        You are not a member of any project yet. Ask a project admin to add you; they will need your subject,{' '}
        <code>{subject}</code>.
      </p>
    </>
  )
}

export function LoginPage() {
  const returnTo = window.location.pathname + window.location.search
  return (
    <main className="container login">
      <h1>Kiln</h1>
      <p>Kubernetes clusters as a service.</p>
      {/* A full page load: the API runs the OIDC login and sends the browser back here. */}
      <a className="button primary" href={`/v1/auth/login?returnTo=${encodeURIComponent(returnTo)}`}>
        Log in
      </a>
    </main>
  )
}

/** Replaces the current history entry, e.g. /portal/ → the first project's clusters. */
export function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to])
  return <p>Loading…</p>
}
