import type { ReactNode } from 'react'

/** A table that scrolls sideways on narrow screens instead of squeezing its columns. */
export function Table({ head, children }: { head: string[]; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            {head.map((h) => (
              <th key={h} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  )
}

/** First/next page buttons for the API's cursor pagination. */
export function Pager(props: {
  cursor: string | undefined
  next: string | null | undefined
  onPage: (cursor?: string) => void
}) {
  const { cursor, next, onPage } = props
  if (!cursor && !next) return null
  return (
    <div className="pager">
      {cursor && (
        <button type="button" onClick={() => onPage(undefined)}>
          First page
        </button>
      )}
      {next && (
        <button type="button" onClick={() => onPage(next)}>
          Next page
        </button>
      )}
    </div>
  )
}
