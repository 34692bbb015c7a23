#!/usr/bin/env bash
# Builds every binary and image the e2e cluster runs, from the Go module proxy, into a
# cache outside the work tree. Each part is rebuilt only when its tool module changes.
#
# Usage: build.sh [kubernetes|etcd|coredns|nodekit]...   (default: all)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

mkdir -p "$LOGS" "$CACHE"

# Bumped when the flags below change, so cached binaries built the old way are not reused.
BUILD_RECIPE=1

# stamp_of prints a hash of everything that determines a tool module's output.
stamp_of() {
  local dir=$1
  { echo "recipe $BUILD_RECIPE $(go env GOVERSION)"
    find "$dir" -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
      sort -z | xargs -0 sha256sum | sed "s#$dir/##"
  } | sha256sum | cut -c1-16
}

# go_build compiles main packages of a tool module into $out/bin, atomically: a failed or
# interrupted build never leaves a half-filled bin directory that looks complete.
#   go_build NAME MODULE_DIR OUT_DIR LDFLAGS PACKAGE...
go_build() {
  local name=$1 dir=$2 out=$3 ldflags=$4; shift 4
  local stamp log=$LOGS/build-$name.log
  stamp=$(stamp_of "$dir")
  if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]]; then
    step "$name: cached in $out/bin"
    return 0
  fi
  step "$name: building $* (log: $log)"
  local tmp=$out.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp/bin"
  local start; start=$(date +%s)
  # nice: the machine is shared with other compilers; CGO off: static binaries with no
  # dependency on the host's libc.
  if ! (cd "$dir" && CGO_ENABLED=0 nice -n 15 go build -trimpath -ldflags "$ldflags" \
          -o "$tmp/bin/" "$@") >"$log" 2>&1; then
    rm -rf "$tmp"
    die "building $name failed (module $dir)" "$log"
  fi
  # A main package named after a major-version path element (etcd's server/v3 builds as
  # "server") gets its proper name here, before the directory is published.
  if [[ -n ${RENAME:-} ]]; then mv "$tmp/bin/${RENAME%%:*}" "$tmp/bin/${RENAME#*:}"; fi
  echo "$stamp" >"$tmp/.stamp"
  rm -rf "$out"; mv "$tmp" "$out"
  step "$name: built in $(( $(date +%s) - start ))s"
}

build_kubernetes() {
  local dir=$TOOLS_DIR/kubernetes ver
  ver=$(gomod_version "$dir" k8s.io/kubernetes)
  local minor=${ver#v1.}; minor=${minor%%.*}
  # Without these stamps every binary reports v0.0.0-master, which kubelet/apiserver version
  # skew checks and kubectl reject.
  local ld="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$ver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  go_build kubernetes "$dir" "$CACHE/k8s-$ver" "$ld" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir=$TOOLS_DIR/etcd ver
  ver=$(gomod_version "$dir" go.etcd.io/etcd/server/v3)
  RENAME=server:etcd go_build etcd "$dir" "$CACHE/etcd-$ver" "-s -w" go.etcd.io/etcd/server/v3
}

build_coredns() {
  local dir=$TOOLS_DIR/coredns ver
  ver=$(gomod_version "$dir" github.com/coredns/coredns)
  go_build coredns "$dir" "$CACHE/coredns-$ver" "-s -w" github.com/coredns/coredns
}

# Our own helpers (pause, toolbox, image packer, volume provisioner) plus the two images made
# from them. Keyed by a hash of their source since they have no upstream version.
build_nodekit() {
  local dir=$TOOLS_DIR/nodekit out
  out=$CACHE/nodekit-$(stamp_of "$dir")
  go_build nodekit "$dir" "$out" "-s -w" ./cmd/...
  if [[ ! -f $out/images/toolbox.tar ]]; then
    mkdir -p "$out/images"
    "$out/bin/ocimage" -name "$PAUSE_IMAGE" -add "$out/bin/pause:/pause" \
      -entrypoint /pause -o "$out/images/pause.tar.tmp"
    "$out/bin/ocimage" -name "$TOOLBOX_IMAGE" -add "$out/bin/toolbox:/toolbox" \
      -entrypoint /toolbox -o "$out/images/toolbox.tar.tmp"
    mv "$out/images/pause.tar.tmp" "$out/images/pause.tar"
    mv "$out/images/toolbox.tar.tmp" "$out/images/toolbox.tar"
  fi
  ln -sfn "$out" "$CACHE/nodekit-current"
  # Older builds of our own helpers are never used again.
  local old
  for old in "$CACHE"/nodekit-*; do
    [[ $old == "$out" || $old == "$CACHE/nodekit-current" ]] || rm -rf "$old"
  done
}

command -v go >/dev/null || die "go is not installed; the cluster is built from the Go module proxy"
parts=("$@"); (( ${#parts[@]} )) || parts=(nodekit etcd coredns kubernetes)
for p in "${parts[@]}"; do
  case $p in
    kubernetes|etcd|coredns|nodekit) "build_$p" ;;
    *) die "unknown part '$p' (kubernetes, etcd, coredns, nodekit)" ;;
  esac
done
