# Shared by scripts/test, scripts/test.d/*.sh and bench/*.sh (sourced, not run): where cargo
# puts what it builds, the one release build the suite's stages share, and apt installs that
# wait for another install to finish.

# target_dir [MANIFEST]: the directory cargo builds into for the workspace of MANIFEST (this
# repository's by default), as cargo itself reports it: CARGO_TARGET_DIR, build.target-dir in
# a config file, or ./target. scripts/test exports it as GOTALK_TARGET_DIR for the stages.
target_dir() {
  if [ $# -eq 0 ] && [ -n "${GOTALK_TARGET_DIR:-}" ]; then
    echo "$GOTALK_TARGET_DIR"
    return
  fi
  local manifest=${1:-"$(dirname "${BASH_SOURCE[0]}")/../Cargo.toml"} dir
  dir=$(cargo metadata --format-version 1 --no-deps --manifest-path "$manifest" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  if [ -z "$dir" ]; then
    echo "could not read the target directory from cargo metadata ($manifest)" >&2
    return 1
  fi
  echo "$dir"
}

# release_build: the suite's one release build, of every binary, example and bench of the
# workspace in one cargo invocation, so that features are resolved once and no crate is
# compiled twice. Separate invocations (`-p gotalk --example x`, `-p gotalk-cli --bin gotalk`,
# `cargo bench --no-run`) each resolve features their own way, and each such set rebuilt
# gotalk and part of its dependencies. Every stage that needs a release binary calls this:
# the first call builds, the others find everything fresh (about a second).
release_build() {
  cargo build --release --workspace --bins --examples --benches "$@"
}

# apt_install PACKAGE...: installs Debian packages (with sudo unless root). Another install in
# progress is waited for, up to 10 minutes, instead of failing at once: dpkg's lock through
# DPkg::Lock::Timeout; the package lists' lock, which that option does not cover, by trying
# `apt-get update` again.
apt_install() {
  local sudo=() out tries=0
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -qq)
  until out=$("${apt[@]}" update 2>&1); do
    if ! grep -q 'Could not get lock' <<<"$out" || [ "$tries" -ge 60 ]; then
      echo "$out"
      return 1
    fi
    [ "$tries" -eq 0 ] && echo "apt-get update: waiting for another apt to finish"
    tries=$((tries + 1))
    sleep 10
  done
  echo "$out"
  "${apt[@]}" install -y "$@"
}
