#!/usr/bin/env bash
# Build the service image: ci-server, ci-controller and ci-admin on a minimal Debian, offline (no
# registry needed).
#
# Usage: scripts/build-service-image.sh [--tag TAG] [--profile PROFILE | --bin-dir DIR] [--force] [--check]
#        scripts/build-service-image.sh [--profile PROFILE | --bin-dir DIR] --print-recipe-hash
#
#   --tag TAG            image to build (default: $CI_SERVICE_IMAGE, else ci-service:bookworm)
#   --profile PROFILE    cargo profile of the binaries (default release; dev is target/debug):
#                        `cargo build --locked --profile PROFILE` of ci-server, ci-controller and
#                        ci-admin runs first (nothing to do when they are built)
#   --bin-dir DIR        take the three binaries from DIR as they are, without cargo (e.g. the
#                        binaries a test run already built)
#   --force              rebuild the image and its base even if they are up to date
#   --check              build nothing (nor the binaries): exit 0 if the image is up to date, 3 if
#                        a run would build or rebuild it (with the reason on stderr)
#   --print-recipe-hash  print the image's current recipe hash on stdout and exit
#
# The image is two layers. Its base, ci-service-base:bookworm, is `debootstrap --variant=minbase
# bookworm` with ca-certificates and a user ci (uid and gid 10001, home /var/lib/ci), loaded with
# `docker import` like the runner image (scripts/lib/debian-image.sh: the same Debian mirror, .deb
# cache and build folder, CI_DEBIAN_MIRROR, CI_DEBOOTSTRAP_CACHE and CI_RUNNER_BUILD_DIR); building
# it needs root and debootstrap (scripts/ensure-docker.sh). On it, deploy/image/Dockerfile adds the
# binaries and deploy/image/ci-healthcheck with Docker's classic builder (nothing is pulled), as
# the user ci, with a HEALTHCHECK on the server's /ready.
#
# Both follow their recipe, as the label ci.recipe: the base's is the SHA-256 of this script and
# the library; the image's adds the Dockerfile, ci-healthcheck and the three binaries. Nothing is
# done when TAG carries the current recipe; a changed binary rebuilds only the top layer (seconds),
# a changed script or library the base too. Newer Debian packages are picked up only with --force.
set -euo pipefail

SUITE=bookworm
INCLUDE=ca-certificates
BASE_TAG=ci-service-base:bookworm
CI_UID=10001
BINARIES=(ci-server ci-controller ci-admin)
tag="${CI_SERVICE_IMAGE:-ci-service:bookworm}"
profile=release
bin_dir=""
force=0
check=0
print_hash=0

prog=build-service-image
root="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
# shellcheck source=lib/debian-image.sh
. "$root/scripts/lib/debian-image.sh"

usage() {
  printf 'usage: %s [--tag TAG] [--profile PROFILE | --bin-dir DIR] [--force] [--check] [--print-recipe-hash]\n' "$0" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --check) check=1 ;;
    --print-recipe-hash) print_hash=1 ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value, e.g. --tag ci-service:bookworm"; tag="$2"; shift ;;
    --tag=*) tag="${1#--tag=}" ;;
    --profile) [ $# -ge 2 ] || die "--profile needs a value, e.g. --profile release"; profile="$2"; shift ;;
    --profile=*) profile="${1#--profile=}" ;;
    --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a value, e.g. --bin-dir target/debug"; bin_dir="$2"; shift ;;
    --bin-dir=*) bin_dir="${1#--bin-dir=}" ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) printf '%s: unknown argument: %s\n' "$prog" "$1" >&2; usage ;;
  esac
  shift
done
[ -n "$tag" ] || die "the image tag is empty: pass --tag TAG or set CI_SERVICE_IMAGE"
[ "$tag" != "$BASE_TAG" ] || die "$BASE_TAG is the base of the image: pass another --tag"
[ -n "$profile" ] || die "the profile is empty: pass --profile release (or dev, or another cargo profile)"

dockerfile="$root/deploy/image/Dockerfile"
healthcheck="$root/deploy/image/ci-healthcheck"

# --- the binaries ------------------------------------------------------------------------------
if [ -z "$bin_dir" ]; then
  case "$profile" in
    dev) profile_dir=debug ;;
    *) profile_dir="$profile" ;;
  esac
  bin_dir="${CARGO_TARGET_DIR:-$root/target}/$profile_dir"
  if [ "$check" = 0 ] && [ "$print_hash" = 0 ]; then
    # CI shells may not have rustup's bin directory on PATH.
    if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
      PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 \
      || die "cargo is not installed: install Rust with rustup (https://rustup.rs), or pass --bin-dir DIR with binaries built elsewhere"
    log "cargo build --locked --profile $profile -p ci-server -p ci-controller -p ci-admin"
    (cd "$root" && cargo build --locked --profile "$profile" -p ci-server -p ci-controller -p ci-admin --bins) \
      || die "cargo build failed (output above): fix it and rerun"
  fi
fi
for bin in "${BINARIES[@]}"; do
  [ -x "$bin_dir/$bin" ] || {
    [ "$check" = 1 ] && { log "would build $tag: $bin_dir/$bin is not built yet"; exit 3; }
    die "$bin_dir/$bin is missing: build it (cargo build --profile $profile --bins), or pass --bin-dir DIR where it is"
  }
done

# --- the recipes -------------------------------------------------------------------------------
base_recipe="$(files_recipe "$root/scripts/build-service-image.sh" | sha256sum | cut -d' ' -f1)"
# image_recipe DIR: the image's recipe with the binaries in DIR.
image_recipe() {
  {
    printf 'base %s\n' "$base_recipe"
    files_recipe "$dockerfile" "$healthcheck"
    for bin in "${BINARIES[@]}"; do
      printf 'binary %s %s\n' "$bin" "$(sha256_of "$1/$bin")"
    done
  } | sha256sum | cut -d' ' -f1
}
recipe="$(image_recipe "$bin_dir")"
[ "${#recipe}" = 64 ] && [ "${#base_recipe}" = 64 ] \
  || die "cannot compute the recipe hash: is sha256sum (coreutils) installed?"

if [ "$print_hash" = 1 ]; then
  printf '%s\n' "$recipe"
  exit 0
fi

require_docker

decide_rebuild "$tag" "$recipe" "$force" "$check" ", binaries from $bin_dir"
reason="$REBUILD_REASON"

# One build at a time on this machine; a second caller waits and then finds the image.
take_lock /var/lock/ci-service-image.lock
if [ "$force" = 0 ] && [ -z "$(why_rebuild "$tag" "$recipe" 0)" ]; then
  log "image $tag is up to date (recipe ${recipe:0:12}, built by a concurrent run)"
  exit 0
fi
log "building $tag: $reason"
start=$SECONDS

# --- the base: Debian minbase, ca-certificates, the user ci -------------------------------------
base_reason="$(why_rebuild "$BASE_TAG" "$base_recipe" "$force")"
if [ -n "$base_reason" ]; then
  log "building $BASE_TAG: $base_reason"
  workdir="$(make_workdir ci-service-base)"
  cleanup_dir "$workdir"
  rootfs="$workdir/rootfs"
  base_tmp="ci-service-base-build-$$:tmp"
  cleanup_image "$base_tmp"
  debootstrap_rootfs "$SUITE" "$INCLUDE" "$rootfs"
  # The user the services run as; its home is where the database volume is mounted (a fresh
  # volume takes the folder's owner).
  add_user "$rootfs" ci "$CI_UID" "$CI_UID" /var/lib/ci "ci service"
  chmod 0750 "$rootfs/var/lib/ci"
  shrink_rootfs "$rootfs"
  import_rootfs "$rootfs" "$base_tmp" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --change "LABEL ci.recipe=$base_recipe"
  if ! out="$(docker run --rm --network none "$base_tmp" sh -c 'id -un ci && test -s /etc/ssl/certs/ca-certificates.crt' 2>&1)"; then
    printf '%s\n' "$out" >&2
    die "the freshly built base image has no user ci or no CA bundle (output above); rerun with --force after fixing the cause"
  fi
  retag "$base_tmp" "$BASE_TAG"
  log "built $BASE_TAG ($(image_size "$BASE_TAG"), recipe ${base_recipe:0:12}) in $((SECONDS - start))s"
else
  log "base image $BASE_TAG is up to date (recipe ${base_recipe:0:12})"
fi

# --- the image: the binaries on the base -------------------------------------------------------
context="$(make_workdir ci-service-image)"
cleanup_dir "$context"
cp "${BINARIES[@]/#/$bin_dir/}" "$healthcheck" "$dockerfile" "$context/"
chmod 0755 "$context"/ci-*
# The label names the bytes in the image, even if a cargo build replaced a binary meanwhile.
copied="$(image_recipe "$context")"
if [ "$copied" != "$recipe" ]; then
  log "the binaries in $bin_dir changed while this ran (a cargo build?): the image has the new ones"
  recipe="$copied"
fi
tmp_tag="ci-service-build-$$:tmp"
cleanup_image "$tmp_tag"
log "adding ${BINARIES[*]} from $bin_dir"
# The classic builder uses the local base as it is (BuildKit may look it up in a registry).
if ! out="$(DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE=$BASE_TAG" \
      --label "ci.recipe=$recipe" --tag "$tmp_tag" "$context" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "docker build of $tag failed (output above)"
fi

# Only a working image gets the real tag: every binary runs in it, as the user ci.
check_script='set -e; [ "$(id -un)" = ci ] || { echo "runs as $(id -un), not ci"; exit 1; }
for b in ci-server ci-controller ci-admin; do "$b" --version; done'
if ! out="$(docker run --rm --network none "$tmp_tag" sh -c "$check_script" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "the binaries do not run in the image (output above); binaries built on a newer system than Debian $SUITE need a newer C library: build them on $SUITE"
fi
retag "$tmp_tag" "$tag"
log "built $tag ($(image_size "$tag"), $(printf '%s' "$out" | tr '\n' ' ' | sed 's/ $//'), recipe ${recipe:0:12}) in $((SECONDS - start))s"
