import { describe, expect, it } from 'vitest'
import {
  compareKubernetesVersions,
  inVersionRange,
  parseKubernetesVersion,
  type VersionRange,
} from '../src/index.ts'

describe('parseKubernetesVersion', () => {
  const valid: [string, [number, number, number]][] = [
    ['1.31.4', [1, 31, 4]],
    ['v1.31.4', [1, 31, 4]],
    ['1.31', [1, 31, 0]],
    ['1.9.10', [1, 9, 10]],
  ]
  it.each(valid)('%s → %j', (input, expected) => {
    expect(parseKubernetesVersion(input)).toEqual(expected)
  })

  it.each(['', '1', 'latest', '1.31.4-rc.1', '1.31.x', ' 1.31.4', 'V1.31.4', '1.31.4.1'])(
    'rejects %j',
    (input) => {
      expect(() => parseKubernetesVersion(input)).toThrow(/not a Kubernetes version/)
    },
  )
})

describe('compareKubernetesVersions', () => {
  const cases: [string, string, -1 | 0 | 1][] = [
    ['1.31.4', '1.31.4', 0],
    ['1.31.4', '1.31.5', -1],
    ['1.31.10', '1.31.9', 1],
    ['1.9.0', '1.10.0', -1],
    ['1.30.99', '1.31.0', -1],
    ['2.0.0', '1.99.99', 1],
    ['v1.31.4', '1.31.4', 0],
    ['1.31', '1.31.0', 0],
    ['1.31', '1.31.1', -1],
  ]
  it.each(cases)('compare(%s, %s) has sign %i', (a, b, sign) => {
    expect(Math.sign(compareKubernetesVersions(a, b))).toBe(sign)
    expect(Math.sign(compareKubernetesVersions(b, a))).toBe(-sign || 0)
  })
})

describe('inVersionRange', () => {
  const cases: [string, VersionRange, boolean][] = [
    ['1.20.0', {}, true],
    ['1.31.4', {}, true],
    // min is inclusive
    ['1.29.99', { min: '1.30' }, false],
    ['1.30.0', { min: '1.30' }, true],
    ['1.30.1', { min: '1.30' }, true],
    ['1.31.3', { min: '1.31.4' }, false],
    ['1.31.4', { min: '1.31.4' }, true],
    // a minor-only max covers every patch of that minor
    ['1.31.0', { max: '1.31' }, true],
    ['1.31.9', { max: '1.31' }, true],
    ['1.31.123', { max: '1.31' }, true],
    ['1.32.0', { max: '1.31' }, false],
    ['1.30.5', { max: '1.31' }, true],
    // a patch-level max is inclusive of exactly that patch
    ['1.31.4', { max: '1.31.4' }, true],
    ['1.31.5', { max: '1.31.4' }, false],
    ['1.31.5', { max: 'v1.31.4' }, false],
    ['1.31.9', { max: 'v1.31' }, true],
    // both bounds
    ['1.29.8', { min: '1.30', max: '1.31' }, false],
    ['1.30.0', { min: '1.30', max: '1.31' }, true],
    ['1.31.9', { min: '1.30', max: '1.31' }, true],
    ['1.32.0', { min: '1.30', max: '1.31' }, false],
    ['v1.31.2', { min: '1.30', max: '1.31' }, true],
  ]
  it.each(cases)('%s in %j is %s', (version, range, expected) => {
    expect(inVersionRange(version, range)).toBe(expected)
  })
})
