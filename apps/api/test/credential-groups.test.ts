import { describe, expect, it } from 'vitest'
import { clusterGroupsOf, localOperator, mayActAsSystemUser, type Principal } from '../src/auth.ts'

// The group decision the kubeconfig and CSR routes share. Today every caller is the local operator
// (a platform admin), so the API tests can only show an admin's side; a non-admin's is shown here,
// and packages/pki/test/cluster-authority.test.ts shows that signing enforces it.
describe('cluster credential groups', () => {
  const member: Principal = { subject: 'user:alice', platformAdmin: false }

  it('makes a platform admin cluster-admin, who may also act as a system: user', () => {
    expect(clusterGroupsOf(localOperator)).toEqual(['system:masters'])
    expect(mayActAsSystemUser(localOperator)).toBe(true)
  })

  it('grants anyone else no group and no system: user', () => {
    expect(clusterGroupsOf(member)).toEqual([])
    expect(mayActAsSystemUser(member)).toBe(false)
  })
})
