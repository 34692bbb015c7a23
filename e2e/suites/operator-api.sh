#!/usr/bin/env bash
# The operator's tests that need a real API server: the generated CRDs applied and validated
# by the API server (CEL rules, defaults, scale subresource), and the controller reconciling
# Stream objects into StatefulSets, Services, ConfigMaps and PDBs with status and cleanup.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must point at the test cluster}"
cargo test -p riffle-operator --test crd --test controller --test api -- --include-ignored
