import type Type from 'typebox'
import { StringEnum } from './names.ts'

export const VersionLifecycle = StringEnum(['supported', 'deprecated', 'expired'], {
  description:
    'supported: offered for new clusters; deprecated: still offered, upgrade advised; expired: refused for new clusters.',
})
export type VersionLifecycle = Type.Static<typeof VersionLifecycle>

/** `1.31.4` → [1, 31, 4]; the `v` prefix is tolerated. */
export function parseKubernetesVersion(version: string): [number, number, number] {
  const m = /^v?(\d+)\.(\d+)(?:\.(\d+))?$/.exec(version)
  if (!m) throw new Error(`'${version}' is not a Kubernetes version`)
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)]
}

export function compareKubernetesVersions(a: string, b: string): number {
  const pa = parseKubernetesVersion(a)
  const pb = parseKubernetesVersion(b)
  for (let i = 0; i < 3; i++) {
    const d = pa[i]! - pb[i]!
    if (d !== 0) return d
  }
  return 0
}

/** A list key (numbers compared as numbers) that puts the newest Kubernetes version first. */
export function newestVersionFirst(version: string): number[] {
  return parseKubernetesVersion(version).map((n) => -n)
}

export interface VersionRange {
  /** Inclusive. */
  min?: string
  /** Inclusive; `1.31` covers every 1.31 patch. */
  max?: string
}

export function inVersionRange(version: string, range: VersionRange): boolean {
  if (range.min && compareKubernetesVersions(version, range.min) < 0) return false
  if (range.max) {
    const [maj, min] = parseKubernetesVersion(range.max)
    const hasPatch = /^v?\d+\.\d+\.\d+$/.test(range.max)
    const upper = hasPatch ? range.max : `${maj}.${min}.999999`
    if (compareKubernetesVersions(version, upper) > 0) return false
  }
  return true
}
