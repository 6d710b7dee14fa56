#!/usr/bin/env bash
# Benchmarks are not tests: this only checks that the criterion benches compile and that the
# matrix and the pool benchmarks run end to end (bench/matrix.sh --smoke, pool-bench --smoke).
# No timing is asserted.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
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
check "cargo bench --no-run" cargo bench --no-run -q -p gotalk-bench
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
  --external 'self=target/release/echo-server --proto gotalk --addr {addr}' | tee '$out'"
for p in a f; do
  check "matrix --external point ($p) has figures" \
    grep -Eq "^\| $p \| [^|]+\| [^|]+\| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [^|]*\| [0-9.]+ \| [0-9.]+ \|" "$out"
done
# The pool benchmarks (bench/src/bin/pool-bench.rs): every part must print its figures.
check "pool-bench --smoke" bash -c "target/release/pool-bench --smoke | tee '$out'"
check "pool-bench scaling has figures" grep -Eq "^\| 4 \| 128 \| [0-9]+ \| [0-9.]+ \|" "$out"
check "pool-bench slow has figures" grep -Eq "^\| round-robin \| [0-9]+ \| [0-9.]+ \|" "$out"
check "pool-bench cost has figures" grep -Eq "^\| Pool of one \| [0-9]+ \|" "$out"
rm -f "$out"
echo "RESULT passed=$passed failed=$failed"
[ "$failed" -eq 0 ]
