#!/usr/bin/env bash
# JS unit tests of gotalk.js (Node's built-in test runner), including the d.ts type test.
set -uo pipefail
cd "$(dirname "$0")/../../gotalk/js"
if [ ! -d node_modules ]; then
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund >/dev/null 2>&1 || npm install --no-audit --no-fund >/dev/null 2>&1; else npm install --no-audit --no-fund >/dev/null 2>&1; fi
fi
out=$(mktemp)
node --test test/ 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
p=$(grep -E '^# pass [0-9]+' "$out" | awk '{s+=$3} END {print s+0}')
f=$(grep -E '^# fail [0-9]+' "$out" | awk '{s+=$3} END {print s+0}')
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
echo "RESULT passed=$p failed=$f"
exit "$rc"
