import { apiVersionOf, type Json, type Kind, type KubeObject, kindOf } from './client.ts'
import { condition } from './conditions.ts'
import {
  bootstrapGroup,
  type ClusterVerdict,
  controlPlaneGroup,
  create,
  infrastructureGroup,
  isOurs,
  named,
  ownedBy,
  remove,
  type Snapshot,
  type StandInContext,
  topologyLabels,
} from './context.ts'
import {
  alreadyHas,
  annotation,
  type Cluster,
  finalizer,
  isDeleting,
  label,
  labelValue,
  type MachineDeployment,
  type MachineDeploymentSpec,
  type Metadata,
  ownerReference,
  stableSuffix,
  type TemplateRef,
} from './model.ts'

// The topology controller: a Cluster with spec.topology becomes its infrastructure cluster, control
// plane and MachineDeployments, from its ClusterClass; a deleted Cluster is taken apart in order.

/** A clone of a template for one Cluster, as the topology controller makes (kept if it exists). */
async function cloneTemplate(
  ctx: StandInContext,
  cluster: Cluster,
  classNamespace: string,
  source: TemplateRef,
  name: string,
  existing: KubeObject[],
): Promise<{ kind: Kind; name: string } | string> {
  const kind = kindOf(source.apiVersion, source.kind)
  if (!kind) return `${source.kind} ${source.name}: the stand-in does not play its provider`
  const namespace = cluster.metadata.namespace!
  if (named(existing, namespace, name)) return { kind, name }
  const template = await ctx.client.get(kind, classNamespace, source.name)
  if (!template) return `${source.kind} ${classNamespace}/${source.name} not found`
  await create(ctx, kind, {
    apiVersion: apiVersionOf(kind),
    kind,
    metadata: {
      name,
      namespace,
      labels: topologyLabels(cluster),
      annotations: {
        ...template.metadata.annotations,
        [annotation.clonedFromName]: source.name,
        [annotation.clonedFromGroupKind]: `${source.kind}.${source.apiVersion.split('/')[0]}`,
      },
      ownerReferences: [ownerReference(cluster)],
    },
    spec: template.spec,
  })
  return { kind, name }
}

export async function reconcileTopology(
  ctx: StandInContext,
  cluster: Cluster,
  s: Snapshot,
  verdict: ClusterVerdict,
) {
  const topology = cluster.spec?.topology
  if (!topology) return
  const namespace = cluster.metadata.namespace!
  const name = cluster.metadata.name
  const uid = cluster.metadata.uid!
  if (!cluster.metadata.finalizers?.includes(finalizer.cluster))
    cluster =
      (await ctx.client.update('Cluster', cluster, (live) => {
        if (live.metadata.finalizers?.includes(finalizer.cluster)) return false
        live.metadata.finalizers = [...(live.metadata.finalizers ?? []), finalizer.cluster]
        return true
      })) ?? cluster
  const classNamespace = topology.classRef.namespace ?? namespace
  const clusterClass = named(s.classes, classNamespace, topology.classRef.name)
  if (!clusterClass?.spec) {
    verdict.topology = condition(
      'TopologyReconciled',
      false,
      'ClusterClassNotFound',
      `ClusterClass ${classNamespace}/${topology.classRef.name} not found`,
    )
    return
  }
  const failed = (message: string) => {
    verdict.topology = condition('TopologyReconciled', false, 'ReconcileFailed', message)
  }
  const classSpec = clusterClass.spec

  // The infrastructure cluster.
  let infraCluster = ownedBy(s.infraClusters, cluster)[0]
  if (!infraCluster) {
    const source = classSpec.infrastructure.templateRef
    const template = await ctx.client.get<{ template: { spec: Json } }>(
      'OpenStackClusterTemplate',
      classNamespace,
      source.name,
    )
    if (!template?.spec || source.kind !== 'OpenStackClusterTemplate')
      return failed(`${source.kind} ${classNamespace}/${source.name} not found`)
    infraCluster = await create(ctx, 'OpenStackCluster', {
      apiVersion: apiVersionOf('OpenStackCluster'),
      kind: 'OpenStackCluster',
      metadata: {
        name: `${name}-${stableSuffix(`${uid}/infrastructure`)}`,
        namespace,
        labels: topologyLabels(cluster),
        annotations: {
          [annotation.clonedFromName]: source.name,
          [annotation.clonedFromGroupKind]: `OpenStackClusterTemplate.${infrastructureGroup}`,
        },
        ownerReferences: [ownerReference(cluster)],
      },
      spec: { ...template.spec.template.spec, controlPlaneEndpoint: ctx.endpoint },
    })
  }

  // The control plane, with its own clone of the machine infrastructure template.
  const replicas = topology.controlPlane?.replicas ?? 1
  let controlPlane = ownedBy(s.controlPlanes, cluster)[0]
  if (!controlPlane) {
    const infraSource = classSpec.controlPlane.machineInfrastructure?.templateRef
    if (!infraSource) return failed('the ClusterClass has no control plane machineInfrastructure')
    const infra = await cloneTemplate(
      ctx,
      cluster,
      classNamespace,
      infraSource,
      `${name}-control-plane-${stableSuffix(`${uid}/control-plane`)}`,
      s.infraTemplates,
    )
    if (typeof infra === 'string') return failed(infra)
    const source = classSpec.controlPlane.templateRef
    const template = await ctx.client.get<{
      template: { spec: Json & { machineTemplate?: { metadata?: Metadata; spec?: Json } } }
    }>('KubeadmControlPlaneTemplate', classNamespace, source.name)
    if (!template?.spec || source.kind !== 'KubeadmControlPlaneTemplate')
      return failed(`${source.kind} ${classNamespace}/${source.name} not found`)
    const { machineTemplate, ...rest } = template.spec.template.spec
    controlPlane = await create(ctx, 'KubeadmControlPlane', {
      apiVersion: apiVersionOf('KubeadmControlPlane'),
      kind: 'KubeadmControlPlane',
      metadata: {
        name: `${name}-${stableSuffix(`${uid}/control-plane`)}`,
        namespace,
        labels: topologyLabels(cluster),
        annotations: {
          [annotation.clonedFromName]: source.name,
          [annotation.clonedFromGroupKind]: `KubeadmControlPlaneTemplate.${controlPlaneGroup}`,
        },
        ownerReferences: [ownerReference(cluster)],
      },
      spec: {
        ...rest,
        replicas,
        version: topology.version,
        machineTemplate: {
          metadata: mergeMetadata(
            machineTemplate?.metadata,
            classSpec.controlPlane.metadata,
            topology.controlPlane?.metadata,
          ),
          spec: {
            ...machineTemplate?.spec,
            infrastructureRef: { apiGroup: infrastructureGroup, kind: infra.kind, name: infra.name },
          },
        },
      },
    })
  } else if (controlPlane.spec!.replicas !== replicas || controlPlane.spec!.version !== topology.version) {
    controlPlane =
      (await ctx.client.update('KubeadmControlPlane', controlPlane, (live) => {
        if (live.spec!.replicas === replicas && live.spec!.version === topology.version) return false
        live.spec!.replicas = replicas
        // The control plane is upgraded first; MachineDeployments follow once it is done.
        live.spec!.version = topology.version
        return true
      })) ?? controlPlane
  }

  // The Cluster's references, as the topology and cluster controllers set them.
  const infrastructureRef = {
    apiGroup: infrastructureGroup,
    kind: 'OpenStackCluster',
    name: infraCluster.metadata.name,
  }
  const controlPlaneRef = {
    apiGroup: controlPlaneGroup,
    kind: 'KubeadmControlPlane',
    name: controlPlane.metadata.name,
  }
  if (!alreadyHas(cluster.spec, { infrastructureRef, controlPlaneRef, controlPlaneEndpoint: ctx.endpoint }))
    await ctx.client.update('Cluster', cluster, (live) => {
      if (alreadyHas(live.spec, { infrastructureRef, controlPlaneRef, controlPlaneEndpoint: ctx.endpoint }))
        return false
      live.spec = { ...live.spec, infrastructureRef, controlPlaneRef, controlPlaneEndpoint: ctx.endpoint }
      return true
    })

  // MachineDeployments: one per topology entry; workers follow the control plane's version.
  const controlPlaneDone =
    controlPlane.status?.version === topology.version &&
    controlPlane.spec!.version === topology.version &&
    (controlPlane.status?.upToDateReplicas ?? 0) >= replicas &&
    (controlPlane.status?.replicas ?? 0) === replicas
  const owned = ownedBy(s.deployments, cluster)
  const waiting: string[] = []
  const entries = topology.workers?.machineDeployments ?? []
  for (const entry of entries) {
    const workerClass = classSpec.workers?.machineDeployments?.find((c) => c.class === entry.class)
    if (!workerClass) {
      failed(`MachineDeployment class ${entry.class} not found in ClusterClass ${topology.classRef.name}`)
      continue
    }
    const existing = owned.find(
      (md) => md.metadata.labels?.[label.topologyDeploymentName] === labelValue(entry.name),
    )
    const current = existing?.spec?.template.spec.version
    const version = controlPlaneDone
      ? topology.version
      : (current ?? controlPlane.status?.version ?? controlPlane.spec!.version)
    if (version !== topology.version) waiting.push(entry.name)
    const selectorLabels = {
      [label.clusterName]: labelValue(name),
      [label.topologyDeploymentName]: labelValue(entry.name),
    }
    const templateMetadata = mergeMetadata(workerClass.metadata, entry.metadata, {
      labels: { ...topologyLabels(cluster), ...selectorLabels },
    })
    const desired = {
      replicas: entry.replicas ?? 1,
      version,
      failureDomain: entry.failureDomain ?? workerClass.failureDomain,
      metadata: templateMetadata,
      taints: entry.taints,
      annotations: entry.metadata?.annotations,
    }
    if (!existing) {
      const suffix = stableSuffix(`${uid}/${entry.name}`)
      const bootstrap = await cloneTemplate(
        ctx,
        cluster,
        classNamespace,
        workerClass.bootstrap.templateRef,
        `${name}-${entry.name}-bootstrap-${suffix}`,
        s.configTemplates,
      )
      if (typeof bootstrap === 'string') {
        failed(bootstrap)
        continue
      }
      const infra = await cloneTemplate(
        ctx,
        cluster,
        classNamespace,
        workerClass.infrastructure.templateRef,
        `${name}-${entry.name}-${suffix}`,
        s.infraTemplates,
      )
      if (typeof infra === 'string') {
        failed(infra)
        continue
      }
      const spec: MachineDeploymentSpec = {
        clusterName: name,
        replicas: desired.replicas,
        selector: { matchLabels: selectorLabels },
        rollout: { strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } } },
        template: {
          metadata: templateMetadata,
          spec: {
            clusterName: name,
            version,
            bootstrap: {
              configRef: { apiGroup: bootstrapGroup, kind: bootstrap.kind, name: bootstrap.name },
            },
            infrastructureRef: { apiGroup: infrastructureGroup, kind: infra.kind, name: infra.name },
            ...(desired.failureDomain ? { failureDomain: desired.failureDomain } : {}),
            ...(entry.taints?.length ? { taints: entry.taints } : {}),
          },
        },
      }
      await create(ctx, 'MachineDeployment', {
        apiVersion: apiVersionOf('MachineDeployment'),
        kind: 'MachineDeployment',
        metadata: {
          name: `${name}-${entry.name}-${suffix}`,
          namespace,
          labels: { ...topologyLabels(cluster), [label.topologyDeploymentName]: labelValue(entry.name) },
          ...(entry.metadata?.annotations ? { annotations: entry.metadata.annotations } : {}),
          ownerReferences: [ownerReference(cluster)],
        },
        spec,
      })
      continue
    }
    const apply = (md: MachineDeployment) => {
      const spec = md.spec!
      const before = JSON.stringify([spec, md.metadata.annotations])
      spec.replicas = desired.replicas
      spec.template.spec.version = desired.version
      if (desired.failureDomain) spec.template.spec.failureDomain = desired.failureDomain
      else delete spec.template.spec.failureDomain
      if (desired.taints?.length) spec.template.spec.taints = desired.taints
      else delete spec.template.spec.taints
      spec.template.metadata = desired.metadata
      md.metadata.annotations = { ...md.metadata.annotations, ...desired.annotations }
      return JSON.stringify([spec, md.metadata.annotations]) !== before
    }
    if (apply(structuredClone(existing))) await ctx.client.update('MachineDeployment', existing, apply)
  }
  for (const md of owned)
    if (!isDeleting(md))
      if (!entries.some((e) => md.metadata.labels?.[label.topologyDeploymentName] === labelValue(e.name)))
        await remove(ctx, 'MachineDeployment', md, 'no longer in the topology')
  if (waiting.length && !verdict.topology)
    verdict.topology = condition(
      'TopologyReconciled',
      false,
      'MachineDeploymentsUpgradePending',
      `MachineDeployment(s) ${waiting.join(', ')} upgrade to version ${topology.version} on hold. Control plane is upgrading to version ${topology.version}`,
    )
}

/** A Cluster being deleted: workers, then the control plane, then the infrastructure, then the finalizer. */
export async function reconcileClusterDeletion(
  ctx: StandInContext,
  cluster: Cluster,
  s: Snapshot,
  verdict: ClusterVerdict,
) {
  if (!cluster.metadata.finalizers?.includes(finalizer.cluster)) return
  const namespace = cluster.metadata.namespace!
  const ofCluster = s.machines.filter(
    (m) =>
      m.metadata.namespace === namespace && m.spec?.clusterName === cluster.metadata.name && isOurs(m, s),
  )
  const workers = ofCluster.filter((m) => m.metadata.labels?.[label.controlPlane] === undefined)
  const deployments = ownedBy(s.deployments, cluster)
  if (workers.length || deployments.length) {
    verdict.deleting = condition(
      'Deleting',
      true,
      'WaitingForWorkersDeletion',
      `* MachineDeployments: ${deployments.map((d) => d.metadata.name).join(', ') || '(none)'}\n* Machines: ${workers.map((m) => m.metadata.name).join(', ') || '(none)'}`,
    )
    for (const md of deployments)
      if (!isDeleting(md)) await remove(ctx, 'MachineDeployment', md, 'cluster deleted')
    for (const m of workers) if (!isDeleting(m)) await remove(ctx, 'Machine', m, 'cluster deleted')
    return
  }
  const controlPlanes = ownedBy(s.controlPlanes, cluster)
  const controlPlaneMachines = ofCluster.filter((m) => m.metadata.labels?.[label.controlPlane] !== undefined)
  if (controlPlanes.length || controlPlaneMachines.length) {
    verdict.deleting = condition(
      'Deleting',
      true,
      'WaitingForControlPlaneDeletion',
      `* KubeadmControlPlane ${controlPlanes.map((k) => k.metadata.name).join(', ')} is deleting`,
    )
    for (const m of controlPlaneMachines)
      if (!isDeleting(m)) await remove(ctx, 'Machine', m, 'cluster deleted')
    if (!controlPlaneMachines.length)
      for (const kcp of controlPlanes)
        if (!isDeleting(kcp)) await remove(ctx, 'KubeadmControlPlane', kcp, 'cluster deleted')
    return
  }
  const infra = ownedBy(s.infraClusters, cluster)
  if (infra.length) {
    verdict.deleting = condition(
      'Deleting',
      true,
      'WaitingForInfrastructureDeletion',
      `* OpenStackCluster ${infra[0]!.metadata.name} is deleting`,
    )
    for (const o of infra) if (!isDeleting(o)) await remove(ctx, 'OpenStackCluster', o, 'cluster deleted')
    return
  }
  for (const t of ownedBy(s.infraTemplates, cluster))
    await remove(ctx, 'OpenStackMachineTemplate', t, 'cluster deleted')
  for (const t of ownedBy(s.configTemplates, cluster))
    await remove(ctx, 'KubeadmConfigTemplate', t, 'cluster deleted')
  await ctx.client.update('Cluster', cluster, (live) => {
    if (!live.metadata.finalizers?.includes(finalizer.cluster)) return false
    live.metadata.finalizers = live.metadata.finalizers.filter((f) => f !== finalizer.cluster)
    return true
  })
  ctx.log({ msg: 'cluster deleted', namespace, name: cluster.metadata.name })
}

/** Merges template metadata, later sources winning, as the topology controller layers class and topology. */
function mergeMetadata(...sources: (Metadata | undefined)[]): Metadata | undefined {
  const labels = Object.assign({}, ...sources.map((s) => s?.labels))
  const annotations = Object.assign({}, ...sources.map((s) => s?.annotations))
  const result: Metadata = {}
  if (Object.keys(labels).length) result.labels = labels
  if (Object.keys(annotations).length) result.annotations = annotations
  return Object.keys(result).length ? result : undefined
}
