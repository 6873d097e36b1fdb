import { useMemo, useSyncExternalStore } from 'react'

export type Route =
  | { page: 'home' }
  | { page: 'clusters'; project: string }
  | { page: 'createCluster'; project: string }
  | { page: 'cluster'; project: string; cluster: string }
  | { page: 'templates'; project: string }
  | { page: 'audit'; project: string }
  | { page: 'members'; project: string }
  | { page: 'notFound' }

const base = '/portal'
const enc = encodeURIComponent

export const paths = {
  home: () => `${base}/`,
  clusters: (project: string) => `${base}/projects/${enc(project)}/clusters`,
  createCluster: (project: string, template?: string) =>
    `${base}/projects/${enc(project)}/clusters/new${template ? `?template=${enc(template)}` : ''}`,
  cluster: (project: string, cluster: string) => `${base}/projects/${enc(project)}/clusters/${enc(cluster)}`,
  templates: (project: string) => `${base}/projects/${enc(project)}/templates`,
  audit: (project: string) => `${base}/projects/${enc(project)}/audit`,
  members: (project: string) => `${base}/projects/${enc(project)}/members`,
}

export function parseRoute(pathname: string): Route {
  if (pathname === base || pathname === `${base}/`) return { page: 'home' }
  if (!pathname.startsWith(`${base}/`)) return { page: 'notFound' }
  let parts: string[]
  try {
    parts = pathname
      .slice(base.length + 1)
      .replace(/\/$/, '')
      .split('/')
      .map(decodeURIComponent)
  } catch {
    // A malformed %-escape cannot name anything.
    return { page: 'notFound' }
  }
  const [root, project, section, cluster, ...rest] = parts
  if (root !== 'projects' || !project || rest.length > 0) return { page: 'notFound' }
  if (section === 'clusters' && cluster === undefined) return { page: 'clusters', project }
  if (section === 'clusters' && cluster === 'new') return { page: 'createCluster', project }
  if (section === 'clusters' && cluster) return { page: 'cluster', project, cluster }
  if (section === 'templates' && cluster === undefined) return { page: 'templates', project }
  if (section === 'audit' && cluster === undefined) return { page: 'audit', project }
  if (section === 'members' && cluster === undefined) return { page: 'members', project }
  return { page: 'notFound' }
}

// pushState fires no event of its own, so in-app navigation announces itself with this one.
const navigateEvent = 'kiln:navigate'

export function navigate(to: string, options: { replace?: boolean } = {}) {
  if (options.replace) window.history.replaceState(null, '', to)
  else {
    window.history.pushState(null, '', to)
    window.scrollTo(0, 0)
  }
  window.dispatchEvent(new Event(navigateEvent))
}

function subscribe(onChange: () => void) {
  window.addEventListener('popstate', onChange)
  window.addEventListener(navigateEvent, onChange)
  return () => {
    window.removeEventListener('popstate', onChange)
    window.removeEventListener(navigateEvent, onChange)
  }
}

const currentHref = () => window.location.pathname + window.location.search

export function useLocation(): { pathname: string; search: URLSearchParams; href: string } {
  const href = useSyncExternalStore(subscribe, currentHref)
  return useMemo(() => {
    const url = new URL(href, window.location.origin)
    return { pathname: url.pathname, search: url.searchParams, href }
  }, [href])
}
