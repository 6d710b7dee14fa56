#!/usr/bin/env bash
# Browser end-to-end tests: gotalk.js in headless Chromium (driven by playwright-core) against
# the Rust WebSocket server (examples websocket-test-server, websocket-chat, websocket-minimal)
# and the demo (`gotalk serve`).
# Installs what it needs: Debian's chromium when /usr/bin/chromium is missing, npm packages.
# rooms.test.js starts its own redis-server (scripts/test installs Debian's package).
# The servers come from the suite's shared release build (scripts/lib.sh), in the target
# directory cargo reports.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. scripts/lib.sh

result() { echo "RESULT passed=$1 failed=$2"; exit "$3"; }

if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM:-}" ]; then
  echo "installing chromium (apt-get)"
  if ! apt_install chromium >/tmp/gotalk-apt-chromium.log 2>&1; then
    tail -20 /tmp/gotalk-apt-chromium.log
    echo "could not install chromium"; result 0 1 1
  fi
fi

cd "$ROOT/gotalk/js/e2e"
if [ ! -d node_modules/playwright-core ]; then
  echo "installing playwright-core (npm ci)"
  if ! npm ci --no-audit --no-fund >/tmp/gotalk-e2e-npm.log 2>&1; then
    tail -20 /tmp/gotalk-e2e-npm.log
    echo "npm ci failed"; result 0 1 1
  fi
fi

cd "$ROOT"
echo "building the test servers (the shared release build)"
if ! release_build -q; then
  echo "cargo build failed"; result 0 1 1
fi
GOTALK_TARGET_DIR=$(target_dir) || result 0 1 1
export GOTALK_TARGET_DIR

# typed-web --check drives its own page in headless Chromium (so it runs here, after the
# install above, rather than with the other examples).
self_checks_passed=0
self_checks_failed=0
if timeout 90 "$GOTALK_TARGET_DIR/release/examples/typed-web" --check; then
  echo "example typed-web --check ... ok"; self_checks_passed=1
else
  echo "example typed-web --check ... FAILED"; self_checks_failed=1
fi

cd "$ROOT/gotalk/js/e2e"
out=$(mktemp)
timeout 600 node --test --test-concurrency=1 ./*.test.js 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
p=$(grep -E '^# pass [0-9]+' "$out" | awk '{s+=$3} END {print s+0}')
f=$(grep -E '^# fail [0-9]+' "$out" | awk '{s+=$3} END {print s+0}')
rm -f "$out"
[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
p=$((p + self_checks_passed)); f=$((f + self_checks_failed))
[ "$self_checks_failed" -ne 0 ] && rc=1
result "$p" "$f" "$rc"
