import type { ProjectRole } from '@kiln/domain'
import { describe, expect, it } from 'vitest'
import { clusterGroupsOf, localOperator, mayActAsSystemUser, type Principal } from '../src/auth.ts'

// The group decision the kubeconfig and CSR routes share: from the caller's role in the cluster's
// project. packages/pki/test/cluster-authority.test.ts shows that signing enforces it;
// apps/api/test/authorization.test.ts that only members and above reach the credential routes.
describe('cluster credential groups', () => {
  const project = 'a4f1c2d3-0000-4000-8000-000000000001'
  const other = 'a4f1c2d3-0000-4000-8000-000000000002'
  const user = (role: ProjectRole): Principal => ({
    subject: `user:${role}`,
    kind: 'user',
    platformAdmin: false,
    roles: new Map([[project, role]]),
    groups: [],
  })

  it('makes a platform admin cluster-admin in every project, who may also act as a system: user', () => {
    expect(clusterGroupsOf(localOperator, project)).toEqual(['system:masters'])
    expect(mayActAsSystemUser(localOperator, other)).toBe(true)
  })

  it('makes project admins and members cluster-admin', () => {
    for (const role of ['admin', 'member'] as const) {
      expect(clusterGroupsOf(user(role), project)).toEqual(['system:masters'])
      expect(mayActAsSystemUser(user(role), project)).toBe(true)
    }
  })

  it('gives a viewer the read-only kiln:viewers group and no system: user', () => {
    expect(clusterGroupsOf(user('viewer'), project)).toEqual(['kiln:viewers'])
    expect(mayActAsSystemUser(user('viewer'), project)).toBe(false)
  })

  it('grants nothing in a project the caller has no role in', () => {
    expect(clusterGroupsOf(user('admin'), other)).toEqual([])
    expect(mayActAsSystemUser(user('admin'), other)).toBe(false)
  })
})
