#!/usr/bin/env bash
# Benchmarks of ci with the real binaries, a temp SQLite database and the real Docker daemon.
#
# Usage: scripts/bench.sh [--quick] [--runs N] [other ci-bench flags, see ci-bench --help]
#   scripts/bench.sh            # full run (well under 20 minutes on 2 cores); writes docs/benchmarks.md
#   scripts/bench.sh --quick    # small sizes, one run per scenario (a smoke check)
#   scripts/bench.sh --database postgres --only 1,2,3,4,5,6,7   # the same scenarios on a durable
#                               # PostgreSQL cluster, in a section of their own beside SQLite's
#
# Builds the release binaries, raises the open-files limit (the fan-out scenario holds a thousand
# SSE connections on each side), then runs target/release/ci-bench, which prints a table and
# writes docs/benchmarks.md (or --output PATH). Uses the runner image in $CI_TEST_IMAGE (default
# ci-runner:bookworm; scripts/build-runner-image.sh builds it). Exits non-zero if a scenario did
# not complete or a correctness check failed; targets that are missed do not change the status.
set -euo pipefail

die() { printf 'bench.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'bench.sh: %s\n' "$*" >&2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then rerun"
command -v docker >/dev/null 2>&1 || die "docker is not installed: run scripts/ensure-docker.sh"
docker info >/dev/null 2>&1 || die "Docker is not reachable: run scripts/ensure-docker.sh"
image="${CI_TEST_IMAGE:-ci-runner:bookworm}"
docker image inspect "$image" >/dev/null 2>&1 \
  || die "the runner image $image is missing: run scripts/build-runner-image.sh"

locked=()
[ -f Cargo.lock ] && locked=(--locked)
log "cargo build --release --workspace --bins ${locked[*]}"
cargo build --release --workspace --bins "${locked[@]}"

want=65536
if ! ulimit -n "$want" 2>/dev/null; then
  hard="$(ulimit -Hn)"
  if [ "$hard" = unlimited ]; then hard="$want"; fi
  ulimit -n "$hard" 2>/dev/null || true
fi
log "open files limit: $(ulimit -n)"

# Scenario 10 (installer) installs a dozen real packages from local wheels, downloaded once
# (scripts/fetch-bench-wheels.sh); --quick, or a failed download, installs generated ones.
quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --installer-wheels|--installer-wheels=*) quick=1 ;;
  esac
done
if [ "$quick" = 0 ] && [ -z "${CI_BENCH_INSTALLER_WHEELS:-}" ]; then
  if wheels="$(scripts/fetch-bench-wheels.sh)"; then
    export CI_BENCH_INSTALLER_WHEELS="$wheels"
  else
    log "warning: scenario 10 installs generated packages instead (the wheels could not be fetched)"
  fi
fi

log "target/release/ci-bench $*"
exec target/release/ci-bench "$@"
