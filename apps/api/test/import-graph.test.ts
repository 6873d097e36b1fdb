import { readdir, readFile } from 'node:fs/promises'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// The API's modules form no import circle (type-only imports count: a circle of types still ties
// every module in it to every other). Routes share what they need through route-deps.ts, never app.ts.
const src = fileURLToPath(new URL('../src', import.meta.url))

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true })
  const nested = await Promise.all(
    entries.map((e) =>
      e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    ),
  )
  return nested.flat()
}

async function importGraph(): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>()
  for (const file of await sources(src)) {
    const text = await readFile(file, 'utf8')
    const targets = [
      ...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s+'(\.{1,2}\/[^']+\.ts)'/g),
    ].map((m) => resolve(dirname(file), m[1]!))
    graph.set(file, targets)
  }
  return graph
}

/** The first circle found, as a list of paths relative to src, or undefined. */
export function findCircle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  const stack: string[] = []
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined
    if (state.get(node) === 'open') return [...stack.slice(stack.indexOf(node)), node]
    state.set(node, 'open')
    stack.push(node)
    for (const next of graph.get(node) ?? []) {
      const circle = visit(next)
      if (circle) return circle
    }
    stack.pop()
    state.set(node, 'done')
    return undefined
  }
  for (const node of graph.keys()) {
    const circle = visit(node)
    if (circle) return circle.map((f) => relative(src, f))
  }
  return undefined
}

describe('apps/api/src imports', () => {
  it('finds a circle where there is one', () => {
    const graph = new Map([
      ['/a.ts', ['/b.ts']],
      ['/b.ts', ['/c.ts']],
      ['/c.ts', ['/a.ts']],
    ])
    expect(findCircle(graph)).toHaveLength(4)
  })

  it('form no circle', async () => {
    const graph = await importGraph()
    expect(graph.size).toBeGreaterThan(20)
    expect(findCircle(graph)).toBeUndefined()
  })
})
