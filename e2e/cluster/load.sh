#!/usr/bin/env bash
# Imports OCI or Docker image archives into the e2e node's containerd, where kubelet finds
# them (namespace k8s.io). Pods must then use imagePullPolicy IfNotPresent or Never, since
# no registry is reachable.
#
# Usage: load.sh IMAGE.tar [IMAGE.tar...]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

(( $# > 0 )) || die "usage: $0 IMAGE.tar [IMAGE.tar...]"
[[ $EUID -eq 0 ]] || die "load.sh must run as root (containerd's socket is root-only)"
sock=$RUN/containerd.sock
ctr --address "$sock" version >/dev/null 2>&1 ||
  die "the e2e cluster's containerd is not running ($sock); start it with e2e/cluster/up.sh"

for archive in "$@"; do
  [[ -f $archive ]] || die "no such image archive: $archive"
  # --all-platforms: an index listing another architecture first must not fail the import.
  out=$(ctr --address "$sock" -n k8s.io images import --all-platforms "$archive" 2>&1) ||
    die "importing $archive failed: $out"
  step "imported $archive:"
  sed -n 's/^unpacking \(.*\) (sha256:.*/  \1/p' <<<"$out"
done
