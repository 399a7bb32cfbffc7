#!/usr/bin/env bash
# Make sure a Docker daemon answers and debootstrap is installed (needed by build-runner-image.sh).
#
# Usage: scripts/ensure-docker.sh [--compose]
#
#   --compose   also make sure docker-compose is installed (Debian's, for deploy/compose.yaml)
#
# Installs Debian's debootstrap and docker.io (and with --compose docker-compose) with apt-get when
# they are missing, starts dockerd when `docker info` does not answer (systemd if it is running,
# otherwise dockerd in the background with its log in /var/log/dockerd.log) and waits up to
# $CI_DOCKER_START_TIMEOUT seconds (default 60) for it.
# Installing and starting need root. Safe to run again: it does nothing when all is in place.
set -euo pipefail

compose=0
while [ $# -gt 0 ]; do
  case "$1" in
    --compose) compose=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) printf 'ensure-docker: unknown argument: %s\nusage: %s [--compose]\n' "$1" "$0" >&2; exit 2 ;;
  esac
  shift
done

timeout_s="${CI_DOCKER_START_TIMEOUT:-60}"
log_file=/var/log/dockerd.log
PATH="$PATH:/usr/sbin:/sbin"

die() { printf 'ensure-docker: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'ensure-docker: %s\n' "$*" >&2; }
is_root() { [ "$(id -u)" = 0 ]; }
docker_ok() { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }

apt_updated=0
apt_install() {
  is_root || die "$* is not installed and installing it needs root: run this script as root (sudo $0), or apt-get install -y $*"
  command -v apt-get >/dev/null 2>&1 || die "$* is not installed and there is no apt-get here: install $* with your package manager"
  export DEBIAN_FRONTEND=noninteractive
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    apt-get update -q >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d/ and the network, then rerun"
    apt_updated=1
  fi
  log "apt-get install -y $*"
  apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install -y $* failed (see the apt output above); fix it and rerun"
}

# debootstrap: the runner image is built from Debian packages.
if ! command -v debootstrap >/dev/null 2>&1; then
  if is_root; then
    apt_install debootstrap
  else
    log "warning: debootstrap is not installed (needed only to build the runner image): run this script as root, or apt-get install -y debootstrap"
  fi
fi

# docker-compose: the compose deployment (deploy/compose.yaml) and its test.
if [ "$compose" = 1 ] && ! command -v docker-compose >/dev/null 2>&1; then
  apt_install docker-compose
  command -v docker-compose >/dev/null 2>&1 \
    || die "docker-compose is still missing after apt-get install docker-compose: install it with your package manager"
fi

if docker_ok; then
  exit 0
fi

if [ -n "${DOCKER_HOST:-}" ]; then
  die "DOCKER_HOST=$DOCKER_HOST is set but docker info fails there: start that daemon, or unset DOCKER_HOST to use a local one"
fi

# The docker CLI and the daemon come together in Debian's docker.io.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  apt_install docker.io
fi

is_root || die "Docker is not reachable and starting dockerd needs root: run this script as root (sudo $0), or add your user to the docker group (usermod -aG docker \$USER) and log in again"

# Is a daemon already starting (or running but not answering yet)?
dockerd_running() { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

if dockerd_running; then
  log "dockerd (pid $(cat /var/run/docker.pid)) is running; waiting for it to answer"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  log "starting docker with systemctl"
  systemctl start docker || die "systemctl start docker failed: see journalctl -u docker"
  log_file=""
else
  log "starting dockerd in the background (log: $log_file)"
  # setsid + nohup: the daemon must outlive this script and the terminal/CI step that ran it.
  setsid nohup dockerd >"$log_file" 2>&1 </dev/null &
  started_pid=$!
fi

show_log() {
  if [ -n "$log_file" ] && [ -f "$log_file" ]; then
    printf -- '--- last lines of %s ---\n' "$log_file" >&2
    tail -n 30 "$log_file" >&2
  fi
}

deadline=$((SECONDS + timeout_s))
until docker info >/dev/null 2>&1; do
  if [ -n "${started_pid:-}" ] && ! kill -0 "$started_pid" 2>/dev/null; then
    show_log
    die "dockerd exited during start-up; read the log above, fix the cause (e.g. the storage driver in /etc/docker/daemon.json), then rerun"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    show_log
    die "Docker did not answer within ${timeout_s}s; read the log above (or journalctl -u docker), fix the cause (storage driver: /etc/docker/daemon.json), then rerun"
  fi
  sleep 0.5
done
log "Docker is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
