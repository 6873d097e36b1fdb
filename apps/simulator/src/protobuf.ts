// The few Kubernetes protobuf bodies clients send the simulated API server, decoded into their
// JSON form: client-go's typed clientsets (helm's release storage among them) write Secrets and
// ConfigMaps, and their DeleteOptions, as application/vnd.kubernetes.protobuf. Only the fields
// those objects carry are decoded; any other kind is refused with 415, as for a custom resource.

type Raw = Record<string, unknown>

interface Field {
  number: number
  wire: number
  value: bigint | Uint8Array
}

function fieldsOf(bytes: Uint8Array): Field[] {
  const fields: Field[] = []
  let at = 0
  const varint = () => {
    let result = 0n
    let shift = 0n
    for (;;) {
      const b = bytes[at++]
      if (b === undefined) throw new Error('truncated varint')
      result |= BigInt(b & 0x7f) << shift
      if ((b & 0x80) === 0) return result
      shift += 7n
    }
  }
  while (at < bytes.length) {
    const key = Number(varint())
    const wire = key & 7
    const number = key >>> 3
    if (wire === 0) fields.push({ number, wire, value: varint() })
    else if (wire === 2) {
      const length = Number(varint())
      fields.push({ number, wire, value: bytes.subarray(at, at + length) })
      at += length
    } else if (wire === 1) at += 8
    else if (wire === 5) at += 4
    else throw new Error(`unsupported wire type ${wire}`)
  }
  return fields
}

const text = (v: Field['value']) => Buffer.from(v as Uint8Array).toString('utf8')
const bytesOf = (v: Field['value']) => Buffer.from(v as Uint8Array)

function map(fields: Field[], number: number, value: (v: Field['value']) => unknown): Raw | undefined {
  const entries = fields.filter((f) => f.number === number)
  if (entries.length === 0) return undefined
  const out: Raw = {}
  for (const entry of entries) {
    const kv = fieldsOf(entry.value as Uint8Array)
    const k = kv.find((f) => f.number === 1)
    const v = kv.find((f) => f.number === 2)
    out[k ? text(k.value) : ''] = v ? value(v.value) : value(new Uint8Array())
  }
  return out
}

function put(out: Raw, key: string, value: unknown) {
  if (value !== undefined) out[key] = value
}

function objectMeta(bytes: Uint8Array): Raw {
  const fields = fieldsOf(bytes)
  const str = (n: number) => {
    const f = fields.find((x) => x.number === n)
    return f ? text(f.value) : undefined
  }
  const meta: Raw = {}
  put(meta, 'name', str(1))
  put(meta, 'generateName', str(2))
  put(meta, 'namespace', str(3))
  put(meta, 'uid', str(5))
  put(meta, 'resourceVersion', str(6))
  put(meta, 'labels', map(fields, 11, text))
  put(meta, 'annotations', map(fields, 12, text))
  const finalizers = fields.filter((f) => f.number === 14).map((f) => text(f.value))
  if (finalizers.length > 0) meta.finalizers = finalizers
  return Object.fromEntries(Object.entries(meta).filter(([, v]) => v !== '' && v !== undefined))
}

const decoders: Record<string, (fields: Field[]) => Raw> = {
  'v1/Secret': (fields) => {
    const out: Raw = {}
    const meta = fields.find((f) => f.number === 1)
    out.metadata = meta ? objectMeta(meta.value as Uint8Array) : {}
    put(
      out,
      'data',
      map(fields, 2, (v) => bytesOf(v).toString('base64')),
    )
    const type = fields.find((f) => f.number === 3)
    if (type) out.type = text(type.value)
    put(out, 'stringData', map(fields, 4, text))
    const immutable = fields.find((f) => f.number === 5)
    if (immutable) out.immutable = immutable.value === 1n
    return out
  },
  'v1/ConfigMap': (fields) => {
    const out: Raw = {}
    const meta = fields.find((f) => f.number === 1)
    out.metadata = meta ? objectMeta(meta.value as Uint8Array) : {}
    put(out, 'data', map(fields, 2, text))
    put(
      out,
      'binaryData',
      map(fields, 3, (v) => bytesOf(v).toString('base64')),
    )
    const immutable = fields.find((f) => f.number === 4)
    if (immutable) out.immutable = immutable.value === 1n
    return out
  },
  'meta.k8s.io/v1/DeleteOptions': (fields) => {
    const out: Raw = {}
    const grace = fields.find((f) => f.number === 1)
    if (grace) out.gracePeriodSeconds = Number(BigInt.asIntN(64, grace.value as bigint))
    const policy = fields.find((f) => f.number === 4)
    if (policy) out.propagationPolicy = text(policy.value)
    const dryRun = fields.filter((f) => f.number === 5).map((f) => text(f.value))
    if (dryRun.length > 0) out.dryRun = dryRun
    return out
  },
}

// Typed clients send DeleteOptions as the group version of the object deleted.
for (const gv of ['v1', 'apps/v1', 'batch/v1'])
  decoders[`${gv}/DeleteOptions`] = decoders['meta.k8s.io/v1/DeleteOptions']!

const magic = [0x6b, 0x38, 0x73, 0x00]

/** A protobuf body in its JSON form, or undefined for a kind not decoded here. */
export function decodeProtobuf(body: Buffer): Raw | undefined {
  if (!magic.every((b, i) => body[i] === b)) throw new Error('not a Kubernetes protobuf envelope')
  const unknown = fieldsOf(body.subarray(4))
  const typeMeta = fieldsOf((unknown.find((f) => f.number === 1)?.value as Uint8Array) ?? new Uint8Array())
  const apiVersion = text(typeMeta.find((f) => f.number === 1)?.value ?? new Uint8Array())
  const kind = text(typeMeta.find((f) => f.number === 2)?.value ?? new Uint8Array())
  const decode = decoders[`${apiVersion}/${kind}`]
  const raw = unknown.find((f) => f.number === 2)?.value as Uint8Array | undefined
  if (!decode) return undefined
  return { apiVersion, kind, ...decode(fieldsOf(raw ?? new Uint8Array())) }
}
