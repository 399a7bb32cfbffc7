#!/usr/bin/env bash
# Download the wheels of ci-bench scenario 10 (tests/bench/installer-dozen.txt: a dozen real
# packages pinned with their SHA-256) once, with this machine's pip, and print their folder.
#
# Usage: scripts/fetch-bench-wheels.sh     # prints the folder on stdout
#
# The folder is $CI_BENCH_CACHE (default: $XDG_CACHE_HOME/ci-bench, else ~/.cache/ci-bench)
# /installer-dozen-<first 12 hex digits of the list's SHA-256>: a changed list gets a folder of its
# own. Idempotent: when every wheel is there, nothing is downloaded (the benchmark then runs
# offline). pip checks every hash; a partial download is never left as the folder.
set -euo pipefail

die() { printf 'fetch-bench-wheels: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'fetch-bench-wheels: %s\n' "$*" >&2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
list="$root/tests/bench/installer-dozen.txt"
[ -f "$list" ] || die "$list is missing"
cache="${CI_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ci-bench}"
digest="$(sha256sum "$list" | cut -c1-12)"
dir="$cache/installer-dozen-$digest"
wanted="$(grep -c -- '--hash=' "$list")"

if [ -d "$dir" ] && [ "$(find "$dir" -maxdepth 1 -name '*.whl' | wc -l)" -eq "$wanted" ]; then
  printf '%s\n' "$dir"
  exit 0
fi
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 \
  || die "downloading the wheels needs pip on this machine: apt-get install -y python3-pip"
mkdir -p "$cache"
partial="$(mktemp -d "$cache/.installer-dozen.XXXXXX")"
trap 'rm -rf "$partial"' EXIT
log "downloading the $wanted wheels of $list from PyPI into $dir"
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.11 --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform any \
    --require-hashes -r "$list" --dest "$partial" >&2 \
  || die "cannot download the wheels with pip: check that PyPI is reachable from this machine (pip's proxy settings), then rerun"
got="$(find "$partial" -maxdepth 1 -name '*.whl' | wc -l)"
[ "$got" -eq "$wanted" ] || die "pip downloaded $got wheels, $list pins $wanted"
rm -rf "$dir"
mv "$partial" "$dir"
trap - EXIT
printf '%s\n' "$dir"
