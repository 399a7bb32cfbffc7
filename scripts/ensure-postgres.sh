#!/usr/bin/env bash
# Make sure Debian's PostgreSQL server is installed, for the tests and benchmarks that start
# throwaway clusters of their own (tests/src/postgres.rs: initdb in a temp folder, a free port on
# 127.0.0.1, stopped and removed afterwards).
#
# Usage: scripts/ensure-postgres.sh [--print-bindir]
#
# Does nothing, and prints nothing, when initdb, pg_ctl, postgres, pg_isready and psql are in
# /usr/lib/postgresql/<major>/bin and the user postgres exists. Otherwise installs Debian's
# postgresql with apt-get (as root; `apt-get update` first only when apt knows no such package or
# installing from its current lists fails). The cluster the package creates (<major>/main, port
# 5432) is not started: while installing, a policy-rc.d (unless one is there already) keeps
# services from starting; afterwards a new cluster is stopped if it runs all the same and its
# start.conf is set to manual, so that it does not start at boot either. The tests never use it.
# --print-bindir prints the bin folder of the highest major on stdout: the one the tests use.
set -euo pipefail

tools=(initdb pg_ctl postgres pg_isready psql)
policy=/usr/sbin/policy-rc.d
PATH="$PATH:/usr/sbin:/sbin"

die() { printf 'ensure-postgres: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'ensure-postgres: %s\n' "$*" >&2; }

print_bindir=0
case "${1:-}" in
  "") ;;
  --print-bindir) print_bindir=1 ;;
  *) die "unknown argument ${1}: the only option is --print-bindir" ;;
esac

# Sets $bindir to /usr/lib/postgresql/<major>/bin of the highest major that has every tool, or to
# "" when none has. No subshell: this is the whole of the run when all is in place.
find_bindir() {
  bindir=""
  local best=-1 dir major tool
  for dir in /usr/lib/postgresql/*/bin; do
    major="${dir#/usr/lib/postgresql/}"
    major="${major%/bin}"
    [[ "$major" =~ ^[0-9]+$ ]] || continue
    for tool in "${tools[@]}"; do
      [ -x "$dir/$tool" ] || continue 2
    done
    if [ "$major" -gt "$best" ]; then
      best="$major"
      bindir="$dir"
    fi
  done
}

done_here() {
  if [ "$print_bindir" = 1 ]; then printf '%s\n' "$bindir"; fi
  exit 0
}

find_bindir
if [ -n "$bindir" ] && getent passwd postgres >/dev/null; then
  done_here
fi

[ "$(id -u)" = 0 ] || die "PostgreSQL's server is not installed and installing it needs root: run this script as root (sudo $0), or apt-get install -y postgresql"
command -v apt-get >/dev/null 2>&1 || die "PostgreSQL's server is not installed and there is no apt-get here: install PostgreSQL's server (initdb, pg_ctl, postgres, pg_isready, psql) under /usr/lib/postgresql/<major>/bin"

# The clusters Debian's tools know, one "<major>/<name> <status>" a line.
clusters() {
  if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | awk '{ print $1 "/" $2, $4 }'
  fi
}
before="$(clusters | cut -d" " -f1)"

export DEBIAN_FRONTEND=noninteractive
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Written by ensure-postgres.sh while it installs PostgreSQL: no service starts.\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
install() { apt-get install -y -q --no-install-recommends postgresql >/dev/null; }
log "apt-get install -y postgresql"
if ! { apt-cache show postgresql >/dev/null 2>&1 && install 2>/dev/null; }; then
  log "apt-get update"
  apt-get update -q >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d/ and the network, then rerun"
  log "apt-get install -y postgresql"
  install || die "apt-get install -y postgresql failed (see the apt output above); fix it and rerun"
fi

# The package's own cluster: not running, and not started at boot.
while read -r cluster status; do
  [ -n "$cluster" ] || continue
  grep -qxF "$cluster" <<<"$before" && continue
  major="${cluster%/*}"
  name="${cluster#*/}"
  start_conf="/etc/postgresql/$major/$name/start.conf"
  if [ -f "$start_conf" ]; then
    sed -i 's/^auto$/manual/' "$start_conf"
  fi
  if [ "${status%%,*}" = online ]; then
    log "stopping the package's cluster $cluster"
    pg_ctlcluster "$major" "$name" stop || die "could not stop the cluster $cluster: pg_ctlcluster $major $name stop"
  fi
  log "the package's cluster $cluster is not started (start.conf: manual); the tests start their own"
done <<<"$(clusters)"

find_bindir
[ -n "$bindir" ] || die "postgresql is installed but no /usr/lib/postgresql/<major>/bin has all of ${tools[*]}"
getent passwd postgres >/dev/null || die "postgresql is installed but there is no user postgres, which the tests run the clusters as"
log "installed $("$bindir/postgres" --version 2>/dev/null || echo PostgreSQL) in $bindir"
done_here
