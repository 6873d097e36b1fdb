import { recordAudit } from '@kiln/db'
import Type from 'typebox'
import { actorOf } from '../auth.ts'
import { rotateMasterKeys, UnopenableKeysError } from '../master-key-rotation.ts'
import { HttpProblem } from '../problems.ts'
import type { KilnApp, RouteDeps } from '../route-deps.ts'
import { named, ref } from '../schemas.ts'
import { problemResponses } from '../shared-answers.ts'

const keyId = Type.String({ pattern: '^[0-9a-f]{16}$', examples: ['3f9c2a71d0b84e56'] })

const MasterKeyRotationSchema = named(
  'MasterKeyRotation',
  Type.Object(
    {
      keyId: { ...keyId, description: 'The newest configured master key, which now wraps every sealed key.' },
      keyIds: Type.Array(keyId, { description: 'Every configured master key id, newest first.' }),
      resealed: Type.Integer({ minimum: 0, description: 'Sealed keys re-wrapped by this request.' }),
      alreadyCurrent: Type.Integer({
        minimum: 0,
        description: 'Sealed keys that were already on the newest key when the request began.',
      }),
      remaining: Type.Integer({
        minimum: 0,
        description:
          'Sealed keys still on an older key at the end: sealed meanwhile by a process not yet restarted with the new keyring. 0 once every process runs with it; rotate again then.',
      }),
      total: Type.Integer({ minimum: 0, description: 'Sealed keys stored at the end.' }),
    },
    {
      additionalProperties: false,
      description: 'What a master-key rotation did.',
      examples: [
        {
          keyId: '3f9c2a71d0b84e56',
          keyIds: ['3f9c2a71d0b84e56', '8d01b6e4c2f7a935'],
          resealed: 120,
          alreadyCurrent: 4,
          remaining: 0,
          total: 124,
        },
      ],
    },
  ),
)

const shownUnopenable = 20

export function registerMasterKeyRoutes(app: KilnApp, { db, masterKey }: RouteDeps) {
  app.post(
    '/v1/master-key-rotations',
    {
      config: { permission: 'master-keys:rotate' },
      schema: {
        operationId: 'rotateMasterKeys',
        summary: 'Re-seal every cluster private key with the newest master key (platform admins)',
        description:
          'Re-wraps the data key of every sealed private key with the newest key of `KILN_MASTER_KEYS` (the first); keys already on it are skipped, so it is idempotent, and a run cut short leaves every key openable and is finished by the next. Synchronous: it touches no backend and takes microseconds per key. Refused with `master-key-missing` (409), before anything is written, when a sealed key opens with none of the configured keys. Rotate after every process runs with the new keyring (`KILN_MASTER_KEYS=new,old`); remove the old key only once `remaining` is 0. Audited as `master-key.rotate`.',
        tags: ['master-keys'],
        response: { 200: ref(MasterKeyRotationSchema), ...problemResponses(409, 503) },
      },
    },
    async (request) => {
      if (!masterKey) {
        throw new HttpProblem(
          503,
          'credentials-unavailable',
          'Credential issuance is not configured',
          'This API runs without a master key, so it cannot re-seal keys.',
          [],
          { 'retry-after': '60' },
        )
      }
      try {
        const result = await rotateMasterKeys(db, masterKey)
        await recordAudit(db, actorOf(request), {
          projectId: null,
          action: 'master-key.rotate',
          targetKind: 'master-key',
          targetId: result.keyId,
          data: { ...result },
        })
        return result
      } catch (error) {
        if (!(error instanceof UnopenableKeysError)) throw error
        await recordAudit(db, actorOf(request), {
          projectId: null,
          action: 'master-key.rotate.refused',
          targetKind: 'master-key',
          targetId: error.unopenable[0]?.keyId ?? '',
          data: { unopenable: error.unopenable.length, resealed: error.resealed },
        })
        throw new HttpProblem(
          409,
          'master-key-missing',
          'A sealed key needs a master key that is not configured',
          error.message,
          [],
          {},
          {
            unopenable: error.unopenable.slice(0, shownUnopenable).map(({ reason: _, ...key }) => key),
            resealed: error.resealed,
          },
        )
      }
    },
  )
}
