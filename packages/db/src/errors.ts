/** Postgres SQLSTATE classes that mean "the database is not there right now", not "your query is wrong". */
const unavailableCodes = new Set([
  'DatabaseNotReachable',
  'ConnectionClosed',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'P1001',
  'P1002',
  'P1017',
  'P2024',
])

function codesOf(error: unknown): string[] {
  const out: string[] = []
  let e: unknown = error
  for (let depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const rec = e as Record<string, unknown>
    for (const key of ['code', 'originalCode']) if (typeof rec[key] === 'string') out.push(rec[key] as string)
    // Raw queries ($queryRaw) report the driver adapter's error under meta, not cause.
    const adapterError = (rec['meta'] as Record<string, unknown> | undefined)?.['driverAdapterError'] as
      | Record<string, unknown>
      | undefined
    const adapterCause = adapterError?.['cause'] as Record<string, unknown> | undefined
    if (typeof adapterCause?.['kind'] === 'string') out.push(adapterCause['kind'] as string)
    if (typeof adapterCause?.['originalCode'] === 'string') out.push(adapterCause['originalCode'] as string)
    const cause = rec['cause'] as Record<string, unknown> | undefined
    if (cause && typeof cause['originalCode'] === 'string') out.push(cause['originalCode'] as string)
    if (cause && typeof cause['kind'] === 'string') out.push(cause['kind'] as string)
    e = rec['cause']
  }
  return out
}

/** True when the error means Postgres is unreachable or restarting (→ 503, retry later). */
export function isDatabaseUnavailable(error: unknown): boolean {
  const codes = codesOf(error)
  if (codes.some((c) => unavailableCodes.has(c))) return true
  const message = error instanceof Error ? error.message : ''
  // P2028 covers every interactive-transaction failure; only running out of time means an overloaded
  // database (every connection busy, or the work outliving its limit), which a retry can get past.
  if (
    codes.includes('P2028') &&
    /expired transaction|Unable to start a transaction in the given time|Transaction already closed|timed? ?out/i.test(
      message,
    )
  ) {
    return true
  }
  return /Can't reach database server|Connection terminated|connect ECONNREFUSED|database system is (starting up|shutting down)|terminating connection|DatabaseNotReachable|ConnectionClosed|Timed out fetching a new connection/i.test(
    message,
  )
}

/** True for a unique-constraint violation (Prisma P2002 or SQLSTATE 23505). */
export function isUniqueViolation(error: unknown): boolean {
  const codes = codesOf(error)
  return codes.includes('P2002') || codes.includes('23505') || codes.includes('UniqueConstraintViolation')
}

/**
 * True for a foreign-key violation (Prisma P2003 or SQLSTATE 23503): a row this write refers to was
 * removed by a concurrent request between the read that found it and the insert.
 */
export function isForeignKeyViolation(error: unknown): boolean {
  const codes = codesOf(error)
  return codes.includes('P2003') || codes.includes('23503') || codes.includes('ForeignKeyConstraintViolation')
}
