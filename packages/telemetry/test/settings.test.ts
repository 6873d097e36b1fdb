import { describe, expect, it } from 'vitest'
import { tracingSettings } from '../src/index.ts'

// When the standard OTEL_* variables turn tracing on, and what they name.

describe('tracingSettings', () => {
  it('is off without OTEL variables, named by the process', () => {
    expect(tracingSettings({}, 'kiln-worker')).toEqual({
      enabled: false,
      serviceName: 'kiln-worker',
      endpoint: undefined,
      resourceAttributes: {},
    })
  })

  it('is on for OTEL_TRACES_EXPORTER=otlp or an OTLP endpoint; the traces endpoint is the URL itself', () => {
    expect(tracingSettings({ OTEL_TRACES_EXPORTER: 'otlp' }, 'kiln-api')).toMatchObject({
      enabled: true,
      endpoint: undefined,
    })
    expect(
      tracingSettings({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }, 'kiln-api'),
    ).toMatchObject({
      enabled: true,
      endpoint: 'http://collector:4318/v1/traces',
    })
    expect(
      tracingSettings(
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/custom',
        },
        'kiln-api',
      ),
    ).toMatchObject({ enabled: true, endpoint: 'http://traces:4318/custom' })
  })

  it('OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none win over an endpoint', () => {
    const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' }
    expect(tracingSettings({ ...endpoint, OTEL_SDK_DISABLED: 'TRUE' }, 'kiln-api').enabled).toBe(false)
    expect(tracingSettings({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }, 'kiln-api').enabled).toBe(false)
    expect(tracingSettings({ ...endpoint, OTEL_SDK_DISABLED: 'false' }, 'kiln-api').enabled).toBe(true)
  })

  it('OTEL_SERVICE_NAME beats service.name in OTEL_RESOURCE_ATTRIBUTES, which beats the default', () => {
    const attributes = 'service.name=from-attributes,k8s.namespace.name=kiln%2Dprod,broken,=x'
    expect(tracingSettings({ OTEL_RESOURCE_ATTRIBUTES: attributes }, 'kiln-api')).toMatchObject({
      serviceName: 'from-attributes',
      resourceAttributes: { 'service.name': 'from-attributes', 'k8s.namespace.name': 'kiln-prod' },
    })
    expect(
      tracingSettings({ OTEL_RESOURCE_ATTRIBUTES: attributes, OTEL_SERVICE_NAME: 'kiln-api-eu' }, 'kiln-api')
        .serviceName,
    ).toBe('kiln-api-eu')
  })
})
