#!/usr/bin/env bash
# Installs npm dependencies (when the lock file changed) and generates the Prisma client.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.kiln-lock-hash
hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$hash" > "$stamp"
fi
PRISMA_SCHEMA_ENGINE_BINARY=prisma/engine/schema-engine.mjs npx prisma generate >/dev/null
