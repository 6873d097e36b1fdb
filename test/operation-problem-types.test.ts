import { describe, expect, it } from 'vitest'
import { problemBase, problemTypes } from '../apps/api/src/problem-types.ts'
import { classifyError } from '../apps/worker/src/engine.ts'
import { AddonError, AddonErrorCode } from '../packages/addons/src/index.ts'
import { DriverError, type DriverErrorCode } from '../packages/drivers/src/index.ts'
import { type ClassifiedError, operationProblemType } from '../packages/jobs/src/index.ts'

// A failed operation stores a problem typed by its failure code; every type it can store is in the
// API's registry (so the document lists it and /problems/{slug} describes it) with the status it is
// stored with. The driver codes are listed as a Record so a new code fails to compile here.

const driverCodes: Record<DriverErrorCode, true> = {
  ERR_CAPACITY: true,
  ERR_TRANSIENT: true,
  ERR_UNAVAILABLE: true,
  ERR_INVALID_REQUEST: true,
  ERR_PROVISION_FAILED: true,
  ERR_NOT_SUPPORTED: true,
}

const failures: unknown[] = [
  ...Object.keys(driverCodes).map((code) => new DriverError(code as DriverErrorCode, 'failed')),
  ...Object.values(AddonErrorCode).map((code) => new AddonError(code, 'apply', 'Deployment/x/y', 'failed')),
  new Error('something unexpected'),
]

/** As the step runner ends a step: a retryable failure that outlived the horizon is the platform's. */
const final = (c: ClassifiedError): ClassifiedError =>
  c.errorClass === 'retryable' ? { ...c, errorClass: 'platform' } : c

describe('operation failure types', () => {
  it('every failure an operation can end with has a registered problem type with its status', () => {
    const missing: string[] = []
    for (const failure of failures) {
      const { type, status } = operationProblemType(final(classifyError(failure)))
      expect(type.startsWith(problemBase)).toBe(true)
      const slug = type.slice(problemBase.length)
      const registered = (problemTypes as Record<string, { status: number }>)[slug]
      if (!registered) missing.push(slug)
      else expect(registered.status, slug).toBe(status)
    }
    expect(missing).toEqual([])
    expect(failures.length).toBe(Object.keys(driverCodes).length + Object.keys(AddonErrorCode).length + 1)
  })
})
