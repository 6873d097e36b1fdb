/** JSON with object keys sorted: the same value always gives the same text (PostgreSQL's jsonb reorders keys). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  )
}

/** Structural equality of JSON values, whatever the key order. */
export const sameJson = (a: unknown, b: unknown) => canonicalJson(a) === canonicalJson(b)
