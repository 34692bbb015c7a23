#!/usr/bin/env bash
# The end-to-end tier of `make test`: start the real one-node cluster (building it on first
# use), run every suite that needs it, and always take the cluster down again, leaving the
# machine as it was. Set E2E_KEEP=1 to leave the cluster running for debugging.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

teardown() {
  local status=$?
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "e2e: leaving the cluster running (E2E_KEEP=1); stop it with make cluster-down"
  else
    e2e/cluster/down.sh || status=1
  fi
  exit "$status"
}
trap teardown EXIT

e2e/cluster/up.sh
export KUBECONFIG="$root/e2e/.cluster/kubeconfig"
export PATH="$root/e2e/.cluster/bin:$PATH"

passed=0
failed=0
suite() {
  local name=$1
  shift
  echo "e2e: running $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "e2e: $name FAILED" >&2
    failed=$((failed + 1))
  fi
}

suite "cluster smoke test" e2e/cluster/smoke-test.sh
for suite_script in e2e/suites/*.sh; do
  [ -e "$suite_script" ] || continue
  suite "$(basename "$suite_script" .sh)" "$suite_script"
done

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
