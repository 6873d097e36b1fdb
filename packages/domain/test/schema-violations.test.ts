import Type from 'typebox'
import { describe, expect, it } from 'vitest'
import { schemaViolations } from '../src/index.ts'

const Secret = Type.Union(
  [
    Type.Object({ env: Type.String() }, { additionalProperties: false }),
    Type.Object({ file: Type.String() }, { additionalProperties: false }),
  ],
  { description: 'an env or a file reference' },
)
const Schema = Type.Object(
  {
    url: Type.String({ pattern: '^https://' }),
    auth: Type.Optional(
      Type.Union([
        Type.Object({ kind: Type.Literal('none') }, { additionalProperties: false }),
        Type.Object({ kind: Type.Literal('token'), token: Secret }, { additionalProperties: false }),
      ]),
    ),
    images: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^(default|\\d+\\.\\d+)$' }),
        Type.Object({ source: Type.String() }),
        {
          additionalProperties: false,
        },
      ),
    ),
    classes: Type.Optional(Type.Array(Type.Object({ name: Type.String({ minLength: 1 }) }))),
    'a/b': Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
)

describe('schemaViolations', () => {
  it('finds nothing in a valid document', () => {
    expect(
      schemaViolations(Schema, { url: 'https://x', auth: { kind: 'token', token: { env: 'T' } } }),
    ).toEqual([])
  })

  it('names each missing, unknown and invalid field once, by JSON pointer', () => {
    expect(schemaViolations(Schema, { extra: 1, 'a/b': 'x' })).toEqual([
      { pointer: '/url', message: 'is required' },
      { pointer: '/extra', message: 'is not a known field' },
      { pointer: '/a~1b', message: expect.stringMatching(/integer/) },
    ])
    expect(schemaViolations(Schema, { url: 'http://x', classes: [{ name: 'ok' }, { name: '' }] })).toEqual([
      { pointer: '/url', message: expect.stringMatching(/pattern/) },
      { pointer: '/classes/1/name', message: expect.any(String) },
    ])
  })

  it('picks a union branch by its kind, and says which kinds there are', () => {
    expect(schemaViolations(Schema, { url: 'https://x', auth: { kind: 'token' } })).toEqual([
      { pointer: '/auth/token', message: 'is required' },
    ])
    expect(schemaViolations(Schema, { url: 'https://x', auth: { kind: 'magic' } })).toEqual([
      { pointer: '/auth/kind', message: 'must be one of none, token' },
    ])
    expect(
      schemaViolations(Schema, { url: 'https://x', auth: { kind: 'token', token: { value: 's' } } }),
    ).toEqual([{ pointer: '/auth/token', message: 'must be an env or a file reference' }])
  })

  it('checks a record’s keys against its pattern and its values against its schema', () => {
    expect(
      schemaViolations(Schema, { url: 'https://x', images: { latest: { source: 'a' }, '1.31': {} } }),
    ).toEqual([
      { pointer: '/images/latest', message: expect.stringMatching(/not a valid key/) },
      { pointer: '/images/1.31/source', message: 'is required' },
    ])
  })
})
