#!/usr/bin/env bash
# Runs the project's pinned helm (built by scripts/tools.sh on first use) with the given
# arguments, e.g. scripts/helm.sh lint charts/riffle
set -euo pipefail
bin=$("$(dirname "$0")/tools.sh")
exec "$bin/helm" "$@"
