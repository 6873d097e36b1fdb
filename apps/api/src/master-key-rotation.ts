import {
  countSealedKeys,
  type Database,
  firstSealedKeyPosition,
  replaceSealedKeys,
  type SealedKeyRow,
  sealedKeysNotUnder,
} from '@kiln/db'
import {
  keyringKeys,
  type MasterKeyring,
  PkiError,
  rewrapPrivateKey,
  type SealedPrivateKey,
  sealingKey,
} from '@kiln/pki'

// Master-key rotation: every sealed private key gets its data key wrapped by the newest master key
// (the ciphertext stays). It runs in the API, synchronously: an Operation belongs to a project and
// is run by the worker against a backend, and this touches neither; re-wrapping is a few
// microseconds per key, so even a large installation finishes within one request. It is idempotent
// (keys already on the newest key are skipped) and resumable (a cut-short run leaves every row
// either old or new, both of which open, and the next run carries on).

/** What a rotation did; `remaining` is normally 0 (see rotateMasterKeys). */
export interface MasterKeyRotationResult {
  /** The id of the newest master key, which now wraps every sealed key. */
  keyId: string
  /** The ids of the keys configured, newest first. */
  keyIds: string[]
  /** Sealed keys re-wrapped by this run. */
  resealed: number
  /** Sealed keys that were already on the newest key when the run began. */
  alreadyCurrent: number
  /** Sealed keys still on an older key when the run ended (sealed meanwhile by a process with an older keyring). */
  remaining: number
  /** Sealed keys stored when the run ended. */
  total: number
}

/** A sealed key that no configured master key opens. */
export interface UnopenableKey {
  clusterId: string
  purpose: string
  generation: number
  /** The id of the master key that sealed it. */
  keyId: string
  reason: string
}

/** The rotation was refused: some sealed keys open with no configured key. */
export class UnopenableKeysError extends Error {
  constructor(
    readonly unopenable: UnopenableKey[],
    /** Re-sealed before the refusal: 0 unless a key sealed with an unknown key appeared mid-run. */
    readonly resealed = 0,
  ) {
    const kids = [...new Set(unopenable.map((key) => key.keyId))]
    super(
      `${unopenable.length} sealed key(s) open with none of the configured master keys (sealed with ${kids.join(', ')}): add the master key(s) that sealed them to KILN_MASTER_KEYS (after the newest) and rotate again. ${resealed === 0 ? 'Nothing was re-sealed.' : `${resealed} key(s) were re-sealed first; the rest are unchanged.`}`,
    )
  }
}

const defaultBatchSize = 200
/** Extra passes for rows sealed behind the cursor by processes still on an older keyring. */
const maxPasses = 3

type Rewrapped = { row: SealedKeyRow; sealedKey: SealedPrivateKey } | UnopenableKey

function rewrap(row: SealedKeyRow, keyring: MasterKeyring): Rewrapped {
  const sealed = row.sealedKey as SealedPrivateKey
  const keyId = typeof sealed?.kid === 'string' ? sealed.kid : '(none)'
  try {
    // Unwrapping authenticates the wrapped data key, so a key that re-wraps here also opens.
    return { row, sealedKey: rewrapPrivateKey(sealed, keyring, sealingKey(keyring)) }
  } catch (error) {
    if (!(error instanceof PkiError)) throw error
    const { clusterId, purpose, generation } = row
    return { clusterId, purpose, generation, keyId, reason: error.message }
  }
}

/** Every row not on `kid`, a batch at a time, in primary-key order. */
async function* batches(db: Database, kid: string, batchSize: number) {
  let after = firstSealedKeyPosition
  for (;;) {
    const rows = await sealedKeysNotUnder(db, kid, after, batchSize)
    if (rows.length === 0) return
    yield rows
    after = rows[rows.length - 1]!
  }
}

/**
 * Re-wraps every sealed key with the newest key of `keyring`. First a read-only pass checks that each
 * key not yet on the newest opens with the keyring, and refuses (UnopenableKeysError) otherwise, so
 * a keyring missing a key changes nothing. Then it re-wraps batch by batch, each row only if it is
 * unchanged since it was read (a concurrent rotation, or a CA rotation deleting an old generation,
 * wins). Rows inserted meanwhile are sealed with the inserting process's newest key; those on an
 * older key are picked up by another pass, and any left after that are reported in `remaining`.
 */
export async function rotateMasterKeys(
  db: Database,
  keyring: MasterKeyring,
  options: { batchSize?: number } = {},
): Promise<MasterKeyRotationResult> {
  const batchSize = options.batchSize ?? defaultBatchSize
  const newest = sealingKey(keyring)
  const { under: alreadyCurrent } = await countSealedKeys(db, newest.kid)

  const unopenable: UnopenableKey[] = []
  for await (const rows of batches(db, newest.kid, batchSize)) {
    for (const row of rows) {
      const result = rewrap(row, keyring)
      if (!('row' in result)) unopenable.push(result)
    }
  }
  if (unopenable.length > 0) throw new UnopenableKeysError(unopenable)

  let resealed = 0
  for (let pass = 0; pass < maxPasses; pass++) {
    let changed = 0
    for await (const rows of batches(db, newest.kid, batchSize)) {
      const rewrapped = rows.map((row) => rewrap(row, keyring))
      const late = rewrapped.filter((r): r is UnopenableKey => !('row' in r))
      // Sealed after the check with a key this keyring lacks: stop here; what is done stays done.
      if (late.length > 0) throw new UnopenableKeysError(late, resealed + changed)
      changed += await replaceSealedKeys(
        db,
        rewrapped.filter((r) => 'row' in r),
      )
    }
    resealed += changed
    if (changed === 0) break
  }
  const { total, under } = await countSealedKeys(db, newest.kid)
  return {
    keyId: newest.kid,
    keyIds: keyringKeys(keyring).map((key) => key.kid),
    resealed,
    alreadyCurrent,
    remaining: total - under,
    total,
  }
}
