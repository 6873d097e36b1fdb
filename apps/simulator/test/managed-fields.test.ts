import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ApplyConflictError,
  fieldSetOf,
  type ManagedFieldsEntry,
  recordUpdate,
  serverSideApply,
} from '../src/managed-fields.ts'
import type { Obj } from '../src/patch.ts'

const T1 = '2026-01-01T00:00:00Z'
const T2 = '2026-01-02T00:00:00Z'
const T3 = '2026-01-03T00:00:00Z'

interface DeploymentOptions {
  labels?: Record<string, string>
  replicas?: number
  containers?: Obj[]
}

/** A Deployment-like applied configuration; omitted options leave the field out. */
function aDeployment(options: DeploymentOptions = {}): Obj {
  const spec: Obj = {}
  if (options.replicas !== undefined) spec['replicas'] = options.replicas
  if (options.containers) spec['template'] = { spec: { containers: options.containers } }
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'default', ...(options.labels ? { labels: options.labels } : {}) },
    ...(Object.keys(spec).length > 0 ? { spec } : {}),
  }
}

const apply = (live: Obj | undefined, applied: Obj, manager: string, now = T1, force = false) =>
  serverSideApply(live, applied, { manager, force, now, apiVersion: 'apps/v1' })

const update = (before: Obj | undefined, after: Obj, manager: string, now = T2) =>
  recordUpdate(before, after, { manager, now, apiVersion: 'apps/v1' })

function managedFields(object: Obj): ManagedFieldsEntry[] {
  return ((object['metadata'] as Obj)['managedFields'] as ManagedFieldsEntry[] | undefined) ?? []
}

function entryOf(object: Obj, manager: string): ManagedFieldsEntry | undefined {
  return managedFields(object).find((entry) => entry.manager === manager)
}

function spec(object: Obj): Obj {
  return object['spec'] as Obj
}

function containersOf(object: Obj): Obj[] {
  return ((spec(object)['template'] as Obj)['spec'] as Obj)['containers'] as Obj[]
}

/** Edits a copy, as a client would before sending an update. */
function edited(object: Obj, edit: (copy: Obj) => void): Obj {
  const copy = structuredClone(object)
  edit(copy)
  return copy
}

function conflictOf(action: () => unknown): ApplyConflictError {
  try {
    action()
  } catch (error) {
    if (error instanceof ApplyConflictError) return error
    throw error
  }
  throw new Error('expected an ApplyConflictError')
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}

describe('serverSideApply', () => {
  it('creates the object with an Apply entry in the FieldsV1 shape Kubernetes writes', () => {
    const created = apply(
      undefined,
      aDeployment({ labels: { app: 'web' }, replicas: 3, containers: [{ name: 'app', image: 'app:1' }] }),
      'kiln',
    )
    expect(created['metadata']).toMatchObject({ name: 'web', namespace: 'default', labels: { app: 'web' } })
    expect(spec(created)['replicas']).toBe(3)
    expect(managedFields(created)).toEqual([
      {
        manager: 'kiln',
        operation: 'Apply',
        apiVersion: 'apps/v1',
        time: T1,
        fieldsType: 'FieldsV1',
        fieldsV1: expect.any(Object),
      },
    ])
    expect(JSON.stringify(managedFields(created)[0]?.fieldsV1)).toBe(
      '{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":' +
        '{"f:containers":{"k:{\\"name\\":\\"app\\"}":{".":{},"f:image":{},"f:name":{}}}}}}}',
    )
  })

  it('removes a label the manager no longer applies', () => {
    const first = apply(
      undefined,
      aDeployment({ labels: { app: 'web', tier: 'front' }, replicas: 1 }),
      'kiln',
    )
    const second = apply(first, aDeployment({ labels: { app: 'web' }, replicas: 1 }), 'kiln', T2)
    expect((second['metadata'] as Obj)['labels']).toEqual({ app: 'web' })
    expect(entryOf(second, 'kiln')?.fieldsV1).toEqual({
      'f:metadata': { 'f:labels': { 'f:app': {} } },
      'f:spec': { 'f:replicas': {} },
    })
    expect(entryOf(second, 'kiln')?.time).toBe(T2)

    const third = apply(second, aDeployment({ replicas: 1 }), 'kiln', T3)
    expect(third['metadata']).not.toHaveProperty('labels')
    expect(managedFields(third)).toHaveLength(1)
  })

  it('rejects a different value for a field another manager applied, naming manager and path', () => {
    const live = apply(undefined, aDeployment({ replicas: 3 }), 'kiln')
    const error = conflictOf(() => apply(live, aDeployment({ replicas: 5 }), 'ops', T2))
    expect(error.conflicts).toEqual([
      { manager: 'kiln', field: '.spec.replicas', operation: 'Apply', apiVersion: 'apps/v1' },
    ])
    expect(error.message).toBe('Apply failed with 1 conflict: conflict with "kiln": .spec.replicas')
  })

  it('moves ownership to the forcing manager', () => {
    const live = apply(undefined, aDeployment({ labels: { app: 'web' }, replicas: 3 }), 'kiln')
    const forced = apply(live, aDeployment({ replicas: 5 }), 'ops', T2, true)
    expect(spec(forced)['replicas']).toBe(5)
    expect(entryOf(forced, 'ops')?.fieldsV1).toEqual({ 'f:spec': { 'f:replicas': {} } })
    expect(entryOf(forced, 'kiln')?.fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { 'f:app': {} } } })
    expect(entryOf(forced, 'kiln')?.time).toBe(T1)

    const error = conflictOf(() =>
      apply(forced, aDeployment({ labels: { app: 'web' }, replicas: 3 }), 'kiln', T3),
    )
    expect(error.message).toBe('Apply failed with 1 conflict: conflict with "ops": .spec.replicas')
  })

  it('shares a field applied with the same value; it stays until its last owner drops it', () => {
    const live = apply(undefined, aDeployment({ labels: { app: 'web' }, replicas: 3 }), 'kiln')
    const shared = apply(live, aDeployment({ replicas: 3 }), 'ops', T2)
    expect(entryOf(shared, 'kiln')?.fieldsV1).toHaveProperty(['f:spec', 'f:replicas'])
    expect(entryOf(shared, 'ops')?.fieldsV1).toEqual({ 'f:spec': { 'f:replicas': {} } })

    const kilnDropped = apply(shared, aDeployment({ labels: { app: 'web' } }), 'kiln', T3)
    expect(spec(kilnDropped)['replicas']).toBe(3)
    expect(entryOf(kilnDropped, 'kiln')?.fieldsV1).toEqual({ 'f:metadata': { 'f:labels': { 'f:app': {} } } })

    const opsDropped = apply(kilnDropped, aDeployment(), 'ops', T3)
    expect(opsDropped).not.toHaveProperty('spec')
    expect(entryOf(opsDropped, 'ops')).toBeUndefined()
    expect(managedFields(opsDropped).map((entry) => entry.manager)).toEqual(['kiln'])
  })

  it('conflicts with a field kubectl-scale changed by an ordinary update', () => {
    const live = apply(undefined, aDeployment({ replicas: 3 }), 'kiln')
    const scaled = update(
      live,
      edited(live, (copy) => {
        spec(copy)['replicas'] = 5
      }),
      'kubectl-scale',
    )
    expect(entryOf(scaled, 'kubectl-scale')).toEqual({
      manager: 'kubectl-scale',
      operation: 'Update',
      apiVersion: 'apps/v1',
      time: T2,
      fieldsType: 'FieldsV1',
      fieldsV1: { 'f:spec': { 'f:replicas': {} } },
    })
    expect(entryOf(scaled, 'kiln')).toBeUndefined()

    const error = conflictOf(() => apply(scaled, aDeployment({ replicas: 4 }), 'kiln', T3))
    expect(error.conflicts).toMatchObject([{ manager: 'kubectl-scale', field: '.spec.replicas' }])
    expect(error.message).toBe(
      'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas',
    )
    expect(() => apply(scaled, aDeployment({ replicas: 5 }), 'kiln', T3)).not.toThrow()
  })

  it('lists several conflicts grouped by manager, as Kubernetes does', () => {
    const created = update(
      undefined,
      aDeployment({ replicas: 1, containers: [{ name: 'app', image: 'app:1' }] }),
      'kubectl-client-side-apply',
    )
    const error = conflictOf(() =>
      apply(created, aDeployment({ replicas: 2, containers: [{ name: 'app', image: 'app:2' }] }), 'kiln'),
    )
    expect(error.conflicts.map((conflict) => conflict.field)).toEqual([
      '.spec.replicas',
      '.spec.template.spec.containers[name="app"].image',
    ])
    expect(error.message).toBe(
      'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n' +
        '- .spec.replicas\n' +
        '- .spec.template.spec.containers[name="app"].image',
    )
  })

  it('merges containers by name and keeps a container another manager added', () => {
    const live = apply(undefined, aDeployment({ containers: [{ name: 'app', image: 'app:1' }] }), 'kiln')
    const injected = update(
      live,
      edited(live, (copy) => {
        containersOf(copy).push({ name: 'sidecar', image: 'log:1' })
      }),
      'injector',
    )
    expect(entryOf(injected, 'injector')?.fieldsV1).toEqual({
      'f:spec': {
        'f:template': {
          'f:spec': { 'f:containers': { 'k:{"name":"sidecar"}': { '.': {}, 'f:image': {}, 'f:name': {} } } },
        },
      },
    })

    const reapplied = apply(
      injected,
      aDeployment({ containers: [{ name: 'app', image: 'app:2' }] }),
      'kiln',
      T3,
    )
    expect(containersOf(reapplied)).toEqual([
      { name: 'app', image: 'app:2' },
      { name: 'sidecar', image: 'log:1' },
    ])
    expect(entryOf(reapplied, 'injector')?.fieldsV1).toEqual(entryOf(injected, 'injector')?.fieldsV1)
  })

  it('prunes fields and list items the manager stopped applying, but not other managers’ items', () => {
    const live = apply(
      undefined,
      aDeployment({
        containers: [
          { name: 'app', image: 'app:1', imagePullPolicy: 'Always' },
          { name: 'old', image: 'old:1' },
        ],
      }),
      'kiln',
    )
    const injected = update(
      live,
      edited(live, (copy) => {
        containersOf(copy).push({ name: 'sidecar', image: 'log:1' })
      }),
      'injector',
    )
    const pruned = apply(injected, aDeployment({ containers: [{ name: 'app', image: 'app:1' }] }), 'kiln', T3)
    expect(containersOf(pruned)).toEqual([
      { name: 'app', image: 'app:1' },
      { name: 'sidecar', image: 'log:1' },
    ])
  })

  it('ignores status and system fields for the main resource and keeps them from the live object', () => {
    const live: Obj = {
      ...apply(undefined, aDeployment({ replicas: 1 }), 'kiln'),
      status: { replicas: 1 },
    }
    ;(live['metadata'] as Obj)['uid'] = 'uid-1'
    ;(live['metadata'] as Obj)['resourceVersion'] = '7'
    const applied = {
      ...aDeployment({ replicas: 2 }),
      status: { replicas: 99 },
      metadata: { name: 'web', namespace: 'default', uid: 'other', resourceVersion: '1' },
    }
    const result = apply(live, applied, 'kiln', T2)
    expect(result['status']).toEqual({ replicas: 1 })
    expect(result['metadata']).toMatchObject({ uid: 'uid-1', resourceVersion: '7' })
    expect(entryOf(result, 'kiln')?.fieldsV1).toEqual({ 'f:spec': { 'f:replicas': {} } })
  })

  it('applies only status through the status subresource', () => {
    const live = apply(undefined, aDeployment({ replicas: 1 }), 'kiln')
    const result = serverSideApply(
      live,
      { ...aDeployment({ replicas: 9 }), status: { conditions: [{ type: 'Available', status: 'True' }] } },
      { manager: 'controller', force: false, now: T2, apiVersion: 'apps/v1', subresource: 'status' },
    )
    expect(spec(result)['replicas']).toBe(1)
    expect(result['status']).toEqual({ conditions: [{ type: 'Available', status: 'True' }] })
    expect(entryOf(result, 'controller')).toEqual({
      manager: 'controller',
      operation: 'Apply',
      apiVersion: 'apps/v1',
      time: T2,
      fieldsType: 'FieldsV1',
      fieldsV1: {
        'f:status': {
          'f:conditions': { 'k:{"type":"Available"}': { '.': {}, 'f:status': {}, 'f:type': {} } },
        },
      },
      subresource: 'status',
    })
    expect(entryOf(result, 'kiln')?.fieldsV1).toEqual({ 'f:spec': { 'f:replicas': {} } })
  })

  it('owns finalizers as a set of values', () => {
    const created = apply(
      undefined,
      { ...aDeployment(), metadata: { name: 'web', finalizers: ['kiln.dev/a'] } },
      'kiln',
    )
    expect(entryOf(created, 'kiln')?.fieldsV1).toEqual({
      'f:metadata': { 'f:finalizers': { 'v:"kiln.dev/a"': {} } },
    })
    const other = apply(created, { ...aDeployment(), metadata: { name: 'web', finalizers: ['x.io/b'] } }, 'x')
    expect((other['metadata'] as Obj)['finalizers']).toEqual(['kiln.dev/a', 'x.io/b'])
    expect(entryOf(other, 'x')?.fieldsV1).toEqual({ 'f:metadata': { 'f:finalizers': { 'v:"x.io/b"': {} } } })
    expect(entryOf(other, 'kiln')?.fieldsV1).toEqual(entryOf(created, 'kiln')?.fieldsV1)
  })

  it('keeps the entry and its time when nothing changes (property: apply is idempotent)', () => {
    const labels = fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.stringMatching(/^[a-z0-9]{0,8}$/))
    fc.assert(
      fc.property(labels, fc.integer({ min: 0, max: 10 }), (labelMap, replicas) => {
        const config = aDeployment({ labels: labelMap, replicas, containers: [{ name: 'app', image: 'a' }] })
        const once = apply(undefined, config, 'kiln', T1)
        expect(apply(once, config, 'kiln', T2)).toEqual(once)
      }),
    )
  })

  it('does not mutate its inputs', () => {
    const live = deepFreeze(
      update(
        undefined,
        aDeployment({ labels: { a: '1' }, replicas: 1, containers: [{ name: 'app', image: 'x' }] }),
        'k',
      ),
    )
    const applied = deepFreeze(aDeployment({ replicas: 2, containers: [{ name: 'app', image: 'y' }] }))
    const result = apply(live, applied, 'kiln', T2, true)
    containersOf(result)[0]!['image'] = 'changed'
    expect(containersOf(live)[0]?.['image']).toBe('x')
    expect(containersOf(applied)[0]?.['image']).toBe('y')
  })
})

describe('recordUpdate', () => {
  it('gives the creating manager every field but system fields and status', () => {
    const created = update(
      undefined,
      { ...aDeployment({ labels: { app: 'web' }, replicas: 1 }), status: { replicas: 0 } },
      'kubectl-create',
      T1,
    )
    expect(managedFields(created)).toEqual([
      {
        manager: 'kubectl-create',
        operation: 'Update',
        apiVersion: 'apps/v1',
        time: T1,
        fieldsType: 'FieldsV1',
        fieldsV1: { 'f:metadata': { 'f:labels': { 'f:app': {} } }, 'f:spec': { 'f:replicas': {} } },
      },
    ])
    expect(created['status']).toEqual({ replicas: 0 })
  })

  it('moves changed fields to the updater and drops removed fields from every entry', () => {
    const created = update(
      undefined,
      aDeployment({ labels: { app: 'web', tier: 'x' }, replicas: 1 }),
      'kubectl-create',
      T1,
    )
    const after = edited(created, (copy) => {
      delete ((copy['metadata'] as Obj)['labels'] as Obj)['tier']
      spec(copy)['replicas'] = 2
    })
    const edit = update(created, after, 'kubectl-edit', T2)
    expect(managedFields(edit)).toEqual([
      expect.objectContaining({
        manager: 'kubectl-create',
        time: T1,
        fieldsV1: { 'f:metadata': { 'f:labels': { 'f:app': {} } } },
      }),
      expect.objectContaining({
        manager: 'kubectl-edit',
        time: T2,
        fieldsV1: { 'f:spec': { 'f:replicas': {} } },
      }),
    ])

    const again = update(
      edit,
      edited(edit, (copy) => {
        ;((copy['metadata'] as Obj)['labels'] as Obj)['team'] = 'a'
      }),
      'kubectl-edit',
      T3,
    )
    expect(managedFields(again)).toHaveLength(2)
    expect(entryOf(again, 'kubectl-edit')).toMatchObject({
      time: T3,
      fieldsV1: { 'f:metadata': { 'f:labels': { 'f:team': {} } }, 'f:spec': { 'f:replicas': {} } },
    })
  })

  it('treats a changed atomic list as one owned field and ignores status changes', () => {
    const created = update(
      undefined,
      aDeployment({ containers: [{ name: 'app', image: 'a', args: ['--x'] }] }),
      'c',
      T1,
    )
    const after = edited(created, (copy) => {
      const [app] = containersOf(copy)
      if (app) app['args'] = ['--y']
      copy['status'] = { replicas: 3 }
    })
    const result = update(created, after, 'editor', T2)
    expect(entryOf(result, 'editor')?.fieldsV1).toEqual({
      'f:spec': { 'f:template': { 'f:spec': { 'f:containers': { 'k:{"name":"app"}': { 'f:args': {} } } } } },
    })
    expect(result['status']).toEqual({ replicas: 3 })
  })

  it('leaves managedFields alone when nothing managed changed', () => {
    const created = update(undefined, aDeployment({ replicas: 1 }), 'c', T1)
    const touched = update(created, { ...created, status: { ready: true } }, 'other', T2)
    expect(managedFields(touched)).toEqual(managedFields(created))
  })

  it('uses the managedFields a request carries, or the live ones when it carries none', () => {
    const created = update(undefined, aDeployment({ replicas: 1 }), 'c', T1)
    const { managedFields: _, ...metadata } = created['metadata'] as Obj
    const withoutEntries = { ...created, metadata, spec: { replicas: 2 } }
    expect(managedFields(update(created, withoutEntries, 'd')).map((entry) => entry.manager)).toEqual(['d'])
    expect(entryOf(update(created, withoutEntries, 'd'), 'd')?.fieldsV1).toEqual({
      'f:spec': { 'f:replicas': {} },
    })

    const reset = {
      ...created,
      metadata: { ...metadata, managedFields: [] },
      spec: { replicas: 1, paused: true },
    }
    expect(managedFields(update(created, reset, 'd')).map((entry) => entry.manager)).toEqual(['d'])
  })
})

describe('fieldSetOf', () => {
  it('describes every managed field of an object', () => {
    const object = {
      ...aDeployment({
        labels: { app: 'web' },
        containers: [{ name: 'app', ports: [{ containerPort: 80 }] }],
      }),
      status: { replicas: 1 },
    }
    expect(fieldSetOf(object)).toEqual({
      'f:metadata': { 'f:labels': { 'f:app': {} } },
      'f:spec': {
        'f:template': {
          'f:spec': {
            'f:containers': {
              'k:{"name":"app"}': {
                '.': {},
                'f:name': {},
                'f:ports': { 'k:{"containerPort":80,"protocol":"TCP"}': { '.': {}, 'f:containerPort': {} } },
              },
            },
          },
        },
      },
    })
  })
})
