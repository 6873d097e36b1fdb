import { createKilnClient, type Schemas } from '@kiln/client'
import { useCallback, useEffect, useRef, useState } from 'react'

export type Caller = Schemas['Caller']
export type Cluster = Schemas['Cluster']
export type ClusterCreate = Schemas['ClusterCreate']
export type ClusterPhase = Schemas['ClusterPhase']
export type ClusterPlan = Schemas['ClusterPlan']
export type ClusterTemplate = Schemas['ClusterTemplate']
export type Feature = Schemas['Feature']
export type FeatureOverrides = Schemas['FeatureOverrides']
export type MachineClass = Schemas['MachineClass']
export type Operation = Schemas['Operation']
export type ProjectMember = Schemas['ProjectMember']
export type ProjectRole = Schemas['ProjectRole']

// The API refuses cookie-authenticated writes without X-Requested-With (a cross-site page cannot send it).
export const api = createKilnClient({
  baseUrl: '',
  credentials: 'same-origin',
  headers: { 'X-Requested-With': 'kiln-portal' },
})

export interface FieldError {
  pointer: string
  message: string
}

/** A problem+json answer, or a network failure (status 0), reduced to what the UI shows. */
export interface ApiProblem {
  status: number
  title: string
  detail: string
  errors: FieldError[]
  /** On 409: the operation the cluster is busy with. */
  operationId?: string
}

export type Result<T> = { ok: true; data: T } | { ok: false; problem: ApiProblem }

/** Fired on any 401, so the app can fall back to the login page when the session expires. */
export const unauthenticatedEvent = 'kiln:unauthenticated'

function problemOf(status: number, body: unknown): ApiProblem {
  const fallback = { status, title: `The request failed (HTTP ${status})`, detail: '', errors: [] }
  if (!body || typeof body !== 'object') return fallback
  const p = body as Partial<Schemas['Problem']>
  return {
    status,
    title: typeof p.title === 'string' ? p.title : fallback.title,
    detail: typeof p.detail === 'string' ? p.detail : '',
    errors: Array.isArray(p.errors) ? p.errors.map((e) => ({ pointer: e.pointer, message: e.message })) : [],
    ...(typeof p.operationId === 'string' ? { operationId: p.operationId } : {}),
  }
}

/** Turns an openapi-fetch answer (or a thrown network error) into a Result. */
export async function call<T>(
  request: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<Result<T>> {
  try {
    const { data, error, response } = await request
    if (response.ok) return { ok: true, data: data as T }
    if (response.status === 401) window.dispatchEvent(new Event(unauthenticatedEvent))
    return { ok: false, problem: problemOf(response.status, error) }
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error)
    return { ok: false, problem: { status: 0, title: 'Kiln could not be reached', detail, errors: [] } }
  }
}

export interface Loaded<T> {
  data: T | undefined
  problem: ApiProblem | undefined
  loading: boolean
  reload: () => void
}

/**
 * Loads whatever `load` fetches whenever `key` changes (null: nothing to load yet). A reload keeps the
 * data on screen until the new answer arrives; answers for a stale key or an unmounted page are dropped.
 */
export function useLoad<T>(key: string | null, load: (signal: AbortSignal) => Promise<Result<T>>): Loaded<T> {
  const loadRef = useRef(load)
  loadRef.current = load
  const [nonce, setNonce] = useState(0)
  const [state, setState] = useState<{ key: string; nonce: number; data?: T; problem?: ApiProblem }>()
  useEffect(() => {
    if (key === null) return
    const controller = new AbortController()
    void loadRef.current(controller.signal).then((result) => {
      if (controller.signal.aborted) return
      setState((previous) => ({
        key,
        nonce,
        data: result.ok ? result.data : previous?.key === key ? previous.data : undefined,
        problem: result.ok ? undefined : result.problem,
      }))
    })
    return () => controller.abort()
  }, [key, nonce])
  const reload = useCallback(() => setNonce((n) => n + 1), [])
  const current = state?.key === key ? state : undefined
  return {
    data: current?.data,
    problem: current?.problem,
    loading: key !== null && current === undefined,
    reload,
  }
}

/** For handlers that await: whether the component is still mounted when the answer arrives. */
export function useMounted() {
  const mounted = useRef(true)
  useEffect(() => {
    mounted.current = true
    return () => {
      mounted.current = false
    }
  }, [])
  return mounted
}

/**
 * State for a button that calls the API: `run` resolves to the answer's data, or undefined when it
 * failed (the problem is kept for display) or the component unmounted meanwhile.
 */
export function useAction() {
  const mounted = useMounted()
  const [busy, setBusy] = useState(false)
  const [problem, setProblem] = useState<ApiProblem>()
  const run = useCallback(
    async <T>(request: () => Promise<Result<T>>): Promise<T | undefined> => {
      setBusy(true)
      const result = await request()
      if (!mounted.current) return undefined
      setBusy(false)
      setProblem(result.ok ? undefined : result.problem)
      return result.ok ? result.data : undefined
    },
    [mounted],
  )
  return { run, busy, problem, setProblem }
}
