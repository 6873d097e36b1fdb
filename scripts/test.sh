#!/usr/bin/env bash
# The whole test suite: services (PostgreSQL, Redis, Ironic), dependencies, lint + format, types, generated-file drift
# (inside the suite), and every test against real PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
# A real OpenStack Ironic (Debian's packages, fake-hardware nodes) for the bare-metal driver's tests.
bash scripts/ironic/start-ironic.sh >/dev/null
bash scripts/test-tools.sh
bash scripts/install.sh
npx biome ci --error-on-warnings .
npx tsc -p tsconfig.json --noEmit
npx tsc -p apps/portal/tsconfig.json --noEmit
if [ $# -gt 0 ]; then
  exec npx vitest run "$@"
fi
npx vitest run --project main
npx vitest run --project reliability
