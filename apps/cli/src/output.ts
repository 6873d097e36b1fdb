import { stringify } from 'yaml'
import { usageError } from './errors.ts'

export type OutputFormat = 'json' | 'yaml' | 'table'

export interface Output {
  format: OutputFormat
  tty: boolean
  write(text: string): void
}

/** `-o` when given; otherwise a table for people at a terminal and JSON for scripts and pipes. */
export function outputFormat(flag: string | undefined, tty: boolean): OutputFormat {
  if (flag === undefined) return tty ? 'table' : 'json'
  if (flag === 'json' || flag === 'yaml' || flag === 'table') return flag
  throw usageError(`-o must be json, yaml or table, not '${flag}'.`)
}

export type Column<T> = [header: string, cell: (row: T) => unknown]

export function table<T>(rows: readonly T[], columns: Column<T>[]): string {
  const cells = rows.map((row) => columns.map(([, cell]) => text(cell(row))))
  const headers = columns.map(([h]) => h)
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)))
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd()
  return [line(headers), ...cells.map(line)].join('\n')
}

const text = (value: unknown): string => {
  if (value === null || value === undefined || value === '') return '-'
  if (Array.isArray(value)) return value.length ? value.map(text).join(',') : '-'
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value)
}

/** Prints `value` as JSON or YAML, or as the table `render` makes of it. */
export function print<T>(out: Output, value: T, render: (value: T) => string): void {
  if (out.format === 'json') out.write(`${JSON.stringify(value, null, 2)}\n`)
  else if (out.format === 'yaml') out.write(stringify(value))
  else out.write(`${render(value)}\n`)
}

/** "3m12s", "2h5m", "4d": how long ago, as kubectl's AGE column. */
export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-'
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d`
}

/** Parses 90s, 15m, 2h, 1d, 1h30m into seconds. */
export function parseDuration(value: string, flag: string): number {
  const parts = [...value.matchAll(/(\d+)(s|m|h|d)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value)
    throw usageError(`${flag} takes a duration like 90s, 15m, 2h or 1d, not '${value}'.`)
  const unit = { s: 1, m: 60, h: 3600, d: 86400 } as const
  return parts.reduce((sum, p) => sum + Number(p[1]) * unit[p[2] as keyof typeof unit], 0)
}
