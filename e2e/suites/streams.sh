#!/usr/bin/env bash
# The Streams vertical slice on the real cluster: install Riffle with `make deploy` (idempotent:
# it upgrades an existing installation), then drive e2e/tests/test_streams_e2e.py with boto3 from
# the repository's virtualenv: a Stream from examples/stream.yaml becomes Ready and serves records
# through the gateway, `kubectl scale` reshards it without losing a record (also across an
# operator restart), retention follows the spec, CreateStream/UpdateShardCount/DeleteStream
# through the Kinesis API change Stream objects, invalid Streams are refused, and deleting a
# stream leaves nothing labelled with its name. Replicated streams name their leader in the status,
# a new one after the leader pod is force-deleted, and one cut off from its followers by a
# firewall rule in its network namespace is replaced and acknowledges nothing. A follower brought
# back on an empty volume catches up while writes go on, holding every acknowledged record with
# the leader's sequence numbers, and a group whose three pods are force-deleted at once elects a
# leader again and loses no acknowledged record.
#
# The tests delete the streams and namespaces they create. An installation this suite made is
# uninstalled at the end; one that was there before is left installed (upgraded).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must point at the test cluster}"
namespace=${DEPLOY_NAMESPACE:-riffle-system}

installed_before=0
if scripts/helm.sh status riffle --namespace "$namespace" >/dev/null 2>&1; then
  installed_before=1
fi
uninstall() {
  local status=$?
  if [ "$installed_before" = 0 ]; then
    make undeploy DEPLOY_KUBECONFIG="$KUBECONFIG" DEPLOY_NAMESPACE="$namespace" || status=1
  fi
  exit "$status"
}
trap uninstall EXIT

make deploy DEPLOY_KUBECONFIG="$KUBECONFIG" DEPLOY_NAMESPACE="$namespace"
make .venv/.installed
RIFFLE_NAMESPACE=$namespace .venv/bin/pytest e2e/tests/test_streams_e2e.py \
  -v -s -p no:cacheprovider --timeout 900
