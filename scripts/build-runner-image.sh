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
# the suite and the package list), of scripts/lib/debian-image.sh (the steps it shares with the
# service image) and of the host CA certificates it copies in (see below), and the image carries it
# as the label ci.recipe. The script does nothing when the image exists with the
# current hash, and rebuilds it when the label differs or is missing (a recipe changed since the
# image was built). Newer Debian packages for the same recipe are picked up only with --force.
#
# The root filesystem comes from `debootstrap --variant=minbase` (python3, pip, venv, pytest, git
# for the fetch step of jobs from git; uv
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
INCLUDE=python3,python3-pip,python3-venv,python3-pytest,git
tag="${CI_RUNNER_IMAGE:-ci-runner:bookworm}"
force=0
check=0
print_hash=0
host_ca_dir=/usr/local/share/ca-certificates

prog=build-runner-image
# shellcheck source=lib/debian-image.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/lib/debian-image.sh"

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

# SHA-256 over what defines the image: this script's and the shared library's bytes (suite,
# packages, every build step) and the name and content of each host CA certificate copied in.
recipe_hash() {
  {
    files_recipe "$(readlink -f "${BASH_SOURCE[0]}")"
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

require_docker

decide_rebuild "$tag" "$recipe" "$force" "$check"
reason="$REBUILD_REASON"
log "building $tag: $reason"

[ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap/chroot): run it as root, e.g. sudo $0"

# One build at a time on this machine; a second caller waits and then finds the image.
take_lock /var/lock/ci-runner-image.lock
if [ "$force" = 0 ] && [ -z "$(why_rebuild "$tag" "$recipe" 0)" ]; then
  log "image $tag is up to date (recipe ${recipe:0:12}, built by a concurrent run)"
  exit 0
fi

# --- build the root filesystem ---------------------------------------------------------------
workdir="$(make_workdir ci-runner-image)"
cleanup_dir "$workdir"
rootfs="$workdir/rootfs"
tmp_tag="ci-runner-build-$$:tmp"
cleanup_image "$tmp_tag"
cache_dir="$(debootstrap_cache)"

start=$SECONDS
debootstrap_rootfs "$SUITE" "$INCLUDE" "$rootfs"

# Non-root user runner (1000:1000) and the workspace.
add_user "$rootfs" runner 1000 1000 /home/runner "CI runner"
install -d -o 1000 -g 1000 -m 0755 "$rootfs/workspace"

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

shrink_rootfs "$rootfs"

import_rootfs "$rootfs" "$tmp_tag" \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["python3"]' \
  --change "LABEL ci.recipe=$recipe" \
  --change "LABEL ci.uv=$UV_VERSION"

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
# A --force rebuild leaves the previous image untagged: retag drops it unless a container uses it.
retag "$tmp_tag" "$tag"
log "built $tag ($(image_size "$tag"), $out, recipe ${recipe:0:12}) in $((SECONDS - start))s"
