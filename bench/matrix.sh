#!/usr/bin/env bash
# The end-to-end benchmark matrix: gotalk against the raw tokio floor, server and load
# generator as separate processes on loopback. Prints a markdown table (see BENCHMARKS.md).
#
#   bench/matrix.sh                  every point, 3 rounds of 3 s runs ($BENCH_SECONDS and
#                                    $BENCH_REPEAT to change); medians, per-round ratio ranges
#   bench/matrix.sh --repeat 5       5 rounds per point
#   bench/matrix.sh --pin            servers on CPU 0, load generators on CPU 1 (taskset)
#   bench/matrix.sh --points ab      only some points
#   bench/matrix.sh --smoke          one round of 0.2 s per point, 200 idle connections:
#                                    checks it runs
#   bench/matrix.sh --peers          also tarpc and jsonrpsee at points (a)-(e): builds the
#                                    bench/peers crate (outside the workspace) first
#   bench/matrix.sh --external 'go=/path/to/go-echo -addr {addr}'
#                                    a column for another gotalk server (the reference Go
#                                    one, say) at (a)-(f), driven by gotalk's load generator
#
# Extra arguments go to the `matrix` binary (--seconds S, --warmup S, --idle N, --points ...,
# --repeat N, --pin, --external NAME=COMMAND); see bench/src/bin/matrix.rs.
#
# Binaries are looked for where cargo builds (CARGO_TARGET_DIR, a config's build.target-dir,
# or ./target). GOTALK_PREBUILT=1 skips the build (scripts/test's bench stage: its shared
# release build made them, with the features of the whole workspace; measure with binaries
# this script builds, which leave the dev-dependencies' features out, e.g. tokio's test-util).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
args=()
peers=
for a in "$@"; do
  if [ "$a" = --peers ]; then peers=1; else args+=("$a"); fi
done
# (f) holds 10,000 idle connections: each process needs that many file descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ -n "${GOTALK_PREBUILT:-}" ] || cargo build --release -q -p gotalk-bench --bins
if [ -n "$peers" ]; then
  cargo build --release -q --manifest-path bench/peers/Cargo.toml --bins
  args+=(--peers "tarpc,jsonrpsee" --peer-dir "$(target_dir bench/peers/Cargo.toml)/release")
fi
exec "$(target_dir)/release/matrix" ${args[@]+"${args[@]}"}
