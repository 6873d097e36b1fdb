import type { ApiProblem, FieldError } from '../api.ts'

/** The title and detail of a problem, plus the field errors no field on the page claimed. */
export function ProblemAlert({
  problem,
  errors = problem.errors,
}: {
  problem: ApiProblem
  errors?: FieldError[]
}) {
  return (
    <div role="alert" className="alert">
      <p className="alert-title">{problem.title}</p>
      {problem.detail && <p>{problem.detail}</p>}
      {errors.length > 0 && (
        <ul>
          {errors.map((e) => (
            <li key={`${e.pointer}:${e.message}`}>
              {e.pointer && <code>{e.pointer}</code>} {e.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  )
}

export type FieldErrors = Record<string, string>

/**
 * Files each error under the field `fieldFor` maps its JSON pointer to; the rest stay for the alert.
 */
export function splitErrors(
  errors: FieldError[],
  fieldFor: (pointer: string) => string | undefined,
): { fields: FieldErrors; rest: FieldError[] } {
  const fields: FieldErrors = {}
  const rest: FieldError[] = []
  for (const error of errors) {
    const field = fieldFor(error.pointer)
    if (field === undefined) rest.push(error)
    else fields[field] = fields[field] ? `${fields[field]} ${error.message}` : error.message
  }
  return { fields, rest }
}

/** aria attributes tying a control to its error message, when it has one. */
export function invalidProps(message: string | undefined, id: string) {
  return message ? { 'aria-invalid': true, 'aria-describedby': `${id}-error` } : {}
}

export function FieldMessage({ message, id }: { message: string | undefined; id: string }) {
  return message ? (
    <p id={`${id}-error`} className="field-error">
      {message}
    </p>
  ) : null
}
