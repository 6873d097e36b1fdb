#!/usr/bin/env bash
# A short tour of Kiln, through its REST API with curl, jq, kubectl and openssl, against the
# stack `bash scripts/up.sh` runs (KILN_API to point it elsewhere; KILN_TOKEN to bring your own
# token, such as an API token in CI). Every step checks its answer: the tour stops at the first
# surprise. The test suite runs this file against the real API, worker, simulator and OIDC issuer.
set -euo pipefail
API=${KILN_API:-http://127.0.0.1:8080}

# Every call is authenticated. Dev mode runs an OIDC issuer with demo users: this is a 10-minute
# access token for `demo` (admin of the project demo), through the real code + PKCE flow.
# CI would use an API token instead (see "Projects, roles and API tokens").
cd "$(dirname "$0")/.."
TOKEN=${KILN_TOKEN:-$(npm run -s -w @kiln/issuer token -- demo demo)}
[ -n "$TOKEN" ] || { echo "tour: no token from the development issuer (is scripts/up.sh running?)" >&2; exit 1; }

# curl with the token that fails on an error status (and still prints its problem+json).
kiln() { curl -sS --fail-with-body -H "Authorization: Bearer $TOKEN" "$@"; }
json=(-H 'content-type: application/json')
# Waits for an operation (long-polling 30 s at a time) and stops the tour unless it ends as expected.
finish() {
  local op=$1 expected=${2:-succeeded} status
  for _ in $(seq 10); do
    status=$(kiln "$API/v1/operations/$op?wait=30s" | jq -er .status)
    case $status in pending | running) ;; *) break ;; esac
  done
  echo "operation $op: $status"
  [ "$status" = "$expected" ] || { kiln "$API/v1/operations/$op" | jq . >&2; exit 1; }
}

# Names and keys of this run's own, so the tour can run again (an Idempotency-Key is kept 24 h).
run=$(openssl rand -hex 3)
ML=ml-$run WEB=web-$run
cd "$(mktemp -d)"    # for the kubeconfig, keys and certificates below

kiln $API/v1/features | jq -e '[.items[].name] | select(length > 0)'          # the typed feature catalogue
kiln $API/v1/templates | jq -e '[.items[] | {name, version, kubernetesVersion}] | select(length > 0)'
kiln "$API/v1/machine-classes?gpu=true" | jq -e '[.items[].name] | select(length > 0)'

# What would a GPU cluster with nginx consume? A plan (the same body as a create) writes nothing.
kiln -X POST $API/v1/projects/demo/cluster-plans "${json[@]}" \
  -d '{"name":"'$ML'","template":"k8s-1.31-gpu","features":{"ingress":{"controller":"nginx"}}}' | jq -e .consumption

# Create it: 202 + the Operation. Retrying with the same Idempotency-Key returns the same answer.
create='{"name":"'$ML'","template":"k8s-1.31-gpu"}'
op=$(kiln -X POST $API/v1/projects/demo/clusters "${json[@]}" -H "Idempotency-Key: tour-$run" -d "$create" | jq -er .id)
kiln -i -X POST $API/v1/projects/demo/clusters "${json[@]}" -H "Idempotency-Key: tour-$run" -d "$create" \
  | grep -i '^idempotent-replayed: true'
kiln -X POST $API/v1/projects/demo/clusters "${json[@]}" -H "Idempotency-Key: tour-$run" -d "$create" \
  | jq -e --arg op "$op" '.id == $op'

# Operations run side by side on different clusters: a second one, without GPUs, for the upgrade below.
web=$(kiln -X POST $API/v1/projects/demo/clusters "${json[@]}" -d '{"name":"'$WEB'","template":"k8s-1.31"}' | jq -er .id)

# The effective configuration, and where each value came from.
kiln $API/v1/projects/demo/clusters/$ML | jq -e '.spec.provenance'

# Follow the operation to its end (up to 30 s per request); GET …/events streams the same live.
kiln "$API/v1/operations/$op?wait=30s" | jq -e '{status, progress}'
finish $op

# A kubeconfig for it (a client certificate from the cluster's own CA; 24 h unless ttlSeconds) …
kiln -X POST $API/v1/projects/demo/clusters/$ML/kubeconfig "${json[@]}" \
  -d '{"ttlSeconds":3600}' | jq -er .kubeconfig > $ML.kubeconfig
# … that the real kubectl uses: one node per machine, with zone, node group and role …
kubectl --kubeconfig $ML.kubeconfig get nodes -L topology.kubernetes.io/zone,kiln.dev/node-group
# … the add-ons the features asked for (the GPU device plugin only on the GPU nodes) …
kubectl --kubeconfig $ML.kubeconfig get pods -A -o wide
# … and your own workloads (create, apply, apply --server-side, scale, watch all work).
kubectl --kubeconfig $ML.kubeconfig create deployment web --image=nginx:1.27 --replicas=3
kubectl --kubeconfig $ML.kubeconfig rollout status deployment/web --timeout=60s

# Sign your own CSR (Magnum's ca-sign) …
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout me.key -subj /CN=alice -out me.csr
jq -n --rawfile csr me.csr '{csrPem: $csr}' | kiln -X POST $API/v1/projects/demo/clusters/$ML/csr \
  "${json[@]}" -d @- | jq -er .certificatePem > me.crt
openssl x509 -in me.crt -noout -subject
# … and rotate the cluster CA in two phases: a new CA trusted beside the old, then the old one goes.
for phase in start complete; do
  op=$(kiln -X POST $API/v1/projects/demo/clusters/$ML/rotate-ca "${json[@]}" -d '{"phase":"'$phase'"}' | jq -er .id)
  finish $op
done

# A rule broken: 422 problem+json pointing at the field (plain curl: this error is the point).
curl -sS -H "Authorization: Bearer $TOKEN" -X POST $API/v1/projects/demo/clusters "${json[@]}" \
  -d '{"name":"bad","template":"k8s-1.31","features":{"gpu":{"enabled":true}}}' | jq -e 'select(.status == 422) | .errors'

# Change labels with optimistic concurrency (ETag / If-Match; stale → 412). A PATCH always answers
# 202 with an operation; labels need nothing built, so theirs (cluster.update-labels) has already
# succeeded, even while another operation runs on the cluster.
etag=$(kiln -D- -o /dev/null $API/v1/projects/demo/clusters/$ML | awk -F': ' 'tolower($1)=="etag"{print $2}' | tr -d '\r')
kiln -X PATCH $API/v1/projects/demo/clusters/$ML "${json[@]}" -H "If-Match: $etag" \
  -d '{"labels":{"team":"atlas"}}' | jq -e 'select(.kind == "cluster.update-labels" and .status == "succeeded") | {kind, status}'
kiln $API/v1/projects/demo/clusters/$ML | jq -e 'select(.labels.team == "atlas") | .labels'

# More of the lifecycle. Resize a node group, following its progress as server-sent events.
op=$(kiln -X POST $API/v1/projects/demo/clusters/$ML/nodegroups/workers/resize "${json[@]}" \
  -d '{"count":4}' | jq -er .id)
kiln -N $API/v1/operations/$op/events | sed -n 's/^data: //p' | jq -c '{status, progress}'
finish $op
# Change a feature: the operation cluster.update-features.
op=$(kiln -X PATCH $API/v1/projects/demo/clusters/$ML "${json[@]}" \
  -d '{"features":{"monitoring":{"enabled":true,"retentionDays":7}}}' | jq -er 'select(.kind == "cluster.update-features") | .id')
finish $op

# Upgrades, rolling, one minor at a time: on the cluster without GPUs (no newer GPU template is seeded).
finish $web
kiln $API/v1/projects/demo/clusters/$WEB/upgrades | jq -e '[.items[].name] | select(index("k8s-1.32"))'   # what it can upgrade to
op=$(kiln -X POST $API/v1/projects/demo/clusters/$WEB/upgrade "${json[@]}" -d '{"template":"k8s-1.32"}' | jq -er .id)
# Cancel it: it stops at its next step boundary. Retry resumes at the step it stopped at.
kiln -X POST $API/v1/operations/$op/cancel | jq -e .status
finish $op cancelled
kiln -X POST $API/v1/operations/$op/retry | jq -e .status
finish $op
kiln $API/v1/projects/demo/clusters/$WEB | jq -e 'select(.template.name == "k8s-1.32") | {template, phase: .status.phase}'

# Deletes are operations too; a DELETE takes no body, and honours If-Match as PATCH does.
ml=$(kiln -X DELETE $API/v1/projects/demo/clusters/$ML | jq -er .id)
web=$(kiln -X DELETE $API/v1/projects/demo/clusters/$WEB | jq -er .id)
finish $ml
finish $web
echo "tour done"
