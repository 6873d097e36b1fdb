#!/usr/bin/env bash
# Brings Kiln up on its embedded default: local PostgreSQL and Redis, the simulated data
# centre, a demo project and public templates; then runs the API (foreground) and the worker. In dev
# mode it also runs a local OIDC issuer with demo users, so login works with no outside identity provider.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/install.sh

export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kiln}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
# The embedded default is a development setup: without a master key, the worker seals cluster keys
# with the well-known development key (and says so). Set KILN_MASTER_KEYS (or KILN_MASTER_KEY) for anything real.
if [ -z "${KILN_MASTER_KEY:-}${KILN_MASTER_KEYS:-}" ]; then export KILN_DEV_MODE=true; fi
db=$(node -e 'console.log(new URL(process.env.DATABASE_URL).pathname.slice(1))')
admin=${DATABASE_URL%/*}/postgres
if [ "$(psql "$admin" -Atc "SELECT 1 FROM pg_database WHERE datname='$db'")" != 1 ]; then
  psql "$admin" -qc "CREATE DATABASE \"$db\""
fi
PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma migrate deploy
npx tsx apps/api/src/seed.main.ts
# The portal, served by the API under /portal/.
npm run -s build -w @kiln/portal -- --logLevel warn

npx tsx apps/worker/src/main.ts &
worker=$!
# The simulated data centre's Kubernetes API servers: one TLS port, every cluster by SNI.
npx tsx apps/simulator/src/main.ts &
simulator=$!
issuer=
capi=
trap 'kill -TERM $worker $simulator $issuer $capi 2>/dev/null; wait $worker $simulator $issuer $capi 2>/dev/null' EXIT INT TERM
# Dev mode without an issuer of its own: the development OIDC issuer (apps/issuer; users demo/demo,
# viewer/viewer, admin/admin), and the API pointed at it. Production sets KILN_OIDC_* to a real issuer.
if [ "${KILN_DEV_MODE:-}" = true ] && [ -z "${KILN_OIDC_ISSUER:-}" ]; then
  export KILN_PUBLIC_URL=${KILN_PUBLIC_URL:-http://${HOST:-127.0.0.1}:${PORT:-8080}}
  export KILN_ISSUER_PORT=${KILN_ISSUER_PORT:-8081}
  export KILN_OIDC_ISSUER=http://127.0.0.1:$KILN_ISSUER_PORT
  export KILN_OIDC_AUDIENCE=${KILN_OIDC_AUDIENCE:-urn:kiln:api}
  export KILN_OIDC_CLIENT_ID=kiln-portal KILN_OIDC_CLIENT_SECRET=kiln-portal-dev-secret KILN_OIDC_CLI_CLIENT_ID=kiln-cli
  export KILN_OIDC_SCOPES="openid profile email groups"
  export KILN_PLATFORM_ADMIN_GROUPS=${KILN_PLATFORM_ADMIN_GROUPS:-kiln:platform-admins}
  npx tsx apps/issuer/src/main.ts &
  issuer=$!
  # The API discovers the issuer when it starts, so wait for it to answer.
  node -e 'const u = process.argv[1]; const end = Date.now() + 60000;
    (async () => { while (Date.now() < end) { try { if ((await fetch(u)).ok) return } catch {} await new Promise((r) => setTimeout(r, 250)) }
      console.error(`no OIDC issuer at ${u}`); process.exit(1) })()' "$KILN_OIDC_ISSUER/.well-known/openid-configuration"
fi
# A simulated cloud through Cluster API beside it (backend `cloud`, template `cloud-1.31`), once the
# API answers: scripts/capi-up.sh, logging to .kiln/capi-up.log. KILN_CAPI=0 leaves it out.
if [ "${KILN_DEV_MODE:-}" = true ] && [ "${KILN_CAPI:-1}" != 0 ]; then
  mkdir -p .kiln
  bash scripts/capi-up.sh >.kiln/capi-up.log 2>&1 &
  capi=$!
fi
echo "Kiln API on http://${HOST:-127.0.0.1}:${PORT:-8080} (docs: /docs); worker pid $worker;" \
  "Kubernetes API servers on https://127.0.0.1:${SIMULATOR_API_PORT:-6443} (pid $simulator)"
if [ -n "$issuer" ]; then
  echo "Development OIDC issuer on $KILN_OIDC_ISSUER (pid $issuer): log in at $KILN_PUBLIC_URL/v1/auth/login as demo/demo"
fi
npx tsx apps/api/src/main.ts
