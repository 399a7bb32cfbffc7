#!/usr/bin/env bash
# Make sure schemathesis (the pinned version) is installed, for the OpenAPI test
# (tests/tests/openapi_schemathesis.rs), which runs it against a real ci-server.
#
# Usage: scripts/ensure-schemathesis.sh [--print-path]
#
# Installs schemathesis==$version from PyPI with pip into its own virtualenv at
# $CI_SCHEMATHESIS_VENV (default ${XDG_CACHE_HOME:-$HOME/.cache}/ci-dev/schemathesis), so that
# neither the system's Python nor the project's fixtures see it. Needs python3 with the venv
# module; installs Debian's python3-venv with apt-get (as root) when it is missing. Does nothing
# but say where it is when that version is already there. --print-path prints the schemathesis
# executable's path on stdout (after installing it if needed); the test looks there too.
set -euo pipefail

version=4.32.5
venv="${CI_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ci-dev/schemathesis}"
exe="$venv/bin/schemathesis"

die() { printf 'ensure-schemathesis: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'ensure-schemathesis: %s\n' "$*" >&2; }

print_path=0
case "${1:-}" in
  "") ;;
  --print-path) print_path=1 ;;
  *) die "unknown argument ${1}: the only option is --print-path" ;;
esac

done_here() {
  log "schemathesis $version is installed: $exe"
  if [ "$print_path" = 1 ]; then printf '%s\n' "$exe"; fi
  exit 0
}

installed_version() {
  [ -x "$venv/bin/python" ] && [ -x "$exe" ] || return 1
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null
}

if [ "$(installed_version || true)" = "$version" ]; then
  done_here
fi

command -v python3 >/dev/null 2>&1 \
  || die "python3 is not installed: install it (apt-get install -y python3 python3-venv), then rerun"

# A virtualenv needs the venv module and ensurepip (Debian ships them in python3-venv).
venv_works() {
  local probe
  probe="$(mktemp -d)"
  local ok=0
  python3 -m venv "$probe/venv" >/dev/null 2>&1 || ok=1
  rm -rf "$probe"
  return "$ok"
}
if ! venv_works; then
  [ "$(id -u)" = 0 ] \
    || die "python3 cannot create a virtualenv and installing python3-venv needs root: run this script as root, or apt-get install -y python3-venv"
  command -v apt-get >/dev/null 2>&1 \
    || die "python3 cannot create a virtualenv and there is no apt-get here: install Python's venv module, then rerun"
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get install -y python3-venv"
  apt-get update -q >/dev/null || die "apt-get update failed: check the apt sources and the network, then rerun"
  apt-get install -y -q --no-install-recommends python3-venv >/dev/null \
    || die "apt-get install -y python3-venv failed (see above); fix it and rerun"
  venv_works || die "python3 still cannot create a virtualenv after installing python3-venv; check $(command -v python3)"
fi

# A fresh virtualenv each time the version changes: nothing of an older install is left over.
log "installing schemathesis $version into $venv"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv" || die "python3 -m venv $venv failed (see above)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version" \
  || { rm -rf "$venv"; die "pip install schemathesis==$version failed (see above): check the network to PyPI, then rerun"; }
[ "$(installed_version || true)" = "$version" ] \
  || die "schemathesis $version does not answer after installing it into $venv"
done_here
