import type Type from 'typebox'
import { StringEnum } from './names.ts'

export const OperationStatus = StringEnum(['pending', 'running', 'succeeded', 'failed', 'cancelled'], {})
export type OperationStatus = Type.Static<typeof OperationStatus>
export const terminalOperationStatuses: OperationStatus[] = ['succeeded', 'failed', 'cancelled']
export const isTerminal = (status: OperationStatus) => terminalOperationStatuses.includes(status)

export const StepStatus = StringEnum(['pending', 'running', 'succeeded', 'failed', 'skipped'], {})
export type StepStatus = Type.Static<typeof StepStatus>

export interface OperationStep {
  name: string
  status: StepStatus
  startedAt: string | null
  finishedAt: string | null
  message: string
  /** Present while the step waits to retry a retryable failure; null (or absent) otherwise. */
  retry?: StepRetry | null
}

/** A step's current streak of retryable failures: what failed last, and when it tries next or gives up. */
export interface StepRetry {
  /** Failed attempts in this streak (a success ends the streak). */
  attempts: number
  /** When the streak's first failure happened (ISO 8601). */
  since: string
  nextAttemptAt: string
  /** `since` plus the retry horizon: a failure after this is final. */
  giveUpAt: string
  lastError: { code: string; message: string }
}

/** Every operation kind and its ordered steps. The worker runs them; the API only creates them. */
export const operationCatalogue = {
  'cluster.create': [
    'reserve-capacity',
    'allocate-machines',
    'issue-certificates',
    'bootstrap-control-plane',
    'join-workers',
    'install-addons',
    'wait-healthy',
  ],
  'cluster.delete': [
    'uninstall-addons',
    'drain-workers',
    'release-machines',
    'revoke-certificates',
    'forget-cluster',
  ],
  'cluster.update-features': ['install-addons', 'wait-healthy'],
  // Labels and expiry need nothing built: the API applies them and records the operation succeeded.
  'cluster.update-labels': [],
  // Node-group changes re-plan the add-ons: GPU plugins follow GPU groups, ingress its nodes.
  'nodegroup.create': [
    'reserve-capacity',
    'allocate-machines',
    'join-workers',
    'install-addons',
    'wait-healthy',
  ],
  'nodegroup.resize': [
    'reserve-capacity',
    'allocate-machines',
    'join-workers',
    'drain-workers',
    'release-machines',
    'install-addons',
    'wait-healthy',
  ],
  'nodegroup.delete': ['drain-workers', 'release-machines', 'install-addons'],
  // Add-ons follow the Kubernetes version (kube-proxy runs the cluster's).
  'cluster.upgrade': [
    'reserve-capacity',
    'upgrade-control-plane',
    'upgrade-node-groups',
    'install-addons',
    'wait-healthy',
  ],
  'cluster.repair': ['replace-unhealthy-machines', 'wait-healthy'],
  // Two-phase cluster CA rotation: start trusts a new CA beside the old one and signs every new
  // credential with it; complete destroys the old CA, so credentials it signed stop working.
  'cluster.rotate-ca-start': ['issue-next-ca', 'distribute-ca-bundle'],
  'cluster.rotate-ca-complete': ['retire-previous-ca', 'distribute-ca-bundle'],
} as const satisfies Record<string, readonly string[]>

export type OperationKind = keyof typeof operationCatalogue
/** Kinds the API applies in the request's own transaction: born succeeded, never queued. */
export const appliedOperationKinds = ['cluster.update-labels'] as const satisfies OperationKind[]
/** The kinds the workers run. */
export type QueuedOperationKind = Exclude<OperationKind, (typeof appliedOperationKinds)[number]>
export const operationKinds = Object.keys(operationCatalogue) as OperationKind[]
export const OperationKindSchema = StringEnum(operationKinds as OperationKind[])

export function plannedSteps(kind: OperationKind): OperationStep[] {
  return operationCatalogue[kind].map((name) => ({
    name,
    status: 'pending',
    startedAt: null,
    finishedAt: null,
    message: '',
  }))
}
