#!/usr/bin/env bash
# Build the offline Python runner image (no registry needed).
#
# Usage: scripts/build-runner-image.sh [--force] [--check] [--tag TAG]
#        scripts/build-runner-image.sh --print-recipe-hash
#
#   --tag TAG             image tag to build (default: $CI_RUNNER_IMAGE, else ci-runner:bookworm)
#   --force               rebuild even if the image is up to date
#   --check               build nothing: exit 0 if the image is up to date, 3 if a run would
#                         build or rebuild it (with the reason on stderr)
#   --print-recipe-hash   print the current recipe hash on stdout and exit
#
# The image follows its recipe: the recipe hash is the SHA-256 of this script's own bytes (it holds
# the suite and the package list) and of the host CA certificates it copies in (see below), and the
# image carries it as the label ci.recipe. The script does nothing when the image exists with the
# current hash, and rebuilds it when the label differs or is missing (a recipe changed since the
# image was built). Newer Debian packages for the same recipe are picked up only with --force.
#
# The root filesystem comes from `debootstrap --variant=minbase` (python3, pip, venv, pytest; uv
# from its PyPI wheel, downloaded once into the cache directory) using the
# Debian mirror configured in this machine's apt sources (override with CI_DEBIAN_MIRROR=URL), and is
# loaded with `docker import`. The image has a non-root user `runner` (uid/gid 1000, home /home/runner)
# and a /workspace directory owned by 1000:1000. Needs root, debootstrap and a reachable Docker daemon
# (scripts/ensure-docker.sh provides both). Downloaded .debs are cached in $CI_DEBOOTSTRAP_CACHE
# (default /var/cache/ci-runner-debootstrap) so rebuilds are faster. The host's local CA certificates
# (/usr/local/share/ca-certificates) are added to the image unless CI_RUNNER_HOST_CA=0. The root
# filesystem is assembled under $CI_RUNNER_BUILD_DIR (default /var/tmp; must allow exec and devices).
set -euo pipefail

SUITE=bookworm
INCLUDE=python3,python3-pip,python3-venv,python3-pytest
tag="${CI_RUNNER_IMAGE:-ci-runner:bookworm}"
force=0
check=0
print_hash=0
host_ca_dir=/usr/local/share/ca-certificates

die() { printf 'build-runner-image: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-runner-image: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --check) check=1 ;;
    --print-recipe-hash) print_hash=1 ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value, e.g. --tag ci-runner:bookworm"; tag="$2"; shift ;;
    --tag=*) tag="${1#--tag=}" ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) printf 'build-runner-image: unknown argument: %s\n' "$1" >&2
       printf 'usage: %s [--force] [--check] [--tag TAG] | --print-recipe-hash\n' "$0" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$tag" ] || die "the image tag is empty: pass --tag TAG or set CI_RUNNER_IMAGE"

# --- the recipe --------------------------------------------------------------------------------
# Whether the host's local CA certificates go into the image.
use_host_ca() { [ "${CI_RUNNER_HOST_CA:-1}" != 0 ] && compgen -G "$host_ca_dir/*" >/dev/null; }

# SHA-256 over what defines the image: this script's bytes (suite, packages, every build step) and
# the name and content of each host CA certificate copied in.
recipe_hash() {
  local self
  self="$(readlink -f "${BASH_SOURCE[0]}")"
  {
    printf 'script %s\n' "$(sha256sum <"$self" | cut -d' ' -f1)"
    if use_host_ca; then
      (cd "$host_ca_dir" && find -L . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    else
      printf 'host-ca none\n'
    fi
  } | sha256sum | cut -d' ' -f1
}
recipe="$(recipe_hash)" \
  || die "cannot compute the recipe hash (are the files in $host_ca_dir readable?); rerun with CI_RUNNER_HOST_CA=0 to leave the host CAs out"
[ "${#recipe}" = 64 ] || die "cannot compute the recipe hash (got '$recipe'): is sha256sum (coreutils) installed?"

if [ "$print_hash" = 1 ]; then
  printf '%s\n' "$recipe"
  exit 0
fi

command -v docker >/dev/null 2>&1 \
  || die "the docker CLI is not installed: run scripts/ensure-docker.sh (as root)"
docker info >/dev/null 2>&1 \
  || die "Docker is not reachable (docker info failed): run scripts/ensure-docker.sh (as root), or set DOCKER_HOST to a running daemon"

# Prints why $tag must be built, or nothing when it exists and carries the current recipe.
why_build() {
  local label
  if ! label="$(docker image inspect --format '{{index .Config.Labels "ci.recipe"}}' "$tag" 2>/dev/null)"; then
    printf 'image %s does not exist\n' "$tag"
  elif [ -z "$label" ]; then
    printf 'the recipe changed: image %s has no ci.recipe label (current recipe %s)\n' "$tag" "${recipe:0:12}"
  elif [ "$label" != "$recipe" ]; then
    printf 'the recipe changed: image %s has recipe %s, the current recipe is %s\n' "$tag" "${label:0:12}" "${recipe:0:12}"
  elif [ "$force" = 1 ]; then
    printf -- '--force given (the image is up to date, recipe %s)\n' "${recipe:0:12}"
  fi
}

reason="$(why_build)"
if [ -z "$reason" ]; then
  log "image $tag is up to date (recipe ${recipe:0:12})"
  exit 0
fi
if [ "$check" = 1 ]; then
  log "would rebuild $tag: $reason"
  exit 3
fi
log "building $tag: $reason"

[ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap/chroot): run it as root, e.g. sudo $0"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] \
  || die "debootstrap is not installed: apt-get install -y debootstrap (or run scripts/ensure-docker.sh)"
PATH="$PATH:/usr/sbin:/sbin"

# One build at a time on this machine; a second caller waits and then finds the image.
lock_file=/var/lock/ci-runner-image.lock
exec 9>"$lock_file"
if ! flock -n 9; then
  log "another build is running; waiting for it (lock $lock_file)"
  flock 9
fi
if [ "$force" = 0 ] && [ -z "$(why_build)" ]; then
  log "image $tag is up to date (recipe ${recipe:0:12}, built by a concurrent run)"
  exit 0
fi

# --- find the Debian mirror in the machine's apt sources --------------------------------------
# Prints the first URI that serves suite $SUITE (type deb), looking at deb822 *.sources files and
# one-line *.list files. Comments and [options] are ignored.
find_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v suite="$SUITE" '
          function flush() {
            if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && enabled != "no") {
              split(uris, u, " "); print u[1]; found = 1; exit
            }
            types = ""; suites = ""; uris = ""; enabled = ""
          }
          /^[ \t]*#/ { next }
          /^[ \t]*$/ { flush(); next }
          {
            line = $0
            key = tolower(line); sub(/:.*/, "", key); gsub(/[ \t]/, "", key)
            val = line; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val); sub(/ $/, "", val)
            if (key == "types") types = val
            else if (key == "suites") suites = val
            else if (key == "uris") uris = val
            else if (key == "enabled") enabled = tolower(val)
          }
          END { if (!found) flush() }
        ' "$f"
        ;;
      *)
        awk -v suite="$SUITE" '
          { sub(/#.*/, "") }
          $1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            if ($(i + 1) == suite) { print $i; exit }
          }
        ' "$f"
        ;;
    esac
  done | head -n 1
}

mirror="${CI_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror="$(find_mirror)"
  [ -n "$mirror" ] || die "no Debian mirror for suite '$SUITE' found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{sources,list}: add one there, or set CI_DEBIAN_MIRROR=URL"
  log "using Debian mirror $mirror (from the machine's apt sources)"
else
  log "using Debian mirror $mirror (from CI_DEBIAN_MIRROR)"
fi

# --- build the root filesystem ---------------------------------------------------------------
build_parent="${CI_RUNNER_BUILD_DIR:-/var/tmp}"
mkdir -p "$build_parent"
workdir="$(mktemp -d "$build_parent/ci-runner-image.XXXXXX")"
rootfs="$workdir/rootfs"
tmp_tag="ci-runner-build-$$:tmp"
deboot_pid=""
cleanup() {
  local m
  # Stop an unfinished debootstrap (its own process group) and let it unmount what it mounted.
  if [ -n "$deboot_pid" ] && kill -0 "$deboot_pid" 2>/dev/null; then
    kill -TERM -- "-$deboot_pid" 2>/dev/null || true
    wait "$deboot_pid" 2>/dev/null || true
  fi
  # debootstrap mounts /proc, /sys, ... in the target; never rm -rf through a live mount.
  if [ -d "$workdir" ]; then
    awk -v d="$workdir" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$workdir"
  fi
  docker image rm "$tmp_tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cache_dir="${CI_DEBOOTSTRAP_CACHE:-/var/cache/ci-runner-debootstrap}"
mkdir -p "$cache_dir"

start=$SECONDS
log "debootstrap $SUITE into $rootfs (packages: $INCLUDE)"
# In the background, in its own process group, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands) and stops all of debootstrap's children.
setsid debootstrap --variant=minbase --include="$INCLUDE" --cache-dir="$cache_dir" \
  "$SUITE" "$rootfs" "$mirror" >"$workdir/debootstrap.log" 2>&1 </dev/null &
deboot_pid=$!
if ! wait "$deboot_pid"; then
  deboot_pid=""
  tail -n 30 "$workdir/debootstrap.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap failed (log above). If it could not download, check that $mirror is reachable (apt-get update) or set CI_DEBIAN_MIRROR=URL; if the target is noexec/nodev, set CI_RUNNER_BUILD_DIR to a directory on a normal filesystem"
fi
deboot_pid=""
log "debootstrap done in $((SECONDS - start))s"

# Non-root user runner (1000:1000) and the workspace.
grep -q '^runner:' "$rootfs/etc/group" || echo 'runner:x:1000:' >>"$rootfs/etc/group"
grep -q '^runner:' "$rootfs/etc/passwd" \
  || echo 'runner:x:1000:1000:CI runner:/home/runner:/bin/sh' >>"$rootfs/etc/passwd"
grep -q '^runner:' "$rootfs/etc/shadow" 2>/dev/null || echo 'runner:*:19000:0:99999:7:::' >>"$rootfs/etc/shadow"
[ -f "$rootfs/etc/gshadow" ] && { grep -q '^runner:' "$rootfs/etc/gshadow" || echo 'runner:!::' >>"$rootfs/etc/gshadow"; }
install -d -o 1000 -g 1000 -m 0755 "$rootfs/home/runner" "$rootfs/workspace"

# Trust the same local CAs as this machine (e.g. a TLS-intercepting proxy in front of PyPI), so that
# `pip install` inside the sandbox works wherever it works on the host. Set CI_RUNNER_HOST_CA=0 to skip.
# The certificates are part of the recipe hash.
if use_host_ca; then
  cp -a "$host_ca_dir/." "$rootfs/usr/local/share/ca-certificates/"
  if ! out="$(chroot "$rootfs" update-ca-certificates 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "update-ca-certificates failed in the image (output above); rerun with CI_RUNNER_HOST_CA=0 to skip the host CAs"
  fi
  log "added the host's local CA certificates (/usr/local/share/ca-certificates)"
fi

# uv, the installer jobs use unless the project or the operator asks for pip: the static binary
# from its PyPI wheel, downloaded once with this machine's pip into the build cache (rebuilds are
# offline after that) and copied to /usr/local/bin/uv. The version is part of the recipe.
UV_VERSION=0.13.9
case "$(uname -m)" in
  x86_64) uv_platform=manylinux_2_17_x86_64 ;;
  aarch64) uv_platform=manylinux_2_17_aarch64 ;;
  *) die "no uv wheel for this machine's architecture ($(uname -m))" ;;
esac
uv_dir="$cache_dir/uv-$UV_VERSION-$uv_platform"
uv_wheel="$(compgen -G "$uv_dir/uv-$UV_VERSION-*.whl" | head -n 1 || true)"
if [ -z "$uv_wheel" ]; then
  command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 \
    || die "downloading uv needs pip on this machine: apt-get install -y python3-pip"
  log "downloading uv $UV_VERSION ($uv_platform) from PyPI"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --platform "$uv_platform" --python-version 3.11 --dest "$uv_dir" "uv==$UV_VERSION" >&2 \
    || die "cannot download uv $UV_VERSION with pip: check that PyPI is reachable from this machine (pip's proxy settings), then rerun"
  uv_wheel="$(compgen -G "$uv_dir/uv-$UV_VERSION-*.whl" | head -n 1)"
fi
python3 - "$uv_wheel" "$rootfs/usr/local/bin/uv" <<'PY' || die "cannot take the uv binary out of $uv_wheel: delete $uv_dir and rerun"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".data/scripts/uv"))
    with wheel.open(name) as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
chmod 0755 "$rootfs/usr/local/bin/uv"
log "added uv $UV_VERSION (/usr/local/bin/uv)"

# Shrink: apt lists and caches, docs, man/info pages, message translations (LANG is C.UTF-8),
# debootstrap leftovers, logs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/usr/share/lintian "$rootfs"/var/log/* "$rootfs"/debootstrap
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
# Docker provides these at run time.
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

log "importing into Docker as $tag"
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["python3"]' \
  --change "LABEL ci.recipe=$recipe" \
  --change "LABEL ci.uv=$UV_VERSION" \
  - "$tmp_tag" >/dev/null

# Only a working image gets the real tag.
if ! out="$(docker run --rm --network none --user 1000:1000 "$tmp_tag" python3 -m pytest --version 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "the freshly built image does not run pytest (output above); rerun with --force after fixing the cause"
fi
if ! uv_out="$(docker run --rm --network none --user 1000:1000 "$tmp_tag" uv --version 2>&1)"; then
  printf '%s\n' "$uv_out" >&2
  die "the freshly built image does not run uv (output above); rerun with --force after fixing the cause"
fi
out="$out, $uv_out"
old_id="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"
docker tag "$tmp_tag" "$tag"
# A --force rebuild leaves the previous image untagged; drop it unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$tag")" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi
size="$(docker image inspect -f '{{.Size}}' "$tag")"
log "built $tag ($((size / 1024 / 1024)) MiB, $out, recipe ${recipe:0:12}) in $((SECONDS - start))s"
