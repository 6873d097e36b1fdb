import { readdir, readFile, readlink } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IronicClient } from '../../../packages/drivers/src/index.ts'
import { startTestStack, type TestStack } from '../../../test/support/engine.ts'
import { ironicUrl, removeNodes } from '../../../test/support/ironic.ts'
import { anIronicBackend, type IronicRack } from '../../../test/support/ironic-stack.ts'

// The worker re-reads an Ironic backend's catalogue every minute and writes the row's capabilities
// back, which moves its updatedAt: that must not cost a connection to Ironic each time. Counted
// from the kernel's own books, as an operator would see them, against the real Ironic.

let stack: TestStack
let rack: IronicRack
const ironicPort = Number(new URL(ironicUrl).port)

/** TCP sockets this process holds open to Ironic, in any state (a half-closed one still holds its fd). */
async function socketsToIronic(): Promise<number> {
  const ownInodes = new Set<string>()
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    if (inode) ownInodes.add(inode)
  }
  let count = 0
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    const lines = (await readFile(table, 'utf8').catch(() => '')).split('\n').slice(1)
    for (const line of lines) {
      const fields = line.trim().split(/\s+/)
      // local_address rem_address st … inode (10th field); ports are hex.
      const remotePort = Number.parseInt(fields[2]?.split(':')[1] ?? '', 16)
      if (remotePort === ironicPort && ownInodes.has(fields[9] ?? '')) count++
    }
  }
  return count
}

beforeAll(async () => {
  // No timers of the engine's own: the test alone decides when the catalogue is synced.
  stack = await startTestStack({ engine: { catalogueIntervalMs: 0 } })
  const admin = new IronicClient({ url: ironicUrl })
  try {
    rack = await anIronicBackend(stack.db, admin, { name: 'metal', cpuNodes: 1, api: stack.app })
  } finally {
    // The test's own client would hold sockets to Ironic too; only the worker's are counted.
    admin.close()
  }
})

afterAll(async () => {
  await stack?.close()
  const admin = new IronicClient({ url: ironicUrl })
  if (rack) await removeNodes(admin, [...rack.nodes.map((n) => n.uuid)])
  admin.close()
})

describe('the catalogue sync of an Ironic backend', () => {
  it('keeps the connections to Ironic it needs, and no more, however often it runs', async () => {
    const first = await stack.engine!.syncCatalogueOnce()
    expect(first[0]?.synced).toContain(rack.cpuClass)
    const before = await socketsToIronic()
    expect(before).toBeGreaterThan(0)
    const updatedAt = async () =>
      (await stack.db.backend.findUniqueOrThrow({ where: { id: rack.backendId } })).updatedAt

    const rowBefore = await updatedAt()
    for (let i = 0; i < 20; i++) {
      const results = await stack.engine!.syncCatalogueOnce()
      expect(results[0]?.error).toBeUndefined()
    }
    // The row did move (the cause of the old leak), yet the worker holds no more sockets than before.
    expect((await updatedAt()).getTime()).toBeGreaterThan(rowBefore.getTime())
    expect(await socketsToIronic()).toBeLessThanOrEqual(before)
  })
})
