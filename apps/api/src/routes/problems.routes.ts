import Type from 'typebox'
import { type ProblemSlug, problemTypes, problemTypeUri } from '../problem-types.ts'
import { HttpProblem } from '../problems.ts'
import type { KilnApp } from '../route-deps.ts'

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** Backticked words in the registry's descriptions become <code>. */
const prose = (text: string) => escapeHtml(text).replace(/`([^`]+)`/g, '<code>$1</code>')

function page(slug: ProblemSlug): string {
  const { title, status, description } = problemTypes[slug]
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>${escapeHtml(title)} · Kiln problem types</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
<p><code>${escapeHtml(problemTypeUri(slug))}</code> · HTTP ${status}</p>
<p>${prose(description)}</p>
</body>
</html>
`
}

const isSlug = (value: string): value is ProblemSlug => Object.hasOwn(problemTypes, value)

/** The human page at each problem type's path, so a `type` from an answer can be looked up on the server. */
export function registerProblemRoutes(app: KilnApp) {
  app.get(
    '/problems/:slug',
    {
      config: { permission: 'public' },
      schema: {
        operationId: 'getProblemType',
        summary: 'Describe a problem type',
        description:
          'A short HTML page for people: what a problem `type` (`https://kiln.dev/problems/{slug}`) means and what to do about it. The Problem schema lists every type in `x-problem-types`.',
        tags: ['problems'],
        params: Type.Object({
          slug: Type.String({
            maxLength: 63,
            description: 'The last segment of the problem `type` URI.',
            examples: ['not-found'],
          }),
        }),
        response: {
          200: {
            description: 'The page.',
            content: { 'text/html': { schema: Type.String({ examples: ['<!doctype html>…'] }) } },
          },
        },
      },
    },
    async (request, reply) => {
      const { slug } = request.params
      if (!isSlug(slug)) {
        throw new HttpProblem(404, 'not-found', 'Not found', `No problem type '${slug}'.`)
      }
      return reply.type('text/html; charset=utf-8').send(page(slug))
    },
  )
}
