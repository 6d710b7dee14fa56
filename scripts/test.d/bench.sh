#!/usr/bin/env bash
# Benchmarks are not tests: this only checks that the criterion benches compile, that the
# matrix runs end to end (bench/matrix.sh --smoke) and that rooms-bench and pool-bench run. No
# timing is asserted. Everything runs from the suite's shared release build (scripts/lib.sh),
# which also builds the benches; matrix.sh is told not to build its own (GOTALK_PREBUILT=1).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. scripts/lib.sh
T=$(target_dir) || { echo "RESULT passed=0 failed=1"; exit 1; }
passed=0
failed=0
check() {
  local name=$1; shift
  if "$@"; then
    echo "bench: $name ... ok"; passed=$((passed + 1))
  else
    echo "bench: $name ... FAILED"; failed=$((failed + 1))
  fi
}
check "release build (benches, bins, examples)" release_build -q
export GOTALK_PREBUILT=1
out=$(mktemp)
check "matrix --smoke" bash -c "bench/matrix.sh --smoke | tee '$out'"
# Every point of the smoke pass must have produced a floor and a gotalk figure.
for p in a b c d e f; do
  check "matrix point ($p) has figures" \
    grep -Eq "^\| $p \| [^|]+\| [^|]+\| [0-9.]+ \| [0-9.]+ \|" "$out"
done
# --external: a column for another gotalk server started by a command (here our own server,
# standing in for the reference Go one), driven by gotalk's load generator at (a) and (f).
check "matrix --external" bash -c "bench/matrix.sh --smoke --points af \
  --external 'self=$T/release/echo-server --proto gotalk --addr {addr}' | tee '$out'"
for p in a f; do
  check "matrix --external point ($p) has figures" \
    grep -Eq "^\| $p \| [^|]+\| [^|]+\| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [^|]*\| [0-9.]+ \| [0-9.]+ \|" "$out"
done
# Rooms: a small fan-out (hub and hand loops) and cross-process latency through a redis-server
# that rooms-bench starts itself; each must print its RESULT line.
check "rooms-bench fanout smoke" bash -c "timeout 120 '$T/release/rooms-bench' --mode fanout \
  --members 50 --broadcasts 20 --rounds 1 | tee '$out' | grep -Eq '^RESULT mode=fanout .*hub_per_s=[0-9]+'"
check "rooms-bench latency smoke" bash -c "timeout 120 '$T/release/rooms-bench' --mode latency \
  --count 50 --interval-us 2000 | tee '$out' | grep -Eq '^RESULT mode=latency count=50 p50_us=[0-9]+'"
# The pool benchmarks (bench/src/bin/pool-bench.rs): every part must print its figures.
check "pool-bench --smoke" bash -c "timeout 300 '$T/release/pool-bench' --smoke | tee '$out'"
check "pool-bench scaling has figures" grep -Eq "^\| 4 \| 128 \| [0-9]+ \| [0-9.]+ \|" "$out"
check "pool-bench slow has figures" grep -Eq "^\| round-robin \| [0-9]+ \| [0-9.]+ \|" "$out"
check "pool-bench cost has figures" grep -Eq "^\| Pool of one \| [0-9]+ \|" "$out"
rm -f "$out"
echo "RESULT passed=$passed failed=$failed"
[ "$failed" -eq 0 ]
