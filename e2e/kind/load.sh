#!/usr/bin/env bash
# Loads OCI or Docker image archives into the kind cluster's node.
# Usage: load.sh IMAGE.tar [IMAGE.tar...]
set -euo pipefail
# shellcheck source=../cluster/lib.sh
source "$(dirname "$0")/../cluster/lib.sh"
# shellcheck source=kind.env
source "$(dirname "$0")/kind.env"

(( $# > 0 )) || die "usage: $0 IMAGE.tar [IMAGE.tar...]"
kind=$(kind_bin)
for archive in "$@"; do
  [[ -f $archive ]] || die "no such image archive: $archive"
  "$kind" load image-archive --name "$KIND_CLUSTER" "$archive"
done
