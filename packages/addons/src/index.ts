export { AddonError, AddonErrorCode, type AddonVerb } from './errors.ts'
export { type AddonKind, addonKindOf, addonKinds } from './kinds.ts'
export { type AddonKubeConfigRequest, addonKubeConfig, withSharedAgent } from './kubeconfig.ts'
export {
  type AddonInput,
  AddonLabel,
  type AddonManifest,
  type AddonName,
  type AddonNodeGroup,
  addonSelector,
  type KubeObject,
  managedByKiln,
} from './model.ts'
export { nodeGroupLabel, nodeRoleLabel } from './placement.ts'
export { desiredAddons } from './planner.ts'
export {
  applyObjects,
  type ReconcileOptions,
  type ReconcileResult,
  reconcileAddons,
  refOf,
} from './reconciler.ts'
