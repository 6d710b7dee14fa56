#!/usr/bin/env bash
# Regression check between two revisions by instruction counts (valgrind's callgrind), which
# repeat from run to run where wall-clock figures on a shared machine do not.
#
#   bench/regress.sh BASE_REV [HEAD_REV]      HEAD_REV defaults to HEAD (committed state only)
#
# Builds both revisions' echo-server and load-gen (release) in git worktrees under a temp dir,
# then, for each load (1 conn x 1 and x 64 in flight with 16 B echoes, 1 x 8 with 1 MiB) and
# each side (server, client), runs that side under callgrind against the other side running
# natively, once for a short and once for a long window, and takes the *marginal* instructions
# per request:
#
#   (Ir_long - Ir_short) / (requests_long - requests_short)
#
# which cancels start-up, connection set-up and shutdown. The side under callgrind runs on a
# current-thread tokio runtime (--threads 0): with two workers, how often they wake and steal
# from each other depends on timing and moved the counts by up to 8 % between identical runs.
# A pair of runs whose rates differ too much (the long one more than a third slower or twice
# as fast: the machine got busier or quieter in between; the short one is always somewhat
# slower while valgrind translates code) is run again, up to 3 times. Each figure is the median
# of $REGRESS_REPEAT such measurements, base and head alternating. Prints a markdown table
# BASE / HEAD / ratio, flags
# every ratio above $REGRESS_LIMIT with REGRESSION, and exits 1 if any is flagged (2 if
# something failed).
#
# Environment:
#   REGRESS_SECONDS="2 5"        short and long window (s) for the 16 B loads
#   REGRESS_SECONDS_1MIB="1 2.5" the same for the 1 MiB load
#   REGRESS_REPEAT=3             measurements per figure (the median is shown)
#   REGRESS_LOADS="1x1 1x64 1MiB" the loads to measure (any of these three)
#   REGRESS_LIMIT=1.10           ratio HEAD / BASE above which a figure is a regression
#   REGRESS_TARGET_DIR=DIR       cargo target dir shared by both builds (default regress/
#                                in this checkout's target directory, the one cargo reports
#                                (CARGO_TARGET_DIR or ./target): dependencies are built once
#                                and kept for the next run)
#   TMPDIR                       where the temp dir with the worktrees goes (default /tmp)
#
# Needs valgrind. Works for every revision since bench/ was added; one whose load-gen has no
# --threads (before --threads was added) makes both sides run on the default runtime, noisier.
set -euo pipefail

die() {
  echo "regress: $*" >&2
  exit 2
}

if [ $# -lt 1 ] || [ $# -gt 2 ]; then die "usage: bench/regress.sh BASE_REV [HEAD_REV]"; fi
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
base_rev=$1
head_rev=${2:-HEAD}
base=$(git -C "$root" rev-parse --verify --quiet "$base_rev^{commit}") ||
  die "not a revision: $base_rev"
head=$(git -C "$root" rev-parse --verify --quiet "$head_rev^{commit}") ||
  die "not a revision: $head_rev"
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
read -r short long <<<"${REGRESS_SECONDS:-2 5}"
read -r short_mib long_mib <<<"${REGRESS_SECONDS_1MIB:-1 2.5}"
limit=${REGRESS_LIMIT:-1.10}
repeat=${REGRESS_REPEAT:-3}
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "REGRESS_REPEAT must be a positive number"
if [ -z "${REGRESS_TARGET_DIR:-}" ]; then
  . "$root/scripts/lib.sh"
  REGRESS_TARGET_DIR=$(target_dir "$root/Cargo.toml")/regress || die "no target directory"
fi
target_dir=$REGRESS_TARGET_DIR
loads=()
for l in ${REGRESS_LOADS:-1x1 1x64 1MiB}; do
  case $l in
    1x1) loads+=("1 1 16 $short $long 1×1, 16 B") ;;
    1x64) loads+=("1 64 16 $short $long 1×64, 16 B") ;;
    1MiB) loads+=("1 8 1048576 $short_mib $long_mib 1×8, 1 MiB") ;;
    *) die "REGRESS_LOADS: unknown load $l (1x1, 1x64, 1MiB)" ;;
  esac
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gotalk-regress.XXXXXX")
worktrees=()
server_pid=
child_pid=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # SIGTERM, not SIGINT: a non-interactive shell starts background jobs with SIGINT ignored.
  if [ -n "$child_pid" ]; then
    # Its own process group: cargo's rustc jobs go too.
    kill -TERM -- "-$child_pid" 2>/dev/null || true
    { wait "$child_pid" || true; } 2>/dev/null
  fi
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    { wait "$server_pid" || true; } 2>/dev/null
  fi
  for w in ${worktrees[@]+"${worktrees[@]}"}; do
    git -C "$root" worktree remove --force "$w" 2>/dev/null || true
  done
  git -C "$root" worktree prune 2>/dev/null || true
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_background CMD...: runs CMD as a background job in a process group of its own and waits
# for it, so that a signal to this script is handled at once (bash runs traps only between
# foreground commands) and the cleanup can stop CMD and its children. Returns CMD's status.
in_background() {
  setsid "$@" &
  child_pid=$!
  local status=0
  wait "$child_pid" || status=$?
  child_pid=
  return "$status"
}

# build NAME SHA: builds the binaries of SHA in a worktree; they end up in $tmp/NAME/bin.
build() {
  local name=$1 sha=$2 wt=$tmp/$1/src
  echo "regress: building $name ${sha:0:9} ($(git -C "$root" log -1 --format=%s "$sha"))" >&2
  git -C "$root" worktree add --detach --quiet "$wt" "$sha"
  worktrees+=("$wt")
  in_background env -C "$wt" CARGO_TARGET_DIR="$target_dir" \
    cargo build --release -q -p gotalk-bench --bins </dev/null ||
    die "build of $name (${sha:0:9}) failed"
  mkdir -p "$tmp/$name/bin"
  cp "$target_dir/release/echo-server" "$target_dir/release/load-gen" "$tmp/$name/bin/"
}

build base "$base"
if [ "$head" = "$base" ]; then
  mkdir -p "$tmp/head/bin"
  cp "$tmp/base/bin/"* "$tmp/head/bin/"
  ln -s "$tmp/base/src" "$tmp/head/src"
else
  build head "$head"
fi

# The runtime of the side under callgrind (see above), if both revisions know --threads.
runtime=(--threads 0)
for name in base head; do
  if ! grep -q '"threads"' "$tmp/$name/src/bench/src/lib.rs" 2>/dev/null; then
    echo "regress: $name's load-gen has no --threads: default runtimes, noisier counts" >&2
    runtime=()
  fi
done

runs=0
# measure BIN SIDE CONNS INFLIGHT SIZE SECS: one run with SIDE (server or client) under
# callgrind; sets $ir (instructions of that process) and $requests (counted by the load).
measure() {
  local bin=$1 side=$2 conns=$3 inflight=$4 size=$5 secs=$6
  runs=$((runs + 1))
  local n=$runs
  local cg=(valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$n" --log-file="$tmp/vg.$n")
  local srv=("$bin/echo-server" --proto gotalk --addr 127.0.0.1:0)
  local load=("$bin/load-gen" --proto gotalk --conns "$conns" --inflight "$inflight"
    --size "$size" --duration "$secs" --warmup 0)
  if [ "$side" = server ]; then
    srv=("${cg[@]}" "${srv[@]}" ${runtime[@]+"${runtime[@]}"})
  else
    load=("${cg[@]}" "${load[@]}" ${runtime[@]+"${runtime[@]}"})
  fi

  # The file exists before the server starts writing to it (the redirection happens in the
  # background job, which may not have run yet when the loop below first looks).
  : >"$tmp/srv.$n"
  "${srv[@]}" >>"$tmp/srv.$n" 2>"$tmp/srv.$n.err" </dev/null &
  server_pid=$!
  local addr="" _
  for _ in $(seq 600); do
    addr=$(sed -n 's/^LISTENING //p' "$tmp/srv.$n")
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$addr" ] || die "echo-server did not start: $(cat "$tmp/srv.$n.err")"
  in_background "${load[@]}" --addr "$addr" >"$tmp/load.$n" 2>"$tmp/load.$n.err" </dev/null ||
    die "load-gen failed: $(cat "$tmp/load.$n" "$tmp/load.$n.err")"
  local out
  out=$(cat "$tmp/load.$n")
  kill -TERM "$server_pid" 2>/dev/null || true
  { wait "$server_pid" || true; } 2>/dev/null
  server_pid=
  requests=$(sed -n 's/^RESULT .* requests=\([0-9]*\) .*/\1/p' <<<"$out")
  [ -n "$requests" ] || die "load-gen printed no request count: $out"
  ir=$(sed -n 's/^summary: *//p' "$tmp/cg.$n" 2>/dev/null)
  [ -n "$ir" ] || die "no callgrind summary in $tmp/cg.$n (see $tmp/vg.$n)"
  rm -f "$tmp/cg.$n"
}

# marginal NAME SIDE CONNS INFLIGHT SIZE SHORT LONG: sets $per (instructions per request).
marginal() {
  local name=$1 side=$2 conns=$3 inflight=$4 size=$5 s1=$6 s2=$7 attempt ir1 req1
  for attempt in 1 2 3; do
    measure "$tmp/$name/bin" "$side" "$conns" "$inflight" "$size" "$s1"
    ir1=$ir req1=$requests
    measure "$tmp/$name/bin" "$side" "$conns" "$inflight" "$size" "$s2"
    per=$(awk -v a="$ir1" -v b="$ir" -v x="$req1" -v y="$requests" \
      'BEGIN { printf "%.0f", (y > x ? (b - a) / (y - x) : 0) }')
    echo "regress:   $name: $req1 / $requests requests, $ir1 / $ir Ir -> $per Ir/req" >&2
    # Both runs should have gone at about the same rate: if the machine got busier or
    # quieter in between, the extra requests are not what the extra instructions did. (The
    # short run starts slower while valgrind translates code: up to 2x is let through.)
    if awk -v x="$req1" -v y="$requests" -v s="$s1" -v t="$s2" \
      'BEGIN { r = (y / t) / (x > 0 ? x / s : 1); exit !(r > 2 / 3 && r < 2) }'; then
      return
    fi
    echo "regress:   $name: the two runs went at different rates; again ($attempt/3)" >&2
  done
  [ "$per" -gt 0 ] || die "$name $side: the long run did no more requests than the short one"
}

# median N...: the median of the numbers.
median() {
  printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END {
    printf "%.0f", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# spread N...: (max - min) / median, in %.
spread() {
  local m
  m=$(median "$@")
  printf '%s\n' "$@" | sort -n | awk -v m="$m" '{ v[NR] = $1 } END {
    printf "%.1f", (m > 0 ? (v[NR] - v[1]) * 100 / m : 0) }'
}

rows=()
flagged=0
for l in "${loads[@]}"; do
  read -r conns inflight size s1 s2 label <<<"$l"
  for side in server client; do
    echo "regress: $label, $side under callgrind (${s1} s and ${s2} s runs, ×$repeat)" >&2
    bs=()
    hs=()
    for _ in $(seq "$repeat"); do
      # Base and head alternate, so that both see the same machine.
      marginal base "$side" "$conns" "$inflight" "$size" "$s1" "$s2"
      bs+=("$per")
      marginal head "$side" "$conns" "$inflight" "$size" "$s1" "$s2"
      hs+=("$per")
    done
    b=$(median "${bs[@]}")
    h=$(median "${hs[@]}")
    ratio=$(awk -v b="$b" -v h="$h" 'BEGIN { printf "%.3f", (b > 0 ? h / b : 0) }')
    noise=
    if [ "$repeat" -gt 1 ]; then
      noise="$(spread "${bs[@]}") / $(spread "${hs[@]}")"
    fi
    flag=
    if awk -v r="$ratio" -v l="$limit" 'BEGIN { exit !(r > l) }'; then
      flag=REGRESSION
      flagged=$((flagged + 1))
    fi
    rows+=("| $label | $side | $b | $h | $ratio | $noise | $flag |")
  done
done

echo
echo "Instructions per request (callgrind Ir, marginal between ${short} s and ${long} s runs;" \
  "1 MiB: ${short_mib} s and ${long_mib} s; median of $repeat), base ${base:0:9} vs head" \
  "${head:0:9}${runtime[0]:+; side under callgrind on a current-thread runtime}:"
echo
echo "| load | side | base | head | head / base | spread % base / head | > $limit |"
echo "|---|---|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo
if [ "$flagged" -gt 0 ]; then
  echo "regress: $flagged figure(s) grew more than ${limit}× (REGRESSION)"
  exit 1
fi
echo "regress: no figure grew more than ${limit}×"
