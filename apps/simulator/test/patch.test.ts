import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { jsonPatch, mergePatch, type Obj, PatchError, strategicMergePatch } from '../src/patch.ts'

const deployment = (): Obj => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'web', labels: { app: 'web', tier: 'front' }, finalizers: ['a.example/x'] },
  spec: {
    replicas: 2,
    template: {
      spec: {
        containers: [
          { name: 'app', image: 'app:1', ports: [{ containerPort: 8080 }], env: [{ name: 'A', value: '1' }] },
          { name: 'proxy', image: 'envoy:1' },
        ],
        tolerations: [{ key: 'gpu', operator: 'Exists' }],
      },
    },
  },
})

const containers = (object: Obj) =>
  (((object['spec'] as Obj)['template'] as Obj)['spec'] as Obj)['containers'] as Obj[]

describe('mergePatch', () => {
  it('follows the RFC 7386 examples', () => {
    const cases: [unknown, unknown, unknown][] = [
      [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
      [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
      [{ a: 'b' }, { a: null }, {}],
      [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
      [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
      [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
      [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
      [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
      [
        ['a', 'b'],
        ['c', 'd'],
        ['c', 'd'],
      ],
      [{ a: 'b' }, ['c'], ['c']],
      [{ a: 'foo' }, null, null],
      [{ a: 'foo' }, 'bar', 'bar'],
      [{ e: null }, { a: 1 }, { e: null, a: 1 }],
      [[1, 2], { a: 'b', c: null }, { a: 'b' }],
      [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ]
    for (const [target, patch, expected] of cases) expect(mergePatch(target, patch)).toEqual(expected)
  })

  it('deletes a label with null and replaces lists whole', () => {
    const result = mergePatch(deployment(), {
      metadata: { labels: { tier: null } },
      spec: { template: { spec: { containers: [{ name: 'app', image: 'app:2' }] } } },
    }) as Obj
    expect((result['metadata'] as Obj)['labels']).toEqual({ app: 'web' })
    expect(containers(result)).toEqual([{ name: 'app', image: 'app:2' }])
  })

  it('does not mutate its inputs or share structure with them', () => {
    const target = deployment()
    const patch = { spec: { replicas: 3, selector: { matchLabels: { app: 'web' } } } }
    const [targetCopy, patchCopy] = [structuredClone(target), structuredClone(patch)]
    const result = mergePatch(target, patch) as Obj
    ;((result['spec'] as Obj)['selector'] as Obj)['matchLabels'] = {}
    expect(target).toEqual(targetCopy)
    expect(patch).toEqual(patchCopy)
  })

  it('treats __proto__ as an ordinary key', () => {
    const result = mergePatch({}, JSON.parse('{"__proto__": {"polluted": true}}')) as Obj
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype)
    expect(Object.keys(result)).toEqual(['__proto__'])
  })

  it('is the identity for an empty patch and idempotent (property)', () => {
    const json = fc
      .jsonValue()
      .filter((value) => typeof value === 'object' && value !== null && !Array.isArray(value))
    fc.assert(
      fc.property(json, json, (target, patch) => {
        expect(mergePatch(target, {})).toEqual(target)
        const once = mergePatch(target, patch)
        expect(mergePatch(once, patch)).toEqual(once)
      }),
    )
  })
})

describe('strategicMergePatch', () => {
  it('merges containers by name, keeping the others', () => {
    const result = strategicMergePatch(deployment(), {
      spec: {
        template: {
          spec: {
            containers: [
              { name: 'app', image: 'app:2' },
              { name: 'sidecar', image: 'log:1' },
            ],
          },
        },
      },
    })
    expect(containers(result)).toEqual([
      { name: 'app', image: 'app:2', ports: [{ containerPort: 8080 }], env: [{ name: 'A', value: '1' }] },
      { name: 'proxy', image: 'envoy:1' },
      { name: 'sidecar', image: 'log:1' },
    ])
  })

  it('merges nested keyed lists (env by name, ports by containerPort and protocol)', () => {
    const result = strategicMergePatch(deployment(), {
      spec: {
        template: {
          spec: {
            containers: [
              {
                name: 'app',
                env: [{ name: 'A', value: '2' }],
                ports: [
                  { containerPort: 8080, protocol: 'TCP', name: 'http' },
                  { containerPort: 53, protocol: 'UDP' },
                ],
              },
            ],
          },
        },
      },
    })
    const [app] = containers(result)
    expect(app?.['env']).toEqual([{ name: 'A', value: '2' }])
    expect(app?.['ports']).toEqual([
      { containerPort: 8080, name: 'http', protocol: 'TCP' },
      { containerPort: 53, protocol: 'UDP' },
    ])
  })

  it('deletes a list item with $patch: delete', () => {
    const result = strategicMergePatch(deployment(), {
      spec: { template: { spec: { containers: [{ name: 'proxy', $patch: 'delete' }] } } },
    })
    expect(containers(result).map((container) => container['name'])).toEqual(['app'])
  })

  it('replaces a map or a list with $patch: replace', () => {
    const map = strategicMergePatch(deployment(), {
      metadata: { labels: { $patch: 'replace', only: 'this' } },
    })
    expect((map['metadata'] as Obj)['labels']).toEqual({ only: 'this' })
    const list = strategicMergePatch(deployment(), {
      spec: { template: { spec: { containers: [{ $patch: 'replace' }, { name: 'solo', image: 's:1' }] } } },
    })
    expect(containers(list)).toEqual([{ name: 'solo', image: 's:1' }])
  })

  it('deletes a map with $patch: delete and a field with null', () => {
    const result = strategicMergePatch(deployment(), {
      metadata: { labels: { $patch: 'delete' } },
      spec: { replicas: null },
    })
    expect(result['metadata']).toEqual({ name: 'web', finalizers: ['a.example/x'] })
    expect(result['spec']).not.toHaveProperty('replicas')
  })

  it('honours $setElementOrder and strips it from the result', () => {
    const result = strategicMergePatch(deployment(), {
      spec: {
        template: {
          spec: {
            '$setElementOrder/containers': [{ name: 'proxy' }, { name: 'app' }],
            containers: [{ name: 'app', image: 'app:3' }],
          },
        },
      },
    })
    expect(containers(result).map((container) => [container['name'], container['image']])).toEqual([
      ['proxy', 'envoy:1'],
      ['app', 'app:3'],
    ])
    expect(JSON.stringify(result)).not.toContain('$setElementOrder')
  })

  it('keeps server-only items after their predecessor when reordering', () => {
    const target = { list: { containers: [{ name: 'a' }, { name: 'injected' }, { name: 'b' }] } }
    const result = strategicMergePatch(target, {
      list: { '$setElementOrder/containers': [{ name: 'b' }, { name: 'a' }] },
    })
    expect((result['list'] as Obj)['containers']).toEqual([
      { name: 'b' },
      { name: 'a' },
      { name: 'injected' },
    ])
  })

  it('honours $retainKeys by clearing unlisted keys', () => {
    const target = { spec: { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1 } } } }
    const result = strategicMergePatch(target, {
      spec: { strategy: { $retainKeys: ['type'], type: 'Recreate' } },
    })
    expect(result).toEqual({ spec: { strategy: { type: 'Recreate' } } })
  })

  it('removes values with $deleteFromPrimitiveList and merges finalizers as a set', () => {
    const target = { metadata: { finalizers: ['a', 'b', 'c'] } }
    const result = strategicMergePatch(target, {
      metadata: { '$deleteFromPrimitiveList/finalizers': ['b'], finalizers: ['c', 'd'] },
    })
    expect(result).toEqual({ metadata: { finalizers: ['a', 'c', 'd'] } })
  })

  it('replaces atomic lists (tolerations, args) and lists without a merge key', () => {
    const result = strategicMergePatch(deployment(), {
      spec: {
        template: {
          spec: {
            tolerations: [{ key: 'spot', operator: 'Exists' }],
            containers: [{ name: 'app', args: ['--b'] }],
            rules: [{ host: 'x' }],
          },
        },
      },
    })
    const spec = (result['spec'] as Obj)['template'] as Obj
    expect((spec['spec'] as Obj)['tolerations']).toEqual([{ key: 'spot', operator: 'Exists' }])
    expect((spec['spec'] as Obj)['rules']).toEqual([{ host: 'x' }])
    expect(containers(result)[0]?.['args']).toEqual(['--b'])
  })

  it('rejects an item without its merge key and an unknown $patch', () => {
    expect(() =>
      strategicMergePatch(deployment(), { spec: { template: { spec: { containers: [{ image: 'x' }] } } } }),
    ).toThrow(PatchError)
    expect(() => strategicMergePatch(deployment(), { spec: { $patch: 'explode' } })).toThrow(
      /unknown patch type/,
    )
  })

  it('does not mutate its inputs', () => {
    const target = deployment()
    const patch = {
      metadata: { labels: { tier: null } },
      spec: {
        template: {
          spec: {
            containers: [
              { name: 'proxy', $patch: 'delete' },
              { name: 'app', image: 'b' },
            ],
          },
        },
      },
    }
    const [targetCopy, patchCopy] = [structuredClone(target), structuredClone(patch)]
    const result = strategicMergePatch(target, patch)
    containers(result)[0]!['image'] = 'changed'
    expect(target).toEqual(targetCopy)
    expect(patch).toEqual(patchCopy)
  })
})

describe('jsonPatch', () => {
  const doc = (): Obj => ({ a: { b: [1, 2, 3] }, 'x/y': { 'm~n': 1 }, keep: true })

  it('applies add, remove, replace, move, copy and test', () => {
    const result = jsonPatch(doc(), [
      { op: 'test', path: '/keep', value: true },
      { op: 'add', path: '/a/b/1', value: 9 },
      { op: 'add', path: '/a/b/-', value: 4 },
      { op: 'remove', path: '/a/b/0' },
      { op: 'replace', path: '/keep', value: false },
      { op: 'copy', from: '/a/b', path: '/copied' },
      { op: 'move', from: '/a/b', path: '/moved' },
      { op: 'add', path: '/a/new', value: { deep: [1] } },
    ])
    expect(result).toEqual({
      a: { new: { deep: [1] } },
      'x/y': { 'm~n': 1 },
      keep: false,
      copied: [9, 2, 3, 4],
      moved: [9, 2, 3, 4],
    })
  })

  it('unescapes ~1 and ~0 in pointers', () => {
    const result = jsonPatch(doc(), [
      { op: 'replace', path: '/x~1y/m~0n', value: 2 },
      { op: 'add', path: '/metadata', value: { annotations: {} } },
      { op: 'add', path: '/metadata/annotations/kiln.dev~1owner', value: 'me' },
    ])
    expect(result['x/y']).toEqual({ 'm~n': 2 })
    expect(result['metadata']).toEqual({ annotations: { 'kiln.dev/owner': 'me' } })
  })

  it('fails a test whose value differs and leaves the input alone', () => {
    const target = doc()
    expect(() =>
      jsonPatch(target, [
        { op: 'remove', path: '/keep' },
        { op: 'test', path: '/a/b', value: [1, 2] },
      ]),
    ).toThrow(/test operation at "\/a\/b" failed/)
    expect(target).toEqual(doc())
  })

  it.each([
    ['a missing path to remove', [{ op: 'remove', path: '/nope' }], /does not apply/],
    ['a missing path to replace', [{ op: 'replace', path: '/a/c', value: 1 }], /does not apply/],
    ['a missing parent to add to', [{ op: 'add', path: '/no/such', value: 1 }], /does not apply/],
    ['an index past the end', [{ op: 'add', path: '/a/b/4', value: 1 }], /out of range/],
    ['an index with a leading zero', [{ op: 'replace', path: '/a/b/01', value: 1 }], /not a list index/],
    ['an unknown op', [{ op: 'frobnicate', path: '/a' }], /unknown op/],
    ['a missing value', [{ op: 'add', path: '/z' }], /missing "value"/],
    ['a missing from', [{ op: 'copy', path: '/z' }], /missing "from"/],
    ['a pointer without a slash', [{ op: 'remove', path: 'a' }], /not a JSON pointer/],
    ['a bad escape', [{ op: 'remove', path: '/a~2' }], /invalid ~ escape/],
    ['a move into its own child', [{ op: 'move', from: '/a', path: '/a/b/0' }], /children/],
    ['a document that is not an object', [{ op: 'replace', path: '', value: [] }], /JSON object/],
    ['operations that are not a list', { op: 'add' }, /list of operations/],
  ])('rejects %s', (_name, operations, message) => {
    expect(() => jsonPatch(doc(), operations)).toThrow(PatchError)
    expect(() => jsonPatch(doc(), operations)).toThrow(message)
  })

  it('does not share structure with the value it was given', () => {
    const value = { nested: [1] }
    const result = jsonPatch(doc(), [{ op: 'add', path: '/v', value }])
    ;((result['v'] as Obj)['nested'] as number[]).push(2)
    expect(value).toEqual({ nested: [1] })
  })
})
