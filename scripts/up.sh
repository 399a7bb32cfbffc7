#!/usr/bin/env bash
# Bring the service up on this machine, in the foreground.
#
# Usage: scripts/up.sh
#
# Makes sure Docker runs and the runner image exists, builds the release binaries, then runs
# target/release/ci-server and target/release/ci-controller side by side with their output prefixed
# by [server] / [controller]. Ctrl-C (or SIGTERM) stops both; if one of them exits, the other is
# stopped and this script exits non-zero. Both read their settings from CI_* environment variables;
# the controller runs jobs in $CI_IMAGE (default: $CI_RUNNER_IMAGE, else ci-runner:bookworm, built
# offline by scripts/build-runner-image.sh).
set -euo pipefail

die() { printf 'up.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'up.sh: %s\n' "$*" >&2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

runner_image="${CI_RUNNER_IMAGE:-ci-runner:bookworm}"
image="${CI_IMAGE:-$runner_image}"

scripts/ensure-docker.sh
if [ "$image" = "$runner_image" ]; then
  scripts/build-runner-image.sh --tag "$runner_image"
else
  docker image inspect "$image" >/dev/null 2>&1 \
    || log "warning: CI_IMAGE=$image is not present locally; the controller must be able to pull it"
fi

# CI shells may not have rustup's bin directory on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then rerun"
log "cargo build --release --bins"
cargo build --release --bins

server=target/release/ci-server
controller=target/release/ci-controller
for bin in "$server" "$controller"; do
  [ -x "$bin" ] || die "$bin was not built: check the cargo output above"
done

cat >&2 <<EOF

up.sh: starting ci-server and ci-controller (image $image). Ctrl-C stops both.
up.sh: first time? In another terminal, create a user and an API key:
         target/release/ci-admin user create --name N --email E
         target/release/ci-admin key create --email E --name laptop
       then give the printed key to the client:
         export CI_API_KEY=...

EOF

# Run "$@" in the background with every output line prefixed; sets $! to the program's own pid.
# The prefixer ignores INT/TERM so it still forwards the program's last words during shutdown.
start() {
  local prefix="$1"; shift
  "$@" > >(trap '' INT TERM; exec sed -u "s/^/[$prefix] /") 2>&1 </dev/null &
}

start server "$server"
server_pid=$!
start controller "$controller" --image "$image"
controller_pid=$!

stop_all() {
  local pid
  for pid in "$server_pid" "$controller_pid"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  # Give them a grace period to shut down cleanly, then force.
  local deadline=$((SECONDS + ${CI_UP_STOP_GRACE:-15}))
  while kill -0 "$server_pid" 2>/dev/null || kill -0 "$controller_pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "still running after the grace period: sending SIGKILL"
      kill -KILL "$server_pid" "$controller_pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  wait "$server_pid" "$controller_pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked by the traps below
on_signal() {
  trap '' INT TERM
  log "stopping ci-server and ci-controller"
  stop_all
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

status=0
wait -n -p exited "$server_pid" "$controller_pid" || status=$?
trap '' INT TERM
if [ "${exited:-}" = "$server_pid" ]; then name=ci-server; else name=ci-controller; fi
log "$name exited with status $status; stopping the other one"
stop_all
[ "$status" -ne 0 ] || status=1
exit "$status"
