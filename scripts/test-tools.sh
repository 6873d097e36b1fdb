#!/usr/bin/env bash
# Tools the tests drive as real clients: kubectl (Debian's kubernetes-client) and openssl.
# Installs only what is missing.
set -euo pipefail
missing=()
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-tools: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
kubectl version --client >/dev/null
openssl version >/dev/null
echo "test-tools: kubectl and openssl are available"
