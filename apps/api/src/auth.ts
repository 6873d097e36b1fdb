import type { Actor } from '@kiln/db'
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** What a route needs; declared next to every route so identity (issue 5) can enforce it in one place. */
export type Permission =
  | 'public'
  | 'catalogue:read'
  | 'catalogue:write'
  | 'projects:read'
  | 'projects:write'
  | 'clusters:read'
  | 'clusters:write'

export interface Principal {
  /** `user:<subject>` or `token:<id>`. */
  subject: string
  platformAdmin: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal
  }
  interface FastifyContextConfig {
    permission?: Permission
  }
}

/**
 * Until OIDC and API tokens land, every caller is one local operator with every permission. This is
 * the embedded single-user mode; the server binds to loopback by default for that reason.
 */
export const localOperator: Principal = { subject: 'user:local-operator', platformAdmin: true }

/**
 * The Kubernetes groups a principal's cluster credentials carry: what a kubeconfig gets, and the
 * most a signed CSR may ask for. Roles map to groups with identity (issue 5); until then only a
 * platform admin is cluster-admin (system:masters).
 */
export const clusterGroupsOf = (principal: Principal): string[] =>
  principal.platformAdmin ? ['system:masters'] : []

/**
 * Whether a principal may be certified as a `system:` user (a control-plane component, a node, a
 * service account): only one who is cluster-admin anyway.
 */
export const mayActAsSystemUser = (principal: Principal): boolean =>
  clusterGroupsOf(principal).includes('system:masters')

export function registerAuthentication(app: FastifyInstance) {
  app.decorateRequest('principal', null as unknown as Principal)
  app.addHook('onRequest', async (request) => {
    request.principal = localOperator
  })
}

export const actorOf = (request: FastifyRequest): Actor => ({
  subject: request.principal.subject,
  requestId: request.id,
})
