#!/usr/bin/env bash
# The Streams vertical slice on the real cluster: install Riffle with `make deploy` (idempotent:
# it upgrades an existing installation), then drive e2e/tests/test_streams_e2e.py with boto3 from
# the repository's virtualenv: a Stream from examples/stream.yaml becomes Ready and serves records
# through the gateway, `kubectl scale` reshards it without losing a record, CreateStream and
# DeleteStream through the Kinesis API create and delete Stream objects, an invalid Stream is
# refused, and deleting a stream leaves nothing labelled with its name.
#
# The tests delete the streams and the namespace they create; the installation stays (the e2e
# tier takes the whole cluster down afterwards).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?KUBECONFIG must point at the test cluster}"

make deploy DEPLOY_KUBECONFIG="$KUBECONFIG"
make .venv/.installed
exec .venv/bin/pytest e2e/tests/test_streams_e2e.py -v -s -p no:cacheprovider --timeout 900
