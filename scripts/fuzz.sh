#!/usr/bin/env bash
# Runs every cargo-fuzz target of the project for a short time each. Installs cargo-fuzz on
# first use; fuzzing needs the nightly toolchain.
set -euo pipefail
seconds=${1:-20}
cd "$(dirname "$0")/.."
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing; installing it with rustup" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
for project in dataplane/*/fuzz; do
  [ -f "$project/Cargo.toml" ] || continue
  for target in $(cd "$project" && cargo +nightly fuzz list); do
    echo "fuzz: $project $target for ${seconds}s"
    (cd "$project" && cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=0 2>&1 | tail -n 3)
  done
done
echo "fuzz: all targets ran without a crash"
