import { createHash, randomUUID } from 'node:crypto'
import type { Json } from './client.ts'
import {
  type Condition,
  condition,
  rfc3339,
  summary,
  type WantedCondition,
  withConditions,
  withLegacyConditions,
} from './conditions.ts'
import { isOurs, named, remove, type Snapshot, type StandInContext, writeStatus } from './context.ts'
import {
  alreadyHas,
  controllerOf,
  finalizer,
  isDeleting,
  type KubeadmControlPlane,
  label,
  type Machine,
  type MachineDeployment,
  type OpenStackMachine,
} from './model.ts'

// The Machine controller with CABPK and CAPO: bootstrap data, a server within quota, a Node; graceful deletion.

function quotaBlock(
  ctx: StandInContext,
  machine: Machine,
  infra: OpenStackMachine,
  s: Snapshot,
  granted: Map<string, number>,
) {
  const flavor = infra.spec?.flavor
  if (!flavor) return undefined
  for (const scope of [machine.spec?.failureDomain, undefined]) {
    const max = ctx.quotas.get(`${flavor}/${scope ?? '*'}`)
    if (max === undefined || (scope === undefined && !ctx.quotas.has(`${flavor}/*`))) continue
    const key = `${flavor}/${scope ?? '*'}`
    const used =
      s.infraMachines.filter((o) => {
        if (o.spec?.flavor !== flavor || !o.status?.ready || isDeleting(o)) return false
        if (scope === undefined) return true
        const owner = s.machines.find((m) => m.metadata.uid === controllerOf(o)?.uid)
        return owner?.spec?.failureDomain === scope
      }).length + (granted.get(key) ?? 0)
    if (used >= max)
      return `Create new server: Expected HTTP response code [202] when accessing [POST https://compute.simulated/v2.1/servers], but got 403 instead: {"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used ${used} of ${max} instances"}}`
  }
  return undefined
}

function grant(machine: Machine, infra: OpenStackMachine, granted: Map<string, number>) {
  const flavor = infra.spec?.flavor
  for (const scope of [machine.spec?.failureDomain ?? '*', '*']) {
    const key = `${flavor}/${scope}`
    granted.set(key, (granted.get(key) ?? 0) + 1)
  }
}

export async function reconcileMachine(
  ctx: StandInContext,
  machine: Machine,
  s: Snapshot,
  health: Map<string, WantedCondition[]>,
  granted: Map<string, number>,
) {
  if (!isOurs(machine, s)) return
  const namespace = machine.metadata.namespace!
  const uid = machine.metadata.uid!
  const spec = machine.spec!
  const config = named(s.configs, namespace, spec.bootstrap.configRef?.name ?? '')
  let infra = named(s.infraMachines, namespace, spec.infrastructureRef.name)
  const cluster = named(s.clusters, namespace, spec.clusterName)
  const isControlPlane = machine.metadata.labels?.[label.controlPlane] !== undefined
  const owner = controllerOf(machine)
  const ownerObject =
    s.controlPlanes.find((k) => k.metadata.uid === owner?.uid) ??
    s.deployments.find((d) => d.metadata.uid === owner?.uid)
  const wantedVersion =
    ownerObject?.kind === 'KubeadmControlPlane'
      ? (ownerObject as KubeadmControlPlane).spec?.version
      : (ownerObject as MachineDeployment | undefined)?.spec?.template.spec.version
  const date = new Date(ctx.now)

  if (isDeleting(machine)) {
    if (!ctx.due(uid, 'deleting', ctx.delays.deletion)) {
      await writeStatus(ctx, 'Machine', machine, {
        phase: 'Deleting',
        conditions: withConditions(
          machine.status?.conditions,
          [
            condition('Deleting', true, 'WaitingForInfrastructureDeletion', '* OpenStackMachine is deleting'),
            condition('Ready', false, 'NotReady', '* Deleting: Machine deletion in progress'),
            condition('Available', false, 'NotReady', '* Deleting: Machine deletion in progress'),
          ],
          machine.metadata.generation,
          date,
        ),
      })
      return
    }
    if (config) await remove(ctx, 'KubeadmConfig', config, 'machine deleted')
    if (infra) await remove(ctx, 'OpenStackMachine', infra, 'machine deleted')
    await ctx.client.update('Machine', machine, (live) => {
      if (!live.metadata.finalizers?.includes(finalizer.machine)) return false
      live.metadata.finalizers = live.metadata.finalizers.filter((f) => f !== finalizer.machine)
      return true
    })
    ctx.stages.delete(uid)
    return
  }

  let live = machine
  const failure =
    ctx.failures.get(machine.metadata.name) ??
    (infra?.status?.failureReason
      ? { reason: infra.status.failureReason, message: infra.status.failureMessage ?? '' }
      : undefined)

  // Bootstrap: CABPK renders data at once for the first control plane Machine; every other waits
  // for the control plane to be initialized (kubeadm join needs it).
  const controlPlaneInitialized =
    cluster?.status?.initialization?.controlPlaneInitialized === true ||
    s.controlPlanes.some(
      (k) =>
        controllerOf(k)?.uid === cluster?.metadata.uid && k.status?.initialization?.controlPlaneInitialized,
    )
  let bootstrapped = Boolean(spec.bootstrap.dataSecretName)
  const mayBootstrap = isControlPlane || controlPlaneInitialized
  if (!bootstrapped && config && mayBootstrap && ctx.due(uid, 'bootstrap', ctx.delays.bootstrap)) {
    await writeStatus(ctx, 'KubeadmConfig', config, {
      initialization: { dataSecretCreated: true },
      dataSecretName: machine.metadata.name,
      observedGeneration: config.metadata.generation ?? 1,
      conditions: withConditions(
        (config.status as { conditions?: Condition[] } | undefined)?.conditions,
        [
          condition('Ready', true, 'Ready'),
          condition('DataSecretAvailable', true, 'Available'),
          condition('CertificatesAvailable', true, 'Available'),
        ],
        config.metadata.generation,
        date,
      ),
    })
    live =
      (await ctx.client.update('Machine', live, (m) => {
        if (m.spec!.bootstrap.dataSecretName) return false
        m.spec!.bootstrap.dataSecretName = m.metadata.name
        return true
      })) ?? live
    bootstrapped = true
  }

  // Infrastructure: CAPO creates the server once there is bootstrap data, within quota.
  let provisioned = infra?.status?.initialization?.provisioned === true
  let blocked: string | undefined
  if (failure && infra && !infra.status?.failureReason) {
    infra = await writeStatus(ctx, 'OpenStackMachine', infra, {
      ready: false,
      failureReason: failure.reason,
      failureMessage: failure.message,
      conditions: withLegacyConditions(
        infra.status?.conditions,
        [
          {
            type: 'Ready',
            status: 'False',
            severity: 'Error',
            reason: failure.reason,
            message: failure.message,
          },
          {
            type: 'InstanceReady',
            status: 'False',
            severity: 'Error',
            reason: failure.reason,
            message: failure.message,
          },
        ],
        date,
      ),
    })
  }
  if (bootstrapped && infra && !provisioned && !failure) {
    blocked = quotaBlock(ctx, live, infra, s, granted)
    if (blocked) {
      ctx.stages.set(uid, { stage: 'infrastructure', at: ctx.now })
      const reason = 'InstanceCreateFailed'
      await writeStatus(ctx, 'OpenStackMachine', infra, {
        ready: false,
        conditions: withLegacyConditions(
          infra.status?.conditions,
          [
            { type: 'Ready', status: 'False', severity: 'Error', reason, message: blocked },
            { type: 'InstanceReady', status: 'False', severity: 'Error', reason, message: blocked },
          ],
          date,
        ),
      })
    } else if (ctx.due(uid, 'infrastructure', ctx.delays.infrastructure)) {
      grant(live, infra, granted)
      const instanceID = randomUUID()
      const providerID = `openstack:///${instanceID}`
      const address = addressOf(machine.metadata.name)
      infra =
        (await ctx.client.update('OpenStackMachine', infra, (o) => {
          if (o.spec?.providerID) return false
          o.spec = { ...o.spec, providerID }
          return true
        })) ?? infra
      infra = await writeStatus(ctx, 'OpenStackMachine', infra, {
        ready: true,
        instanceID: infra.spec?.providerID?.replace('openstack:///', '') ?? instanceID,
        instanceState: 'ACTIVE',
        addresses: [
          { type: 'InternalIP', address },
          { type: 'Hostname', address: machine.metadata.name },
        ],
        initialization: { provisioned: true },
        conditions: withLegacyConditions(
          infra.status?.conditions,
          [
            { type: 'Ready', status: 'True' },
            { type: 'InstanceReady', status: 'True' },
          ],
          date,
        ),
      })
      live =
        (await ctx.client.update('Machine', live, (m) => {
          if (m.spec!.providerID) return false
          m.spec!.providerID = infra!.spec?.providerID ?? providerID
          return true
        })) ?? live
      provisioned = true
    }
  }

  // The Node: it registers a little after the server is up.
  const nodeUp =
    !failure && provisioned && (Boolean(live.status?.nodeRef) || ctx.due(uid, 'node', ctx.delays.node))
  const sick = ctx.unhealthy.has(machine.metadata.name) && nodeUp

  const bootstrapCondition = bootstrapped
    ? condition('BootstrapConfigReady', true, 'Ready')
    : !config
      ? condition('BootstrapConfigReady', false, 'ObjectDoesNotExist', 'KubeadmConfig does not exist')
      : condition(
          'BootstrapConfigReady',
          false,
          'NotReady',
          mayBootstrap
            ? 'KubeadmConfig status.initialization.dataSecretCreated is false'
            : '* DataSecretAvailable: Waiting for Cluster control plane to be initialized',
        )
  const infraCondition = failure
    ? condition('InfrastructureReady', false, failure.reason, failure.message)
    : provisioned
      ? condition('InfrastructureReady', true, 'Ready')
      : blocked
        ? condition('InfrastructureReady', false, 'InstanceCreateFailed', blocked)
        : !infra
          ? condition('InfrastructureReady', false, 'ObjectDoesNotExist', 'OpenStackMachine does not exist')
          : condition(
              'InfrastructureReady',
              false,
              'NotReady',
              'OpenStackMachine status.initialization.provisioned is false',
            )
  const nodeReady = sick
    ? condition('NodeReady', false, 'NodeNotReady', '* Node.Ready: kubelet stopped posting node status')
    : nodeUp
      ? condition('NodeReady', true, 'NodeReady')
      : condition(
          'NodeReady',
          'Unknown',
          'NodeDoesNotExist',
          'Waiting for a Node with spec.providerID to exist',
        )
  const nodeHealthy = sick
    ? condition('NodeHealthy', false, 'NodeNotHealthy', '* Node.Ready: kubelet stopped posting node status')
    : nodeUp
      ? condition('NodeHealthy', true, 'NodeHealthy')
      : condition(
          'NodeHealthy',
          'Unknown',
          'NodeDoesNotExist',
          'Waiting for a Node with spec.providerID to exist',
        )
  const checks = health.get(uid) ?? []
  const readiness = [
    bootstrapCondition,
    infraCondition,
    nodeHealthy,
    ...checks.filter((c) => c.type === 'HealthCheckSucceeded'),
  ]
  const notReady = readiness.filter((c) => c.status !== 'True')
  const ready = notReady.length
    ? condition('Ready', false, 'NotReady', summary(notReady))
    : condition('Ready', true, 'Ready')
  const upToDate =
    wantedVersion === undefined || wantedVersion === spec.version
      ? condition('UpToDate', true, 'UpToDate')
      : condition('UpToDate', false, 'NotUpToDate', `* Version ${spec.version}, ${wantedVersion} required`)
  const phase = failure
    ? 'Failed'
    : nodeUp
      ? 'Running'
      : provisioned
        ? 'Provisioned'
        : bootstrapped
          ? 'Provisioning'
          : 'Pending'
  const conditions = withConditions(
    live.status?.conditions,
    [
      ready,
      ready.status === 'True'
        ? condition('Available', true, 'Available')
        : condition('Available', false, 'NotReady', '* Ready: not ready'),
      upToDate,
      bootstrapCondition,
      infraCondition,
      nodeReady,
      nodeHealthy,
      ...checks,
      condition('Deleting', false, 'NotDeleting'),
    ],
    live.metadata.generation,
    date,
  )
  const wanted: Json = {
    phase,
    observedGeneration: live.metadata.generation ?? 1,
    initialization: { bootstrapDataSecretCreated: bootstrapped, infrastructureProvisioned: provisioned },
    ...(spec.failureDomain ? { failureDomain: spec.failureDomain } : {}),
    ...(provisioned && infra?.status?.addresses ? { addresses: infra.status.addresses } : {}),
    ...(nodeUp ? { nodeRef: { name: live.metadata.name } } : {}),
    ...(failure
      ? { deprecated: { v1beta1: { failureReason: failure.reason, failureMessage: failure.message } } }
      : {}),
    conditions,
  }
  if (live.status?.phase !== phase) wanted.lastUpdated = rfc3339(date)
  if (!alreadyHas(live.status, wanted) && live.status?.phase !== phase)
    ctx.log({ msg: 'machine phase', namespace, name: live.metadata.name, phase })
  await writeStatus(ctx, 'Machine', live, wanted)
}

/** A stable private address per Machine name (10.6.0.0/16). */
function addressOf(name: string) {
  const digest = createHash('sha256').update(name).digest()
  return `10.6.${digest[0]}.${(digest[1]! % 253) + 1}`
}
