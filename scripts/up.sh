#!/usr/bin/env bash
# Brings Kiln up on its embedded default: local PostgreSQL and Redis, the simulated data
# centre, a demo project and public templates; then runs the API (foreground) and the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
bash scripts/install.sh

export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/kiln}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
# The embedded default is a development setup: without a master key, the worker seals cluster keys
# with the well-known development key (and says so). Set KILN_MASTER_KEY for anything real.
if [ -z "${KILN_MASTER_KEY:-}" ]; then export KILN_DEV_MODE=true; fi
db=$(node -e 'console.log(new URL(process.env.DATABASE_URL).pathname.slice(1))')
admin=${DATABASE_URL%/*}/postgres
if [ "$(psql "$admin" -Atc "SELECT 1 FROM pg_database WHERE datname='$db'")" != 1 ]; then
  psql "$admin" -qc "CREATE DATABASE \"$db\""
fi
PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma migrate deploy
npx tsx apps/api/src/seed.main.ts

npx tsx apps/worker/src/main.ts &
worker=$!
# The simulated data centre's Kubernetes API servers: one TLS port, every cluster by SNI.
npx tsx apps/simulator/src/main.ts &
simulator=$!
trap 'kill -TERM $worker $simulator 2>/dev/null; wait $worker $simulator 2>/dev/null' EXIT INT TERM
echo "Kiln API on http://${HOST:-127.0.0.1}:${PORT:-8080} (docs: /docs); worker pid $worker;" \
  "Kubernetes API servers on https://127.0.0.1:${SIMULATOR_API_PORT:-6443} (pid $simulator)"
npx tsx apps/api/src/main.ts
