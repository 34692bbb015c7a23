#!/usr/bin/env bash
# Checks the chart offline (`make chart-lint`):
#   1. its crds/ is an exact copy of the repository's generated crds/;
#   2. `helm lint --strict` with the default values and with every option turned on;
#   3. values.schema.json refuses bad values;
#   4. every rendered object, and examples/*.yaml, validates strictly (unknown fields are
#      errors) with kubeconform against schemas/ (Kubernetes v1.34, committed; see
#      update-k8s-schemas.sh) and schemas generated here from crds/ (the Stream kind).
# Fails on the first problem.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
chart=$(cd "$here/.." && pwd)
root=$(cd "$chart/../.." && pwd)
bin=$("$root/scripts/tools.sh")
helm=$bin/helm
kubeconform=$bin/kubeconform
CACHE=${RIFFLE_CACHE:-$HOME/.cache/riffle}

log() { printf 'chart-lint: %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "CRDs in sync"
"$chart/scripts/sync-crds.sh" --check

# Every option that changes what is rendered.
cat >"$work/all-on.yaml" <<'EOF'
image: {tag: 1.2.3-abcdef0, pullPolicy: Never}
imagePullSecrets: [{name: registry}]
operator: {watchNamespace: shop}
gateway: {replicaCount: 3, service: {type: NodePort}}
serviceAccount: {annotations: {example.com/role: riffle}}
serviceMonitor: {enabled: true, labels: {release: prometheus}}
networkPolicy:
  streamNamespaces: [shop, riffle-system]
  extraShardGroupIngress: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: riffle, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]
EOF

log "helm lint"
"$helm" lint --strict "$chart" >&2
"$helm" lint --strict "$chart" -f "$work/all-on.yaml" >&2

log "values.schema.json refuses bad values"
refuse() {
    if "$helm" template riffle "$chart" "$@" >/dev/null 2>"$work/err"; then
        log "accepted but should not: $*"
        exit 1
    fi
    grep -q 'values don.t meet the specifications of the schema' "$work/err" || {
        cat "$work/err" >&2
        exit 1
    }
}
refuse --set image.tag=latest
refuse --set gateway.replicaCount=0
refuse --set image.pullPolicy=Sometimes
refuse --set no.such.value=1
refuse --set aws.accountId=123

log "schemas for the custom resources, from crds/"
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
    # PyYAML, from PyPI, once, beside the other tools.
    venv=$CACHE/chart-lint-venv
    if [[ ! -x $venv/bin/python ]] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check pyyaml==6.0.2 >&2
    fi
    python=$venv/bin/python
fi
"$python" "$here/schemas.py" crds "$root/crds" "$work/crd-schemas" >&2

validate() {
    "$kubeconform" -strict -summary \
        -schema-location "$here/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$work/crd-schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" "$@"
}

log "kubeconform: default values, and examples/"
"$helm" template riffle "$chart" --namespace riffle-system >"$work/default.yaml"
# The operator owns the gateway's routes; a chart-rendered value would be put back over
# them by every upgrade.
if grep -q 'routes.json:' "$work/default.yaml"; then
    log "the chart must not render the gateway's routes.json (the operator writes it)"
    exit 1
fi
validate "$work/default.yaml" "$root"/examples/*.yaml

# The Prometheus Operator's CRDs are not available offline: the ServiceMonitor is checked by
# helm lint above (it renders, and is valid YAML), not against a schema.
log "kubeconform: every option on (ServiceMonitor skipped: no schema offline)"
"$helm" template riffle "$chart" --namespace riffle-system -f "$work/all-on.yaml" >"$work/all-on-rendered.yaml"
grep -q '^kind: ServiceMonitor' "$work/all-on-rendered.yaml" || { log "ServiceMonitor not rendered"; exit 1; }
validate -skip ServiceMonitor "$work/all-on-rendered.yaml"

log "ok"
