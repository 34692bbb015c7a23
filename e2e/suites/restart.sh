#!/usr/bin/env bash
# The operator's robustness on the real cluster: install Riffle with `make deploy` (idempotent:
# it upgrades an existing installation), then drive e2e/tests/test_restart_e2e.py: the operator
# killed while a Stream is being created and in the middle of a two-step reshard, kube-apiserver
# killed and started again with its own command line (e2e/cluster/apiserver.sh). After each, the
# streams converge with exactly their objects, every record put through the gateway is still
# readable, and reconciling the unchanged streams writes nothing (no resourceVersion moves over a
# 20 s window).
#
# Runs after operator-api.sh (which needs the cluster without an installed operator) and before
# streams.sh. Needs root and the e2e/cluster node: it signals the operator's process through the
# node's containerd and restarts kube-apiserver. The tests delete the streams and the namespace
# they create; an installation this suite made is uninstalled at the end, one that was there
# before is left installed (upgraded).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must point at the test cluster}"
namespace=${DEPLOY_NAMESPACE:-riffle-system}

installed_before=0
if scripts/helm.sh status riffle --namespace "$namespace" >/dev/null 2>&1; then
  installed_before=1
fi
finish() {
  local status=$?
  # A test that failed while kube-apiserver was stopped must not leave it stopped.
  if ! e2e/cluster/apiserver.sh status >/dev/null 2>&1; then
    e2e/cluster/apiserver.sh start || status=1
  fi
  if [ "$installed_before" = 0 ]; then
    make undeploy DEPLOY_KUBECONFIG="$KUBECONFIG" DEPLOY_NAMESPACE="$namespace" || status=1
  fi
  exit "$status"
}
trap finish EXIT

make deploy DEPLOY_KUBECONFIG="$KUBECONFIG" DEPLOY_NAMESPACE="$namespace"
make .venv/.installed
RIFFLE_NAMESPACE=$namespace .venv/bin/pytest e2e/tests/test_restart_e2e.py \
  -v -s -p no:cacheprovider --timeout 900 -rxXs
