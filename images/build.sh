#!/usr/bin/env bash
# Builds the Riffle container images without Docker: static release binaries of `riffle` and
# `riffle-operator`, each packed alone into an OCI image archive by ocimage (the e2e cluster's
# image writer), running as the numeric user 65532 with the binary as entrypoint.
#
#   target/images/riffle.tar           riffle.local/riffle:<tag>
#   target/images/riffle-operator.tar  riffle.local/riffle-operator:<tag>
#   target/images/TAG                  <tag>
#
# <tag> is <workspace version>-<short git sha>; when the build inputs have uncommitted
# changes, -dirty-<hash of those changes> is appended, so an image of different sources never
# reuses a tag, and both images built from the same sources share one (the chart takes one
# tag for both). IMAGE_TAG overrides it.
#
# Static linking uses glibc's libc.a (the musl target is not required): the binaries need
# nothing from the image, which holds only them. A separate target directory keeps these
# RUSTFLAGS from invalidating the normal build.
#
# Usage: images/build.sh [riffle|riffle-operator]...   (default: both)
# Exits non-zero if any requested image could not be built; the others are still written.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
CARGO=${CARGO:-cargo}
CACHE=${RIFFLE_CACHE:-$HOME/.cache/riffle}
TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=$ROOT/target/static
OUT=$ROOT/target/images
REPO_PREFIX=${IMAGE_REPO_PREFIX:-riffle.local}
USER_ID=65532

log() { printf 'images: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

images=("$@")
(( ${#images[@]} )) || images=(riffle riffle-operator)
for image in "${images[@]}"; do
    case $image in riffle | riffle-operator) ;; *) die "unknown image $image (riffle, riffle-operator)" ;; esac
done

# ocimage is built by the e2e cluster's build script; build just that part if it is missing.
OCIMAGE=$CACHE/nodekit-current/bin/ocimage
if [[ ! -x $OCIMAGE ]]; then
    log "building ocimage (e2e/cluster/build.sh nodekit)"
    e2e/cluster/build.sh nodekit >&2
fi
[[ -x $OCIMAGE ]] || die "ocimage not found at $OCIMAGE"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[[ -n $version ]] || die "no [workspace.package] version in Cargo.toml"
sha=$(git rev-parse --short=7 HEAD)
revision=$(git rev-parse HEAD)
inputs=(Cargo.toml Cargo.lock dataplane operator)
if [[ -n ${IMAGE_TAG:-} ]]; then
    tag=$IMAGE_TAG
elif [[ -n $(git status --porcelain -- "${inputs[@]}") ]]; then
    changes=$({ git diff HEAD -- "${inputs[@]}"
                git ls-files --others --exclude-standard -z -- "${inputs[@]}" | xargs -0r sha256sum
              } | sha256sum | cut -c1-8)
    tag=$version-$sha-dirty-$changes
else
    tag=$version-$sha
fi
[[ $tag != latest ]] || die "refusing the tag 'latest': kubelet would always try to pull it"

mkdir -p "$OUT/bin"
built=()
failed=()
# cargo_static PACKAGE... builds each package's binary of the same name.
cargo_static() {
    local args=() p
    for p in "$@"; do args+=(-p "$p" --bin "$p"); done
    RUSTFLAGS="-C target-feature=+crt-static" nice -n 10 \
        "$CARGO" build --release --locked --target "$TARGET" --target-dir "$TARGET_DIR" "${args[@]}" >&2
}
log "building ${images[*]} (static, release, $TARGET)"
if cargo_static "${images[@]}"; then
    built=("${images[@]}")
elif (( ${#images[@]} > 1 )); then
    # Find out which one is broken and still package the other.
    for image in "${images[@]}"; do
        if cargo_static "$image"; then built+=("$image"); else failed+=("$image"); fi
    done
else
    failed=("${images[@]}")
fi

for image in "${built[@]}"; do
    bin=$OUT/bin/$image
    # Debug line tables stay in target/; the image carries symbols only.
    objcopy --strip-debug "$TARGET_DIR/$TARGET/release/$image" "$bin"
    linkage=$(ldd "$bin" 2>&1 || true)
    case $linkage in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) die "$image is dynamically linked: $linkage" ;;
    esac
    log "$image: static ($(du -h "$bin" | cut -f1)): ldd says: $linkage"
done

if (( ${#built[@]} )); then
    for image in "${built[@]}"; do
        name=$REPO_PREFIX/$image:$tag
        archive=$OUT/$image.tar
        "$OCIMAGE" -name "$name" -add "$OUT/bin/$image:/$image" -entrypoint "/$image" -o "$archive"
        digest=$(images/oci-config.py "$archive" --user "$USER_ID:$USER_ID" \
            --label "org.opencontainers.image.title=$image" \
            --label "org.opencontainers.image.version=$tag" \
            --label "org.opencontainers.image.revision=$revision" \
            --label "org.opencontainers.image.source=https://github.com/riffle-dev/riffle")
        log "$name -> $archive ($(du -h "$archive" | cut -f1), manifest $digest)"
    done
    echo "$tag" >"$OUT/TAG"
    echo "$tag"
fi

if (( ${#failed[@]} )); then
    # An archive left from an earlier build must not pass for this one.
    for image in "${failed[@]}"; do rm -f "$OUT/$image.tar"; done
    die "not built: ${failed[*]} (see the cargo errors above)"
fi
