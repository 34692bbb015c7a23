#!/usr/bin/env bash
# Copies the generated CRDs from the repository's crds/ into the chart's crds/ (Helm installs
# that folder before the templates). With --check, changes nothing and fails if the two differ,
# so a CRD regenerated without re-syncing the chart is caught by `make chart-lint`.
#
# Usage: sync-crds.sh [--check]
set -euo pipefail

chart=$(cd "$(dirname "$0")/.." && pwd)
src=$(cd "$chart/../.." && pwd)/crds
dst=$chart/crds

if [[ ${1:-} == --check ]]; then
    if ! diff -r "$src" "$dst" >&2; then
        echo "chart CRDs differ from crds/: run charts/riffle/scripts/sync-crds.sh" >&2
        exit 1
    fi
    echo "chart CRDs match crds/"
    exit 0
fi

mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "$src"/*.yaml "$dst"/
echo "synced $(ls "$dst" | wc -l) CRD file(s) into $dst"
