import type { V1ObjectMeta } from '@kubernetes/client-node'
import { AddonLabel, type AddonManifest, type AddonName, type KubeObject, managedByKiln } from './model.ts'

type Modelled = { apiVersion?: string; kind?: string; metadata?: V1ObjectMeta }

/** A model of @kubernetes/client-node with the fields every applied object must have. */
export type Applied<T extends Modelled> = T & {
  apiVersion: string
  kind: string
  metadata: V1ObjectMeta & { name: string }
}

/**
 * Checks an object literal against the client's model of its kind: `kube<V1Deployment>({ … })`.
 * A misspelt field fails to compile here, where the client's serializer would silently drop it.
 */
export const kube = <T extends Modelled>(object: Applied<T>): KubeObject => object as unknown as KubeObject

/** Kinds whose `spec.template` is a pod template. */
const workloadKinds = new Set(['Deployment', 'DaemonSet', 'StatefulSet'])

/**
 * An add-on: its objects stamped with the three Kiln labels, on the object and on the pod template of
 * workloads (so pods show their add-on). Selectors never carry them: selectors are immutable, and the
 * version label changes with every upgrade.
 */
export function defineAddon(name: AddonName, version: string, objects: KubeObject[]): AddonManifest {
  const labels = {
    [AddonLabel.managedBy]: managedByKiln,
    [AddonLabel.addon]: name,
    [AddonLabel.version]: version,
  }
  return {
    name,
    version,
    objects: objects.map((object) => {
      const stamped: KubeObject = {
        ...object,
        metadata: { ...object.metadata, labels: { ...object.metadata.labels, ...labels } },
      }
      if (!workloadKinds.has(object.kind)) return stamped
      const spec = object['spec'] as { template: { metadata?: V1ObjectMeta } }
      const template = spec.template
      return {
        ...stamped,
        spec: {
          ...spec,
          template: {
            ...template,
            metadata: { ...template.metadata, labels: { ...template.metadata?.labels, ...labels } },
          },
        },
      }
    }),
  }
}
