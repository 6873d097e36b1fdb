import Value from 'typebox/value'
import { describe, expect, it } from 'vitest'
import {
  allBackendKinds,
  ClusterOverrides,
  checkFeatureChange,
  type FeatureValues,
  featureCatalogue,
  featureDefinition,
  featureNames,
  featureOverridesSchema,
  NodeGroupInput,
  parseKubernetesVersion,
} from '../src/index.ts'

const definitions = featureNames.map((name) => featureDefinition(name))

describe('feature catalogue', () => {
  it('lists the seven known features', () => {
    expect([...featureNames].sort()).toEqual(
      ['autoscaler', 'cni', 'gpu', 'ingress', 'kubeProxyMode', 'metricsServer', 'monitoring'].sort(),
    )
  })

  it('has unique names, each matching its catalogue key', () => {
    expect(new Set(definitions.map((d) => d.name)).size).toBe(definitions.length)
    for (const [key, def] of Object.entries(featureCatalogue)) expect(def.name).toBe(key)
  })

  it.each(definitions)('$name: the default validates against its own schema', (def) => {
    expect(Value.Errors(def.schema, def.default)).toEqual([])
    expect(Value.Check(def.schema, def.default)).toBe(true)
  })

  it.each(definitions)('$name: the schema rejects unknown fields', (def) => {
    expect(Value.Check(def.schema, { ...def.default, bogus: true })).toBe(false)
  })

  it.each(definitions)('$name: the default sets every field of the schema', (def) => {
    expect(Object.keys(def.default).sort()).toEqual(Object.keys(def.schema.properties).sort())
  })

  it.each(definitions)('$name: backends are known kinds and the version range parses', (def) => {
    expect(def.backends.length).toBeGreaterThan(0)
    for (const kind of def.backends) expect(allBackendKinds).toContain(kind)
    for (const bound of [def.kubernetesVersions.min, def.kubernetesVersions.max]) {
      if (bound !== undefined) expect(() => parseKubernetesVersion(bound)).not.toThrow()
    }
  })

  it.each(definitions)('$name: conflicts name known features and fields', (def) => {
    for (const conflict of def.conflicts) {
      expect(Object.keys(def.schema.properties)).toContain(conflict.when.field)
      expect(featureNames).toContain(conflict.conflictsWith.feature)
      const other = featureDefinition(conflict.conflictsWith.feature)
      expect(Object.keys(other.schema.properties)).toContain(conflict.conflictsWith.field)
      for (const value of conflict.conflictsWith.oneOf) {
        expect(Value.Check(other.schema, { ...other.default, [conflict.conflictsWith.field]: value })).toBe(
          true,
        )
      }
      expect(conflict.reason).not.toBe('')
    }
  })

  const enabledCases: { name: (typeof featureNames)[number]; value: object; enabled: boolean }[] = [
    { name: 'gpu', value: { enabled: true, mode: 'operator' }, enabled: true },
    { name: 'gpu', value: { enabled: false, mode: 'operator' }, enabled: false },
    { name: 'ingress', value: { controller: 'nginx' }, enabled: true },
    { name: 'ingress', value: { controller: 'none' }, enabled: false },
    { name: 'monitoring', value: { enabled: false, retentionDays: 15 }, enabled: false },
    { name: 'cni', value: { plugin: 'flannel' }, enabled: true },
    { name: 'kubeProxyMode', value: { mode: 'none' }, enabled: true },
    { name: 'autoscaler', value: { enabled: true }, enabled: true },
  ]
  it.each(enabledCases)('$name isEnabled($value) is $enabled', ({ name, value, enabled }) => {
    const def = featureDefinition(name)
    expect(Value.Check(def.schema, value)).toBe(true)
    expect(def.isEnabled(value as never)).toBe(enabled)
  })

  it('only gpu and autoscaler are node-group scoped', () => {
    expect(definitions.filter((d) => d.nodeGroupScoped).map((d) => d.name)).toEqual(['gpu', 'autoscaler'])
  })
})

describe('featureOverridesSchema', () => {
  const cluster = featureOverridesSchema()
  const nodeGroup = featureOverridesSchema({ nodeGroupScopedOnly: true })

  // Negative rows start from a set that is valid in full and add exactly one defect, so they are
  // rejected for that defect and not for anything else.
  const all = Object.fromEntries(featureNames.map((n) => [n, { ...featureCatalogue[n].default }])) as Record<
    string,
    Record<string, unknown>
  >
  const scoped = {
    gpu: { ...featureCatalogue.gpu.default },
    autoscaler: { ...featureCatalogue.autoscaler.default },
  }
  const withField = (
    base: Record<string, Record<string, unknown>>,
    feature: string,
    field: string,
    value: unknown,
  ) => ({
    ...base,
    [feature]: { ...base[feature], [field]: value },
  })

  const cases: { name: string; schema: 'cluster' | 'nodeGroup'; value: unknown; valid: boolean }[] = [
    { name: 'every feature in full (the catalogue defaults)', schema: 'cluster', value: all, valid: true },
    { name: 'no overrides', schema: 'cluster', value: {}, valid: true },
    { name: 'one field of one feature', schema: 'cluster', value: { gpu: { enabled: true } }, valid: true },
    { name: 'an empty feature object', schema: 'cluster', value: { ingress: {} }, valid: true },
    {
      name: 'several features, partially',
      schema: 'cluster',
      value: {
        monitoring: { retentionDays: 30 },
        cni: { plugin: 'cilium' },
        kubeProxyMode: { mode: 'none' },
      },
      valid: true,
    },
    {
      name: 'an unknown feature name',
      schema: 'cluster',
      value: { ...all, tracing: { enabled: true } },
      valid: false,
    },
    { name: 'a misspelt feature name', schema: 'cluster', value: { ...all, gpus: all['gpu'] }, valid: false },
    { name: 'an unknown field', schema: 'cluster', value: withField(all, 'gpu', 'count', 2), valid: false },
    {
      name: 'a field of the wrong type',
      schema: 'cluster',
      value: withField(all, 'gpu', 'enabled', 'yes'),
      valid: false,
    },
    {
      name: 'a value outside an enum',
      schema: 'cluster',
      value: withField(all, 'cni', 'plugin', 'weave'),
      valid: false,
    },
    {
      name: 'a value outside a range',
      schema: 'cluster',
      value: withField(all, 'monitoring', 'retentionDays', 0),
      valid: false,
    },
    {
      name: 'a feature that is not an object',
      schema: 'cluster',
      value: { ...all, gpu: true },
      valid: false,
    },
    { name: 'node group: both scoped features in full', schema: 'nodeGroup', value: scoped, valid: true },
    { name: 'node group: no overrides', schema: 'nodeGroup', value: {}, valid: true },
    { name: 'node group: gpu only', schema: 'nodeGroup', value: { gpu: { enabled: true } }, valid: true },
    {
      name: 'node group: autoscaler only',
      schema: 'nodeGroup',
      value: { autoscaler: { enabled: false } },
      valid: true,
    },
    {
      name: 'node group: a cluster-only feature',
      schema: 'nodeGroup',
      value: { ...scoped, ingress: { controller: 'nginx' } },
      valid: false,
    },
    {
      name: 'node group: an unknown field',
      schema: 'nodeGroup',
      value: withField(scoped, 'gpu', 'count', 1),
      valid: false,
    },
  ]

  it.each(cases)('$schema: $name → valid=$valid', ({ schema, value, valid }) => {
    const s = schema === 'cluster' ? cluster : nodeGroup
    expect(Value.Check(s, value)).toBe(valid)
  })

  it('is used by ClusterOverrides and NodeGroupInput, so requests may set single feature fields', () => {
    expect(Value.Check(ClusterOverrides, { features: { ingress: { controller: 'nginx' } } })).toBe(true)
    expect(Value.Check(NodeGroupInput, { name: 'gpu', features: { gpu: { enabled: true } } })).toBe(true)
  })

  it('makes ClusterOverrides and NodeGroupInput reject bad feature values', () => {
    expect(Value.Check(ClusterOverrides, { features: { ...all, ingress: { controller: 'haproxy' } } })).toBe(
      false,
    )
    expect(
      Value.Check(NodeGroupInput, { name: 'gpu', features: { ...scoped, cni: { plugin: 'calico' } } }),
    ).toBe(false)
    // the same bodies without the defect pass, so the rejections above are about the defect
    expect(Value.Check(ClusterOverrides, { features: all })).toBe(true)
    expect(Value.Check(NodeGroupInput, { name: 'gpu', features: scoped })).toBe(true)
  })
})

describe('checkFeatureChange', () => {
  const defaults = Object.fromEntries(
    featureNames.map((n) => [n, featureCatalogue[n].default]),
  ) as unknown as FeatureValues

  const cases: { name: string; change: Partial<typeof defaults>; pointers: string[] }[] = [
    { name: 'no change', change: {}, pointers: [] },
    { name: 'a mutable feature', change: { ingress: { controller: 'nginx' } }, pointers: [] },
    { name: 'the cni plugin', change: { cni: { plugin: 'cilium' } }, pointers: ['/features/cni'] },
    {
      name: 'cni and kube-proxy together',
      change: {
        cni: { plugin: 'cilium' },
        kubeProxyMode: { mode: 'none' },
        gpu: { enabled: true, mode: 'operator' },
      },
      pointers: ['/features/cni', '/features/kubeProxyMode'],
    },
  ]

  it.each(cases)('$name', ({ change, pointers }) => {
    const violations = checkFeatureChange(defaults, { ...defaults, ...change })
    expect(violations.map((v) => v.pointer)).toEqual(pointers)
    for (const v of violations) expect(v.message).toMatch(/cannot change/)
  })
})
