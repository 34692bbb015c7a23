#!/usr/bin/env bash
# The e2e cluster for machines with Docker: a one-node kind cluster with the smoke-test
# image loaded. Writes its kubeconfig to e2e/.cluster/kind/kubeconfig.
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
# shellcheck source=kind.env
source "$(dirname "$0")/kind.env"

docker info >/dev/null 2>&1 || die "docker is not running; e2e/kind needs Docker (use e2e/cluster without it)"
kind=$(kind_bin)
mkdir -p "$KIND_STATE"

if "$kind" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  step "kind cluster $KIND_CLUSTER already exists"
else
  step "creating kind cluster $KIND_CLUSTER ($KIND_NODE_IMAGE)"
  "$kind" create cluster --name "$KIND_CLUSTER" --image "$KIND_NODE_IMAGE" \
    --config "$(dirname "$0")/config.yaml" --kubeconfig "$KIND_KUBECONFIG" --wait 180s
fi
"$kind" export kubeconfig --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG" >/dev/null

step "building and loading the smoke-test image"
"$CLUSTER_DIR/build.sh" nodekit
"$kind" load image-archive --name "$KIND_CLUSTER" "$CACHE/nodekit-current/images/toolbox.tar"
step "ready: export KUBECONFIG=$KIND_KUBECONFIG"
