# shellcheck shell=bash
# What the offline image builds share (scripts/build-runner-image.sh, scripts/build-service-image.sh):
# a Debian root filesystem made with debootstrap from the mirror in this machine's apt sources,
# loaded into Docker with `docker import` (no registry needed), and images that carry the hash of
# their recipe in a label so a script can tell whether they are up to date.
#
# Source it after setting $prog (the name messages start with). Sourcing it sets EXIT, INT and TERM
# traps that stop an unfinished debootstrap, unmount what it mounted, and remove the folders and
# images registered with cleanup_dir and cleanup_image.
#
# Environment (shared by the image builds):
#   CI_DEBIAN_MIRROR      the Debian mirror (default: the first one in the machine's apt sources)
#   CI_DEBOOTSTRAP_CACHE  downloaded .debs, kept between builds (default /var/cache/ci-runner-debootstrap)
#   CI_RUNNER_BUILD_DIR   where root filesystems are assembled (default /var/tmp; must allow exec and
#                         devices)

die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
log() { printf '%s: %s\n' "$prog" "$*" >&2; }

# Fails unless the docker CLI is installed and the daemon answers.
require_docker() {
  command -v docker >/dev/null 2>&1 \
    || die "the docker CLI is not installed: run scripts/ensure-docker.sh (as root)"
  docker info >/dev/null 2>&1 \
    || die "Docker is not reachable (docker info failed): run scripts/ensure-docker.sh (as root), or set DOCKER_HOST to a running daemon"
}

# sha256_of FILE: the file's SHA-256 (hex).
sha256_of() { sha256sum <"$1" | cut -d' ' -f1; }

# files_recipe FILE...: one line per file, its name and SHA-256, for a recipe hash. This library
# is always part of it.
files_recipe() {
  local f
  for f in "$@" "${BASH_SOURCE[0]}"; do
    [ -r "$f" ] || die "cannot read $f, part of the image's recipe"
    printf 'file %s %s\n' "$(basename "$f")" "$(sha256_of "$f")"
  done
}

# image_label IMAGE LABEL: prints the label's value (empty when the image lacks it); fails when the
# image does not exist.
image_label() {
  docker image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null
}

# why_rebuild IMAGE RECIPE FORCE: prints why IMAGE must be built, or nothing when it exists, carries
# RECIPE in its ci.recipe label and FORCE is 0.
why_rebuild() {
  local image="$1" recipe="$2" force="$3" label
  if ! label="$(image_label "$image" ci.recipe)"; then
    printf 'image %s does not exist\n' "$image"
  elif [ -z "$label" ]; then
    printf 'the recipe changed: image %s has no ci.recipe label (current recipe %s)\n' "$image" "${recipe:0:12}"
  elif [ "$label" != "$recipe" ]; then
    printf 'the recipe changed: image %s has recipe %s, the current recipe is %s\n' "$image" "${label:0:12}" "${recipe:0:12}"
  elif [ "$force" = 1 ]; then
    printf -- '--force given (the image is up to date, recipe %s)\n' "${recipe:0:12}"
  fi
}

# decide_rebuild IMAGE RECIPE FORCE CHECK [NOTE]: exits 0 when IMAGE is up to date (saying so, with
# NOTE after the recipe), exits 3 when CHECK is 1 and it would be rebuilt, else sets
# REBUILD_REASON to why it must be built.
decide_rebuild() {
  local image="$1" recipe="$2" force="$3" check="$4" note="${5:-}"
  REBUILD_REASON="$(why_rebuild "$image" "$recipe" "$force")"
  if [ -z "$REBUILD_REASON" ]; then
    log "image $image is up to date (recipe ${recipe:0:12}$note)"
    exit 0
  fi
  if [ "$check" = 1 ]; then
    log "would rebuild $image: $REBUILD_REASON"
    exit 3
  fi
}

# take_lock FILE: one build at a time on this machine; a second caller waits for the first.
# Uses file descriptor 9.
take_lock() {
  exec 9>>"$1" || die "cannot open the lock file $1: run as root, or make /var/lock writable"
  if ! flock -n 9; then
    log "another build is running; waiting for it (lock $1)"
    flock 9
  fi
}

# --- cleanup -----------------------------------------------------------------------------------
_cleanup_dirs=()
_cleanup_images=()
_deboot_pid=""

cleanup_dir() { _cleanup_dirs+=("$1"); }
cleanup_image() { _cleanup_images+=("$1"); }

_cleanup() {
  local d m i
  # Stop an unfinished debootstrap (its own process group) and let it unmount what it mounted.
  if [ -n "$_deboot_pid" ] && kill -0 "$_deboot_pid" 2>/dev/null; then
    kill -TERM -- "-$_deboot_pid" 2>/dev/null || true
    wait "$_deboot_pid" 2>/dev/null || true
  fi
  for d in ${_cleanup_dirs[@]+"${_cleanup_dirs[@]}"}; do
    [ -d "$d" ] || continue
    # debootstrap mounts /proc, /sys, ... in the target; never rm -rf through a live mount.
    awk -v d="$d" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$d"
  done
  for i in ${_cleanup_images[@]+"${_cleanup_images[@]}"}; do
    docker image rm "$i" >/dev/null 2>&1 || true
  done
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# make_workdir NAME: a fresh folder under $CI_RUNNER_BUILD_DIR (removed on exit); prints its path.
make_workdir() {
  local parent="${CI_RUNNER_BUILD_DIR:-/var/tmp}" dir
  mkdir -p "$parent" || die "cannot create $parent: set CI_RUNNER_BUILD_DIR to a writable folder"
  dir="$(mktemp -d "$parent/$1.XXXXXX")" || die "cannot create a folder in $parent"
  printf '%s\n' "$dir"
}

# --- the Debian mirror -------------------------------------------------------------------------
# find_mirror SUITE: the first URI of the machine's apt sources that serves SUITE (type deb), from
# deb822 *.sources files and one-line *.list files. Comments and [options] are ignored.
find_mirror() {
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v suite="$suite" '
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
        awk -v suite="$suite" '
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

# debian_mirror SUITE: $CI_DEBIAN_MIRROR, else the mirror of the machine's apt sources; prints it.
debian_mirror() {
  local mirror="${CI_DEBIAN_MIRROR:-}"
  if [ -n "$mirror" ]; then
    log "using Debian mirror $mirror (from CI_DEBIAN_MIRROR)"
  else
    mirror="$(find_mirror "$1")"
    [ -n "$mirror" ] || die "no Debian mirror for suite '$1' found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{sources,list}: add one there, or set CI_DEBIAN_MIRROR=URL"
    log "using Debian mirror $mirror (from the machine's apt sources)"
  fi
  printf '%s\n' "$mirror"
}

# --- the root filesystem -----------------------------------------------------------------------
# debootstrap_rootfs SUITE PACKAGES ROOTFS: `debootstrap --variant=minbase` of SUITE with the
# comma-separated PACKAGES into ROOTFS (whose parent is a folder from make_workdir), with the
# shared .deb cache. Needs root.
debootstrap_rootfs() {
  local suite="$1" packages="$2" rootfs="$3" mirror cache_dir start log_file
  [ "$(id -u)" = 0 ] || die "building the image needs root (debootstrap/chroot): run it as root, e.g. sudo $0"
  PATH="$PATH:/usr/sbin:/sbin"
  command -v debootstrap >/dev/null 2>&1 \
    || die "debootstrap is not installed: apt-get install -y debootstrap (or run scripts/ensure-docker.sh)"
  mirror="$(debian_mirror "$suite")"
  cache_dir="$(debootstrap_cache)"
  log_file="$(dirname "$rootfs")/debootstrap.log"
  start=$SECONDS
  log "debootstrap $suite into $rootfs (packages: $packages)"
  # In the background, in its own process group, so that a signal to this script is handled at
  # once (bash runs traps only between foreground commands) and stops all of debootstrap's children.
  setsid debootstrap --variant=minbase --include="$packages" --cache-dir="$cache_dir" \
    "$suite" "$rootfs" "$mirror" >"$log_file" 2>&1 </dev/null &
  _deboot_pid=$!
  if ! wait "$_deboot_pid"; then
    _deboot_pid=""
    tail -n 30 "$log_file" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (log above). If it could not download, check that $mirror is reachable (apt-get update) or set CI_DEBIAN_MIRROR=URL; if the target is noexec/nodev, set CI_RUNNER_BUILD_DIR to a directory on a normal filesystem"
  fi
  _deboot_pid=""
  log "debootstrap done in $((SECONDS - start))s"
}

# debootstrap_cache: the folder of downloaded .debs (and other downloads), created if needed.
debootstrap_cache() {
  local dir="${CI_DEBOOTSTRAP_CACHE:-/var/cache/ci-runner-debootstrap}"
  mkdir -p "$dir" || die "cannot create $dir: set CI_DEBOOTSTRAP_CACHE to a writable folder"
  printf '%s\n' "$dir"
}

# add_user ROOTFS NAME UID GID HOME COMMENT: a user and its group (passwd, group, shadow, gshadow)
# with a home folder owned by it, unless they exist.
add_user() {
  local rootfs="$1" name="$2" uid="$3" gid="$4" home="$5" comment="$6"
  grep -q "^$name:" "$rootfs/etc/group" || echo "$name:x:$gid:" >>"$rootfs/etc/group"
  grep -q "^$name:" "$rootfs/etc/passwd" \
    || echo "$name:x:$uid:$gid:$comment:$home:/bin/sh" >>"$rootfs/etc/passwd"
  grep -q "^$name:" "$rootfs/etc/shadow" 2>/dev/null || echo "$name:*:19000:0:99999:7:::" >>"$rootfs/etc/shadow"
  [ -f "$rootfs/etc/gshadow" ] && { grep -q "^$name:" "$rootfs/etc/gshadow" || echo "$name:!::" >>"$rootfs/etc/gshadow"; }
  install -d -o "$uid" -g "$gid" -m 0755 "$rootfs$home"
}

# shrink_rootfs ROOTFS: drops apt lists and caches, docs, man/info pages, message translations,
# debootstrap leftovers and logs; empties resolv.conf and hostname (Docker provides them).
shrink_rootfs() {
  local rootfs="$1"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
         "$rootfs"/usr/share/lintian "$rootfs"/var/log/* "$rootfs"/debootstrap
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
  : >"$rootfs/etc/resolv.conf"
  : >"$rootfs/etc/hostname"
}

# import_rootfs ROOTFS IMAGE [--change INSTRUCTION]...: loads ROOTFS into Docker as IMAGE.
import_rootfs() {
  local rootfs="$1" image="$2"
  shift 2
  log "importing the root filesystem into Docker"
  tar --numeric-owner -C "$rootfs" -c . | docker import "$@" - "$image" >/dev/null
}

# --- tagging -----------------------------------------------------------------------------------
# retag TMP IMAGE: gives the image TMP the tag IMAGE, then removes the image IMAGE named before
# unless something still uses it (a container, another tag).
retag() {
  local tmp="$1" image="$2" old_id
  old_id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  docker tag "$tmp" "$image"
  if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect -f '{{.Id}}' "$image")" ]; then
    docker image rm "$old_id" >/dev/null 2>&1 || true
  fi
}

# image_size IMAGE: its size in MiB.
image_size() {
  local size
  size="$(docker image inspect -f '{{.Size}}' "$1")"
  printf '%s MiB' "$((size / 1024 / 1024))"
}
