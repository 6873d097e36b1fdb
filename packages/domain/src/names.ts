import Type from 'typebox'

/** A DNS-1123 label: what Kubernetes accepts as a name, so a cluster's name can name its objects. */
export const DnsLabel = Type.String({
  minLength: 1,
  maxLength: 63,
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  description: 'A DNS-1123 label: lower-case letters, digits and dashes, starting and ending alphanumeric.',
  examples: ['ci-run-4711'],
})

const labelKeyPattern =
  '^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'
const LabelValue = Type.String({
  maxLength: 63,
  pattern: '^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$',
})

/** A template name: like a DNS subdomain, so versions read naturally (`k8s-1.31`). */
export const TemplateName = Type.String({
  minLength: 1,
  maxLength: 63,
  pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$',
  description: 'Lower-case letters, digits, dashes and dots, starting and ending alphanumeric.',
  examples: ['k8s-1.31'],
})

/** Kubernetes' rule for a label key, in words: the message a refused key gets. */
const LabelKey = {
  pattern: labelKeyPattern,
  description:
    'a label key is an optional DNS-subdomain prefix and `/`, then a name of 1–63 characters from [A-Za-z0-9-_.], starting and ending alphanumeric',
}

/** Label maps, with Kubernetes' rules for keys and values; any other key is refused, not dropped. */
export const Labels = Type.Unsafe<Record<string, string>>({
  type: 'object',
  propertyNames: LabelKey,
  additionalProperties: LabelValue,
  maxProperties: 64,
  description: 'String labels, Kubernetes-style.',
  examples: [{ team: 'atlas', 'ci-pipeline': '4711' }],
})

/** A JSON merge patch of labels: a null value removes the label. */
export const LabelPatch = Type.Unsafe<Record<string, string | null>>({
  type: 'object',
  propertyNames: LabelKey,
  additionalProperties: { anyOf: [LabelValue, { type: 'null' }] },
  maxProperties: 64,
})
export type Labels = Record<string, string>

/** A string enum as JSON Schema `enum` (not `anyOf` of consts), so client generators make enum types. */
export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: Record<string, unknown> = {},
) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options })
}
