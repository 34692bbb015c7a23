#!/usr/bin/env bash
# shellcheck disable=SC2016 # the $ in go-templates is not the shell's
# Explains why a namespace's workloads did not become Ready: the node conditions and taints
# that keep pods off the node (disk or memory pressure), then every pod that is not Ready,
# with its container states, the namespace's latest events and the tail of its logs.
# Usage: scripts/why-not-ready.sh NAMESPACE   (uses $KUBECONFIG, and $KUBECTL if set)
set -uo pipefail
namespace=${1:?usage: why-not-ready.sh NAMESPACE}
kubectl=${KUBECTL:-kubectl}

echo "== nodes: conditions other than Ready that hold, and taints"
"$kubectl" get nodes -o go-template='{{range .items}}{{.metadata.name}}:{{range .status.conditions}}{{if and (ne .type "Ready") (eq .status "True")}} {{.type}} ({{.message}}){{end}}{{end}}{{range .spec.taints}} taint {{.key}}:{{.effect}}{{end}}{{"\n"}}{{end}}'
echo "== disk free on this machine"
df -h / 2>/dev/null | tail -1

echo "== pods in $namespace"
"$kubectl" -n "$namespace" get pods -o wide
not_ready=$("$kubectl" -n "$namespace" get pods -o go-template='{{range .items}}{{$ready := false}}{{range .status.conditions}}{{if and (eq .type "Ready") (eq .status "True")}}{{$ready = true}}{{end}}{{end}}{{if not $ready}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}')
for pod in $not_ready; do
  echo "== pod $pod: container states"
  "$kubectl" -n "$namespace" get pod "$pod" -o go-template='{{range .status.containerStatuses}}{{.name}}: {{range $state, $detail := .state}}{{$state}} {{$detail.reason}} {{$detail.message}}{{end}} (restarts {{.restartCount}}){{"\n"}}{{end}}'
  echo "== pod $pod: last log lines"
  "$kubectl" -n "$namespace" logs "$pod" --all-containers --tail 30 2>&1
done

echo "== latest events in $namespace"
"$kubectl" -n "$namespace" get events --sort-by .lastTimestamp 2>&1 | tail -25
