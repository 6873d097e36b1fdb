import type { Operation } from './api.ts'

export function formatTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—'
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`
  const seconds = Math.round(ms / 100) / 10
  if (seconds < 60) return `${seconds} s`
  const whole = Math.round(seconds)
  return `${Math.floor(whole / 60)} min ${whole % 60} s`
}

export function formatValue(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}

export function formatMiB(mib: number): string {
  return mib >= 1024 ? `${Math.round((mib / 1024) * 10) / 10} GiB` : `${mib} MiB`
}

export function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels)
  return entries.length === 0 ? '—' : entries.map(([k, v]) => `${k}=${v}`).join(', ')
}

/** "a=1, b=2" → { a: '1', b: '2' }; null when an entry is not key=value. */
export function parseLabels(text: string): Record<string, string> | null {
  const labels: Record<string, string> = {}
  for (const entry of text.split(',')) {
    const trimmed = entry.trim()
    if (trimmed === '') continue
    const at = trimmed.indexOf('=')
    if (at <= 0) return null
    labels[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim()
  }
  return labels
}

export function isFinished(status: Operation['status']): boolean {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled'
}
