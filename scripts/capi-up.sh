#!/usr/bin/env bash
# A simulated cloud beside the embedded default, reached through Cluster API: scripts/up.sh runs this
# in the background once the API answers (dev mode). As a platform team would, it asks Kiln for a
# management cluster on the simulated data centre, installs the official Cluster API CRDs
# (vendor/cluster-api-crds) with kubectl and the simulated ClusterClass, registers it as the `capi`
# backend `cloud` with a template `cloud-1.31`, and then runs the stand-in for Cluster API's
# controllers (apps/simulator/src/capi) against it until it is stopped. Idempotent: a second run
# reuses what the first made (and renews the management kubeconfig, valid 7 days). Log:
# .kiln/capi-up.log.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in kubectl jq curl; do
  command -v $tool >/dev/null || { echo "capi-up: needs $tool (bash scripts/test-tools.sh installs kubectl)" >&2; exit 1; }
done
API=${KILN_API:-http://127.0.0.1:${PORT:-8080}}
NS=kiln-clusters
state=$PWD/.kiln/capi
mkdir -p "$state"
kubeconfig=$state/management.kubeconfig

for _ in $(seq 240); do curl -sf "$API/healthz" >/dev/null && break; sleep 0.5; done
TOKEN=${KILN_TOKEN:-$(npm run -s -w @kiln/issuer token -- admin admin)}
kiln() { curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$@"; }
json=(-H 'content-type: application/json')
finish() {
  local op=$1 status
  for _ in $(seq 20); do
    status=$(kiln "$API/v1/operations/$op?wait=30s" | jq -er .status)
    case $status in pending | running) ;; *) break ;; esac
  done
  [ "$status" = succeeded ] || { echo "capi-up: operation $op $status" >&2; exit 1; }
}

# The management cluster: a Kiln cluster of the project demo on the simulated data centre.
if ! kiln "$API/v1/projects/demo/clusters/capi-management" >/dev/null 2>&1; then
  finish "$(kiln -X POST "$API/v1/projects/demo/clusters" "${json[@]}" \
    -d '{"name":"capi-management","template":"k8s-1.31"}' | jq -er .id)"
fi
kiln -X POST "$API/v1/projects/demo/clusters/capi-management/kubeconfig" "${json[@]}" -d '{"ttlSeconds":604800}' \
  | jq -er .kubeconfig >"$kubeconfig.new"
mv "$kubeconfig.new" "$kubeconfig"
chmod 600 "$kubeconfig"
k() { kubectl --kubeconfig "$kubeconfig" --cache-dir "$state/cache" "$@"; }
for dir in cluster-api-v1.14.0/core cluster-api-v1.14.0/bootstrap/kubeadm cluster-api-v1.14.0/controlplane/kubeadm \
  cluster-api-provider-openstack-v0.14.7; do
  k apply --server-side -f "vendor/cluster-api-crds/$dir/config/crd/bases" >/dev/null
done
k wait --for=condition=Established crd --all --timeout=60s >/dev/null
k get namespace $NS >/dev/null 2>&1 || k create namespace $NS >/dev/null
k apply --server-side -n $NS -f deploy/capi/simulated/clusterclass.yaml >/dev/null

# The backend and a template on it (kept when they exist).
if ! kiln "$API/v1/backends/cloud" >/dev/null 2>&1; then
  kiln -X POST "$API/v1/backends" "${json[@]}" -d "$(jq -n --arg kubeconfig "$kubeconfig" \
    --arg server "https://127.0.0.1:${SIMULATOR_API_PORT:-6443}" '{
      name: "cloud", kind: "capi",
      config: { kubeconfig: { file: $kubeconfig }, namespace: "kiln-clusters", clusterClass: "kiln-simulated",
        controlPlaneEndpoint: { server: $server, tlsServerName: "{clusterId}.clusters.sim.kiln.internal" } } }')" >/dev/null
fi
# The worker copies the ClusterClass's machine classes into the catalogue within CATALOGUE_INTERVAL_MS.
for _ in $(seq 180); do
  kiln "$API/v1/machine-classes?backend=cloud" | jq -e '[.items[].name] | index("c1.medium")' >/dev/null && break
  sleep 1
done
if ! kiln "$API/v1/templates/cloud-1.31" >/dev/null 2>&1; then
  kiln -X POST "$API/v1/templates" "${json[@]}" -d '{
    "name": "cloud-1.31", "kubernetesVersion": "1.31.4", "backend": "cloud",
    "controlPlane": { "count": 1, "machineClass": "c1.medium" },
    "nodeGroups": [{ "name": "workers", "machineClass": "c1.medium", "count": 2, "minCount": 1, "maxCount": 8 }]
  }' >/dev/null
fi
echo "capi-up: backend cloud (kind capi) and template cloud-1.31 ready; management cluster capi-management, kubeconfig $kubeconfig"
KUBECONFIG=$kubeconfig CAPI_NAMESPACES=$NS exec npx tsx apps/simulator/src/capi/main.ts
