#!/usr/bin/env bash
# Runs e2e/cluster/smoke-test.sh against the kind cluster. ClusterIPs are only routable
# inside the kind node, so the "from the host" check runs there.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
# shellcheck source=kind.env
source "$(dirname "$0")/kind.env"

[[ -f $KIND_KUBECONFIG ]] || die "no kind cluster kubeconfig at $KIND_KUBECONFIG; run e2e/kind/up.sh"
if ! type -P kubectl >/dev/null; then
  "$CLUSTER_DIR/build.sh" kubernetes
  KUBECTL=$CACHE/k8s-$(gomod_version "$TOOLS_DIR/kubernetes" k8s.io/kubernetes)/bin/kubectl
  export KUBECTL
fi
KUBECONFIG=$KIND_KUBECONFIG SMOKE_HOST_EXEC="docker exec $KIND_CLUSTER-control-plane" \
  exec "$CLUSTER_DIR/smoke-test.sh"
