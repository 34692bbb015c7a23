#!/usr/bin/env bash
# Regenerates schemas/ (the Kubernetes kinds kubeconform checks the chart against) from the
# running e2e cluster's API server, so validation needs no download. Run it after moving the
# e2e cluster to a new Kubernetes minor, and commit the result.
#
# Usage: charts/riffle/tests/update-k8s-schemas.sh   (KUBECONFIG defaults to the e2e cluster's)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
export KUBECONFIG=${KUBECONFIG:-$root/e2e/.cluster/kubeconfig}
kubectl=$root/e2e/.cluster/bin/kubectl
[[ -x $kubectl ]] || kubectl=kubectl

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$kubectl" get --raw /openapi/v2 >"$tmp"
version=$("$kubectl" version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')
python3 "$here/schemas.py" k8s "$tmp" "$here/schemas"
echo "Kubernetes $version, /openapi/v2, written by update-k8s-schemas.sh" >"$here/schemas/VERSION"
