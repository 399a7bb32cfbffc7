#!/usr/bin/env bash
# Make sure gVisor (Debian's runsc) is installed and registered with Docker as two runtimes, for
# `ci-controller --runtime runsc --runtime-with-network runsc-net`:
#
#   runsc      runsc --network=none   steps without network (the tests)
#   runsc-net  runsc --network=host   steps with network (the install step): gVisor uses the
#                                     container's own network namespace, which Docker sets up
#
# Usage: scripts/ensure-gvisor.sh
#
# Installs runsc with apt-get when it is missing (`apt-get update` only then), merges the two
# entries into "runtimes" of /etc/docker/daemon.json (every other key is kept), and reloads dockerd
# with SIGHUP (a reload: running containers are left alone), then waits up to
# $CI_DOCKER_START_TIMEOUT seconds (default 60) for `docker info` to list both runtimes. Needs
# root when something has to change. Safe to run again: it does nothing when all is in place.
set -euo pipefail

timeout_s="${CI_DOCKER_START_TIMEOUT:-60}"
daemon_json=/etc/docker/daemon.json
PATH="$PATH:/usr/sbin:/sbin"

die() { printf 'ensure-gvisor: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'ensure-gvisor: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }

command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 \
  || die "Docker is not reachable (is dockerd running, and may this user use it?): run scripts/ensure-docker.sh first"
command -v python3 >/dev/null 2>&1 || die "python3 is needed to edit $daemon_json: apt-get install -y python3"

# The runtimes Docker lists, one name a line.
runtimes() { docker info --format '{{range $name, $_ := .Runtimes}}{{$name}}{{"\n"}}{{end}}'; }
registered() {
  local names
  names="$(runtimes)" || return 1
  grep -qx runsc <<<"$names" && grep -qx runsc-net <<<"$names"
}

if ! command -v runsc >/dev/null 2>&1; then
  is_root || die "runsc is not installed and installing it needs root: run this script as root (sudo $0), or apt-get install -y runsc"
  command -v apt-get >/dev/null 2>&1 || die "runsc is not installed and there is no apt-get here: install gVisor's runsc (https://gvisor.dev/docs/user_guide/install/)"
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -q >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d/ and the network, then rerun"
  log "apt-get install -y runsc"
  apt-get install -y -q --no-install-recommends runsc >/dev/null \
    || die "apt-get install -y runsc failed (see the apt output above); fix it and rerun"
fi
runsc_path="$(command -v runsc)"

# The two entries in daemon.json: `daemon_json check` succeeds when they are there as they should
# be; `daemon_json write` merges them in (every other key kept) and prints "changed" when it
# rewrote the file.
daemon_json() {
  python3 - "$1" "$daemon_json" "$runsc_path" <<'EOF'
import json, os, sys, tempfile

mode, path, runsc = sys.argv[1:4]
try:
    with open(path) as f:
        text = f.read()
except FileNotFoundError:
    text = ""
try:
    config = json.loads(text) if text.strip() else {}
except ValueError as e:
    sys.exit(f"{path} is not valid JSON ({e}): fix it by hand, then rerun")
if not isinstance(config, dict):
    sys.exit(f"{path} does not hold a JSON object: fix it by hand, then rerun")
wanted = {
    "runsc": {"path": runsc, "runtimeArgs": ["--network=none"]},
    "runsc-net": {"path": runsc, "runtimeArgs": ["--network=host"]},
}
runtimes = config.setdefault("runtimes", {})
if not isinstance(runtimes, dict):
    sys.exit(f'"runtimes" in {path} is not a JSON object: fix it by hand, then rerun')
if all(runtimes.get(name) == entry for name, entry in wanted.items()):
    sys.exit(0)
if mode == "check":
    sys.exit(1)
runtimes.update(wanted)
folder = os.path.dirname(path) or "."
os.makedirs(folder, exist_ok=True)
perms = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o644
fd, tmp = tempfile.mkstemp(dir=folder, prefix=".daemon.json.")
with os.fdopen(fd, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.chmod(tmp, perms)
os.replace(tmp, path)
print("changed")
EOF
}

if daemon_json check && registered; then
  exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
  die "DOCKER_HOST=$DOCKER_HOST is set and that daemon does not list runsc and runsc-net: register them in its daemon.json (see this script) and reload it there"
fi
is_root || die "registering runsc in $daemon_json and reloading dockerd needs root: run this script as root (sudo $0)"
changed="$(daemon_json write)" || die "could not register the runtimes in $daemon_json (see above)"
if [ "$changed" = changed ]; then
  log "registered runsc and runsc-net ($runsc_path) in $daemon_json"
fi

pid_file=/var/run/docker.pid
[ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null \
  || die "no running dockerd found through $pid_file: reload it by hand (systemctl reload docker, or kill -HUP <pid of dockerd>)"
log "reloading dockerd (pid $(cat "$pid_file")) with SIGHUP"
kill -HUP "$(cat "$pid_file")"

deadline=$((SECONDS + timeout_s))
until registered; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    die "Docker does not list runsc and runsc-net ${timeout_s}s after the reload: check $daemon_json and dockerd's log (/var/log/dockerd.log or journalctl -u docker)"
  fi
  sleep 0.2
done
log "Docker lists the runtimes runsc and runsc-net ($("$runsc_path" --version 2>/dev/null | head -n 1 || echo '?'))"
