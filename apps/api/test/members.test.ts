import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestApi, type TestApi } from '../../../test/support/api.ts'
import { aProject } from '../../../test/support/builders.ts'
import { expectProblem, pointersOf } from './helpers.ts'

// Changing who may manage a project: roles change in place, and no change leaves a project without
// an admin member (only platform admins could manage it then), not even two removals at once.

interface Member {
  id: string
  kind: string
  name: string
  role: string
}

let api: TestApi
let project = 0

beforeAll(async () => {
  api = await startTestApi()
})

afterAll(async () => {
  await api?.close()
})

/** A project of its own with these members, added through the API. */
async function aTeam(members: [name: string, role: string][]) {
  const name = `team-${project++}`
  await aProject(api.db, name)
  const added: Record<string, Member> = {}
  for (const [user, role] of members) {
    const res = await api.app.inject({
      method: 'POST',
      url: `/v1/projects/${name}/members`,
      payload: { kind: 'user', name: user, role },
    })
    expect(res.statusCode, res.body).toBe(201)
    added[user] = res.json() as Member
  }
  return { name, members: added }
}

const patch = (project: string, id: string, payload: Record<string, unknown>) =>
  api.app.inject({ method: 'PATCH', url: `/v1/projects/${project}/members/${id}`, payload })
const remove = (project: string, id: string) =>
  api.app.inject({ method: 'DELETE', url: `/v1/projects/${project}/members/${id}` })

async function roles(project: string) {
  const res = await api.app.inject({ method: 'GET', url: `/v1/projects/${project}/members` })
  expect(res.statusCode, res.body).toBe(200)
  return Object.fromEntries((res.json() as { items: Member[] }).items.map((m) => [m.name, m.role]))
}

describe('project members', () => {
  it('changes a role in place, audited once; the same role again changes nothing', async () => {
    const team = await aTeam([
      ['alice', 'admin'],
      ['bob', 'viewer'],
    ])
    const bob = team.members.bob!
    const changed = await patch(team.name, bob.id, { role: 'member' })
    expect(changed.statusCode, changed.body).toBe(200)
    expect(changed.json()).toMatchObject({ id: bob.id, name: 'bob', role: 'member' })
    expect(await roles(team.name)).toEqual({ alice: 'admin', bob: 'member' })

    expect((await patch(team.name, bob.id, { role: 'member' })).statusCode).toBe(200)
    const audit = await api.db.auditEvent.findMany({ where: { action: 'member.update', targetId: bob.id } })
    expect(audit.map((e) => e.data)).toEqual([{ kind: 'user', name: 'bob', from: 'viewer', to: 'member' }])
  })

  it('refuses to demote or remove the last admin (409 naming the field), and allows it once another is admin', async () => {
    const team = await aTeam([
      ['alice', 'admin'],
      ['bob', 'member'],
    ])
    const { alice, bob } = team.members as Record<'alice' | 'bob', Member>
    const demoted = expectProblem(await patch(team.name, alice.id, { role: 'viewer' }), 409)
    expect(pointersOf(demoted)).toEqual(['/role'])
    expect(demoted.detail).toMatch(/alice.*last admin/)
    expect(pointersOf(expectProblem(await remove(team.name, alice.id), 409))).toEqual(['/member'])
    expect(await roles(team.name)).toEqual({ alice: 'admin', bob: 'member' })

    expect((await patch(team.name, bob.id, { role: 'admin' })).statusCode).toBe(200)
    expect((await remove(team.name, alice.id)).statusCode).toBe(204)
    expect(await roles(team.name)).toEqual({ bob: 'admin' })
    expectProblem(await remove(team.name, bob.id), 409)
  })

  it('lets exactly one of two admins removing each other at once succeed', async () => {
    for (let round = 0; round < 10; round++) {
      const team = await aTeam([
        ['ann', 'admin'],
        ['ben', 'admin'],
      ])
      const results = await Promise.all([
        remove(team.name, team.members.ann!.id),
        remove(team.name, team.members.ben!.id),
      ])
      expect(results.map((r) => r.statusCode).sort(), `round ${round}`).toEqual([204, 409])
      expect(Object.values(await roles(team.name)), `round ${round}`).toEqual(['admin'])
    }
  })

  it('answers bad input with problems naming the field, and an unknown member with 404', async () => {
    const team = await aTeam([['alice', 'admin']])
    const alice = team.members.alice!
    expect(pointersOf(expectProblem(await patch(team.name, alice.id, { role: 'owner' }), 400))).toEqual([
      '/role',
    ])
    expectProblem(await patch(team.name, alice.id, { role: 'admin', name: 'mallory' }), 400)
    expectProblem(await patch(team.name, '2f0c9b8e-0d6a-4a8e-9c1e-3b7a5d9e1f20', { role: 'viewer' }), 404)
    expect(pointersOf(expectProblem(await patch(team.name, 'not-an-id', { role: 'viewer' }), 400))).toEqual([
      '/member',
    ])
  })
})
