import { readFileSync } from 'node:fs'
import { parser } from '@prometheus-io/lezer-promql'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { createApiMetrics } from '../apps/api/src/metrics.ts'
import { WorkerMetrics } from '../apps/worker/src/metrics.ts'

// The alert rules and the Grafana dashboard shipped with the chart query only series the code
// registers (names read from the registries themselves), with labels those series have, in PromQL
// that the Prometheus project's own grammar (lezer-promql) parses without an error.

const files = new URL('../deploy/helm/kiln/files/', import.meta.url)

/** Every series name the API and the worker export, with the labels each has. */
function registeredSeries(): Map<string, Set<string>> {
  const series = new Map<string, Set<string>>()
  const registries = [
    createApiMetrics({ processMetrics: false }).registry,
    new WorkerMetrics({ processMetrics: false }).registry,
  ]
  for (const registry of registries) {
    for (const metric of registry.getMetricsAsArray()) {
      const { name, labelNames, type } = metric as unknown as {
        name: string
        labelNames: string[]
        type: string
      }
      const labels = new Set(labelNames)
      if (type === 'histogram') {
        series.set(`${name}_bucket`, new Set([...labels, 'le']))
        series.set(`${name}_sum`, labels)
        series.set(`${name}_count`, labels)
      } else series.set(name, labels)
    }
  }
  return series
}
const series = registeredSeries()

// Grafana replaces its own variables before a query reaches Prometheus.
const grafanaVariables: Record<string, string> = { __rate_interval: '5m', __interval: '1m', __range: '1h' }
const withGrafanaVariables = (expr: string) =>
  expr.replace(/\$\{?(\w+)\}?/g, (whole, name: string) => grafanaVariables[name] ?? whole)

interface Checked {
  /** Series names the expression selects. */
  selected: string[]
  problems: string[]
}

/** Parses `expr` with the PromQL grammar; names every parse error, unknown series and unknown label. */
function checkPromql(expr: string): Checked {
  const tree = parser.parse(expr)
  const problems: string[] = []
  const selected: string[] = []
  tree.iterate({
    enter(ref) {
      if (ref.type.isError)
        problems.push(`syntax error at ${ref.from}: …${expr.slice(ref.from, ref.from + 20)}`)
      if (ref.name !== 'VectorSelector') return
      const node = ref.node
      const identifier = node.getChild('Identifier')
      if (!identifier) {
        problems.push(`a selector without a metric name: ${expr.slice(ref.from, ref.to)}`)
        return
      }
      const name = expr.slice(identifier.from, identifier.to)
      selected.push(name)
      const labels = series.get(name)
      if (!labels) {
        problems.push(`${name} is not registered by the API or the worker`)
        return
      }
      for (const matcher of node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
        const label = matcher.getChild('LabelName')
        const labelName = label ? expr.slice(label.from, label.to) : ''
        if (!labels.has(labelName)) problems.push(`${name} has no label ${labelName}`)
      }
    },
  })
  return { selected, problems }
}

describe('the PromQL check itself', () => {
  it('finds syntax errors, unknown series and unknown labels', () => {
    expect(checkPromql('sum(rate(kiln_http_requests_total[5m])').problems).not.toEqual([])
    expect(checkPromql('no_such_function(kiln_backend_up)').problems).not.toEqual([])
    expect(checkPromql('kiln_no_such_series > 0').problems).toEqual([
      'kiln_no_such_series is not registered by the API or the worker',
    ])
    expect(checkPromql('kiln_backend_up{bakend="sim"} == 0').problems).toEqual([
      'kiln_backend_up has no label bakend',
    ])
    expect(checkPromql('max by (backend) (kiln_backend_up{backend="sim"}) == 0')).toEqual({
      selected: ['kiln_backend_up'],
      problems: [],
    })
  })
})

interface Rule {
  alert: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

describe('prometheus-rules.yaml', () => {
  const text = readFileSync(new URL('prometheus-rules.yaml', files), 'utf8')
  const doc = parseYaml(text) as { groups: { name: string; rules: Rule[] }[] }
  const rules = doc.groups.flatMap((g) => g.rules)

  it('is the groups list of a PrometheusRule spec, with the alerts operators page on', () => {
    expect(text.startsWith('groups:')).toBe(true)
    expect(Object.keys(doc)).toEqual(['groups'])
    expect(rules.map((r) => r.alert).sort()).toEqual(
      [
        'KilnAPIErrors',
        'KilnBackendUnavailable',
        'KilnCAExpiringSoon',
        'KilnOperationFailureRatio',
        'KilnOperationStuck',
        'KilnQueueBacklog',
      ].sort(),
    )
    for (const rule of rules) {
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels?.['severity'])
      expect(rule.annotations?.['summary'], rule.alert).toBeTruthy()
      expect(rule.annotations?.['description'], rule.alert).toBeTruthy()
      expect(rule.for ?? '0s', rule.alert).toMatch(/^\d+[smh]$/)
    }
  })

  it.each(rules.map((r) => [r.alert, r.expr] as const))(
    '%s parses and queries registered series',
    (_, expr) => {
      const { selected, problems } = checkPromql(expr)
      expect(problems).toEqual([])
      expect(selected.length).toBeGreaterThan(0)
    },
  )
})

describe('grafana-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(new URL('grafana-dashboard.json', files), 'utf8')) as {
    templating: { list: { name: string; type: string; query: string }[] }
    panels: {
      title: string
      type: string
      datasource?: { uid: string }
      targets?: { expr: string; datasource?: { uid: string } }[]
    }[]
  }
  const queried = dashboard.panels.filter((p) => p.type !== 'row')
  const targets = queried.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr] as const))

  // Grafana's own syntax for the variable, not a template literal.
  const datasourceVariable = ['$', '{datasource}'].join('')

  it('has a Prometheus datasource variable every panel and query uses', () => {
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }),
    )
    for (const panel of queried) {
      expect(panel.datasource?.uid, panel.title).toBe(datasourceVariable)
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0)
      for (const t of panel.targets ?? [])
        expect(t.datasource?.uid ?? datasourceVariable, panel.title).toBe(datasourceVariable)
    }
  })

  it.each(targets)('%s: %s parses and queries registered series', (_, expr) => {
    const { selected, problems } = checkPromql(withGrafanaVariables(expr))
    expect(problems).toEqual([])
    expect(selected.length).toBeGreaterThan(0)
  })

  it('shows every series the code registers, bar none', () => {
    const shown = new Set(targets.flatMap(([, expr]) => checkPromql(withGrafanaVariables(expr)).selected))
    const families = (name: string) => name.replace(/_(bucket|sum|count)$/, '')
    const missing = [...new Set([...series.keys()].map(families))].filter(
      (family) => ![...shown].some((name) => families(name) === family),
    )
    expect(missing).toEqual([])
  })
})
