#!/usr/bin/env bash
# Deletes the kind cluster.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
# shellcheck source=kind.env
source "$(dirname "$0")/kind.env"

"$(kind_bin)" delete cluster --name "$KIND_CLUSTER"
rm -rf "$KIND_STATE"
