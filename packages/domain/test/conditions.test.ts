import { describe, expect, it } from 'vitest'
import {
  type ClusterPhase,
  type Condition,
  derivePhase,
  initialClusterStatus,
  setCondition,
} from '../src/index.ts'

const at = '2026-01-01T00:00:00.000Z'
const cond = (type: string, status: Condition['status'], reason = 'Test'): Condition => ({
  type,
  status,
  reason,
  message: '',
  lastTransitionTime: at,
})

describe('derivePhase', () => {
  const cases: {
    name: string
    conditions: Condition[]
    generation: number
    /** Whether the cluster holds machines or an endpoint; derivePhase assumes so when not told. */
    holds?: boolean
    phase: ClusterPhase
  }[] = [
    { name: 'nothing observed, no conditions', conditions: [], generation: 0, phase: 'Pending' },
    {
      name: 'nothing observed, creation running',
      conditions: [cond('Ready', 'Unknown'), cond('Progressing', 'True')],
      generation: 0,
      phase: 'Provisioning',
    },
    {
      // A create that failed half-way, holding machines: broken, not merely failed.
      name: 'never built, Ready False, holding machines',
      conditions: [cond('Ready', 'False')],
      generation: 0,
      phase: 'Degraded',
    },
    {
      name: 'never built, Ready False, holding nothing',
      conditions: [cond('Ready', 'False'), cond('Progressing', 'False')],
      generation: 0,
      holds: false,
      phase: 'Failed',
    },
    {
      // A pending create cancelled before any step ran.
      name: 'never built, Ready Unknown, create ended, holding nothing',
      conditions: [cond('Ready', 'Unknown'), cond('Progressing', 'False')],
      generation: 0,
      holds: false,
      phase: 'Failed',
    },
    {
      name: 'never built, holding nothing, create not started',
      conditions: [cond('Ready', 'Unknown')],
      generation: 0,
      holds: false,
      phase: 'Pending',
    },
    {
      name: 'holding nothing, retry running',
      conditions: [cond('Ready', 'False'), cond('Progressing', 'True')],
      generation: 0,
      holds: false,
      phase: 'Provisioning',
    },
    {
      name: 'built once, holding nothing: still Degraded',
      conditions: [cond('Ready', 'False'), cond('Progressing', 'False')],
      generation: 2,
      holds: false,
      phase: 'Degraded',
    },
    {
      name: 'first build in progress',
      conditions: [cond('Ready', 'Unknown'), cond('Progressing', 'True')],
      generation: 0,
      phase: 'Provisioning',
    },
    { name: 'ready', conditions: [cond('Ready', 'True')], generation: 1, phase: 'Ready' },
    {
      name: 'ready while a change progresses',
      conditions: [cond('Ready', 'True'), cond('Progressing', 'True')],
      generation: 2,
      phase: 'Updating',
    },
    {
      name: 'ready on the first generation even if generation 0',
      conditions: [cond('Ready', 'True')],
      generation: 0,
      phase: 'Ready',
    },
    {
      name: 'not ready and nothing progressing',
      conditions: [cond('Ready', 'False'), cond('Progressing', 'False')],
      generation: 3,
      phase: 'Degraded',
    },
    {
      name: 'not ready, no Progressing condition',
      conditions: [cond('Ready', 'False')],
      generation: 3,
      phase: 'Degraded',
    },
    {
      name: 'not ready while a change progresses',
      conditions: [cond('Ready', 'False'), cond('Progressing', 'True')],
      generation: 3,
      phase: 'Updating',
    },
    {
      name: 'ready unknown after creation',
      conditions: [cond('Ready', 'Unknown')],
      generation: 2,
      phase: 'Updating',
    },
    {
      name: 'deleting wins over ready',
      conditions: [cond('Ready', 'True'), cond('Deleting', 'True')],
      generation: 4,
      phase: 'Deleting',
    },
    {
      name: 'deleting wins before anything was observed',
      conditions: [cond('Deleting', 'True')],
      generation: 0,
      phase: 'Deleting',
    },
    {
      name: 'Deleting False does not delete',
      conditions: [cond('Ready', 'True'), cond('Deleting', 'False')],
      generation: 4,
      phase: 'Ready',
    },
  ]
  it.each(cases)('$name → $phase', ({ conditions, generation, holds, phase }) => {
    expect(derivePhase(conditions, generation, holds)).toBe(phase)
  })
})

describe('setCondition', () => {
  const later = new Date('2026-02-02T12:00:00.000Z')

  it('adds a new condition stamped with now', () => {
    const out = setCondition(
      [],
      { type: 'Ready', status: 'False', reason: 'Provisioning', message: 'm' },
      later,
    )
    expect(out).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'Provisioning',
        message: 'm',
        lastTransitionTime: later.toISOString(),
      },
    ])
  })

  it('keeps lastTransitionTime when the status does not change, but updates reason and message', () => {
    const before = [cond('Ready', 'False', 'Provisioning'), cond('Progressing', 'True')]
    const out = setCondition(
      before,
      { type: 'Ready', status: 'False', reason: 'Waiting', message: 'x' },
      later,
    )
    expect(out).toHaveLength(2)
    expect(out.find((c) => c.type === 'Ready')).toEqual({
      type: 'Ready',
      status: 'False',
      reason: 'Waiting',
      message: 'x',
      lastTransitionTime: at,
    })
    expect(before[0]!.reason).toBe('Provisioning')
  })

  it('stamps now when the status changes, replacing the old entry', () => {
    const before = [cond('Ready', 'False'), cond('Progressing', 'True')]
    const out = setCondition(before, { type: 'Ready', status: 'True', reason: 'Ready', message: '' }, later)
    expect(out.filter((c) => c.type === 'Ready')).toEqual([
      {
        type: 'Ready',
        status: 'True',
        reason: 'Ready',
        message: '',
        lastTransitionTime: later.toISOString(),
      },
    ])
    expect(out.find((c) => c.type === 'Progressing')).toEqual(before[1])
  })
})

describe('initialClusterStatus', () => {
  it('is Pending with a Ready Unknown condition and generation 0', () => {
    const now = new Date('2026-03-03T03:03:03.000Z')
    expect(initialClusterStatus(now)).toEqual({
      phase: 'Pending',
      observedGeneration: 0,
      message: 'Accepted',
      conditions: [
        {
          type: 'Ready',
          status: 'Unknown',
          reason: 'Pending',
          message: 'Waiting for the create operation to start.',
          lastTransitionTime: now.toISOString(),
        },
      ],
    })
  })
})
