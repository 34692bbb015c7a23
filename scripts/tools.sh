#!/usr/bin/env bash
# Builds the pinned chart tools (helm, kubeconform) from the Go module proxy, once, into
# ${RIFFLE_CACHE:-~/.cache/riffle}/tools-<versions>/bin, and prints that directory on stdout.
# A second run with the same pins does nothing but print it. Progress goes to stderr.
#
# Usage: BIN=$(scripts/tools.sh)        then "$BIN/helm", "$BIN/kubeconform"
set -euo pipefail

# helm 3.19 is built against client-go 0.34, the minor of the e2e cluster (v1.34), so
# `helm template` renders for the Kubernetes the chart is tested on.
HELM_VERSION=v3.19.5
KUBE_MINOR=34
KUBECONFORM_VERSION=v0.8.0

CACHE=${RIFFLE_CACHE:-$HOME/.cache/riffle}
OUT=$CACHE/tools-helm-$HELM_VERSION-kubeconform-$KUBECONFORM_VERSION

log() { printf 'tools: %s\n' "$*" >&2; }

# Bumped when the build flags change, so tools built the old way are rebuilt.
RECIPE=2
if [[ -x $OUT/bin/helm && -x $OUT/bin/kubeconform && $(cat "$OUT/.recipe" 2>/dev/null) == "$RECIPE" ]]; then
    echo "$OUT/bin"
    exit 0
fi

command -v go >/dev/null || { log "go is required to build helm and kubeconform"; exit 1; }

# Built into a temporary sibling and renamed, so an interrupted build never looks complete.
tmp=$OUT.tmp.$$
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
log "building helm $HELM_VERSION and kubeconform $KUBECONFORM_VERSION into $OUT (a few minutes, once)"

# The stamps helm's own Makefile sets: without them `helm version` reports a bare minor, and
# lint/template assume the Kubernetes version of a newer client-go.
helm_ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
helm_ld+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    helm_ld+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$KUBE_MINOR"
done

# GOFLAGS from the caller (e.g. -mod=vendor) must not leak into module-mode installs.
export GOBIN=$tmp/bin CGO_ENABLED=0 GOFLAGS=
nice -n 10 go install -trimpath -ldflags "$helm_ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
nice -n 10 go install -trimpath -ldflags "-s -w -X main.version=$KUBECONFORM_VERSION" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" >&2

echo "$RECIPE" >"$tmp/.recipe"
rm -rf "$OUT"
mv "$tmp" "$OUT"
trap - EXIT
log "built: $("$OUT/bin/helm" version --short), kubeconform $("$OUT/bin/kubeconform" -v)"
echo "$OUT/bin"
