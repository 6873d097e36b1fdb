import type { ReactNode } from 'react'
import type { Feature } from '../api.ts'
import { type FieldErrors, FieldMessage, invalidProps } from './problem.tsx'

/** Feature values by feature name, then property. */
export type FeatureValues = Record<string, Record<string, unknown>>

interface PropertySchema {
  type?: unknown
  enum?: unknown
  minimum?: unknown
  maximum?: unknown
  description?: unknown
}

/** The properties of a feature's JSON Schema, so new features render without portal changes. */
export function featureProperties(feature: Feature): [string, PropertySchema][] {
  const properties = feature.schema['properties']
  if (!properties || typeof properties !== 'object') return []
  return Object.entries(properties as Record<string, PropertySchema>)
}

/** For each feature property: the first layer that sets it, else the feature's default. */
export function baselineValues(features: Feature[], ...layers: (FeatureValues | undefined)[]): FeatureValues {
  const values: FeatureValues = {}
  for (const feature of features) {
    const value: Record<string, unknown> = {}
    for (const [property] of featureProperties(feature)) {
      const layer = layers.find((l) => l?.[feature.name]?.[property] !== undefined)
      value[property] = layer?.[feature.name]?.[property] ?? feature.default[property]
    }
    values[feature.name] = value
  }
  return values
}

/** Only what differs from the baseline; undefined when nothing does. */
export function changedValues(values: FeatureValues, baseline: FeatureValues): FeatureValues | undefined {
  const changed: FeatureValues = {}
  for (const [feature, properties] of Object.entries(values)) {
    for (const [property, value] of Object.entries(properties)) {
      // An emptied number field means "leave it as it was".
      if (value === '' || Object.is(value, baseline[feature]?.[property])) continue
      changed[feature] = { ...changed[feature], [property]: value }
    }
  }
  return Object.keys(changed).length > 0 ? changed : undefined
}

export const featurePointer = (feature: string, property: string) => `/features/${feature}/${property}`

interface Props {
  features: Feature[]
  values: FeatureValues
  onChange: (values: FeatureValues) => void
  locked?: string[]
  errors?: FieldErrors
  idPrefix: string
}

/** One fieldset per feature, one control per schema property, labelled `<feature>.<property>`. */
export function FeatureControls({ features, values, onChange, locked = [], errors = {}, idPrefix }: Props) {
  const set = (feature: string, property: string, value: unknown) =>
    onChange({ ...values, [feature]: { ...values[feature], [property]: value } })
  return (
    <div className="features">
      {features.map((feature) => {
        const isLocked = locked.includes(feature.name)
        return (
          <fieldset key={feature.name} className="feature" disabled={isLocked}>
            <legend>{feature.title}</legend>
            {isLocked && <p className="badge">locked by template</p>}
            <p className="hint">{feature.description}</p>
            {featureProperties(feature).map(([property, schema]) => {
              const id = `${idPrefix}-${feature.name}-${property}`
              const label = `${feature.name}.${property}`
              const value = values[feature.name]?.[property]
              const message = errors[featurePointer(feature.name, property)]
              const aria = invalidProps(message, id)
              let control: ReactNode
              if (schema.type === 'boolean') {
                return (
                  <div key={property} className="field check">
                    <input
                      id={id}
                      type="checkbox"
                      checked={value === true}
                      onChange={(e) => set(feature.name, property, e.target.checked)}
                      {...aria}
                    />
                    <label htmlFor={id}>{label}</label>
                    <FieldMessage message={message} id={id} />
                  </div>
                )
              }
              if (Array.isArray(schema.enum)) {
                const options = schema.enum as unknown[]
                control = (
                  <select
                    id={id}
                    value={String(value)}
                    onChange={(e) =>
                      set(
                        feature.name,
                        property,
                        options.find((o) => String(o) === e.target.value),
                      )
                    }
                    {...aria}
                  >
                    {options.map((option) => (
                      <option key={String(option)} value={String(option)}>
                        {String(option)}
                      </option>
                    ))}
                  </select>
                )
              } else if (schema.type === 'integer' || schema.type === 'number') {
                control = (
                  <input
                    id={id}
                    type="number"
                    step={schema.type === 'integer' ? 1 : 'any'}
                    min={typeof schema.minimum === 'number' ? schema.minimum : undefined}
                    max={typeof schema.maximum === 'number' ? schema.maximum : undefined}
                    value={value === undefined ? '' : String(value)}
                    onChange={(e) =>
                      set(feature.name, property, e.target.value === '' ? '' : Number(e.target.value))
                    }
                    {...aria}
                  />
                )
              } else {
                control = (
                  <input
                    id={id}
                    type="text"
                    value={value === undefined ? '' : String(value)}
                    onChange={(e) => set(feature.name, property, e.target.value)}
                    {...aria}
                  />
                )
              }
              return (
                <div key={property} className="field">
                  <label htmlFor={id}>{label}</label>
                  {control}
                  {typeof schema.description === 'string' && <p className="hint">{schema.description}</p>}
                  <FieldMessage message={message} id={id} />
                </div>
              )
            })}
          </fieldset>
        )
      })}
    </div>
  )
}
