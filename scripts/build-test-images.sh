#!/usr/bin/env bash
# Build the image the tests need besides the runner image: the runner image without any user for
# uid 1000 (offline, no registry, no root needed).
#
# Usage: scripts/build-test-images.sh [--force] [--base IMAGE] [--tag TAG]
#
#   --base IMAGE  image to derive from (default: $CI_RUNNER_IMAGE, else ci-runner:bookworm)
#   --tag TAG     image to build (default: $CI_TEST_IMAGE_NOPASSWD, else ci-runner:bookworm-nopasswd)
#   --force       rebuild even if the image is up to date
#
# TAG is BASE with every passwd and group entry for uid/gid 1000 removed (/etc/passwd, /etc/group,
# the matching /etc/shadow and /etc/gshadow lines, and their "-" backups) and without that user's
# home directory (/home/runner), so that nothing names uid 1000: like python:3.12-slim, where the
# uid a job runs as has no user. Env, WorkingDir, Cmd, Entrypoint and User stay those of BASE.
# TAG carries the label ci.base=<ID of BASE>. The script does nothing when TAG exists with the
# current ID of BASE, and rebuilds it otherwise (e.g. after scripts/build-runner-image.sh rebuilt
# the base). It refuses to replace an image TAG that it did not build (no ci.base label) unless
# --force. Needs a reachable Docker daemon and the base image (scripts/build-runner-image.sh).
set -euo pipefail

base="${CI_RUNNER_IMAGE:-ci-runner:bookworm}"
tag="${CI_TEST_IMAGE_NOPASSWD:-ci-runner:bookworm-nopasswd}"
force=0

die() { printf 'build-test-images: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-test-images: %s\n' "$*" >&2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --base) [ $# -ge 2 ] || die "--base needs a value, e.g. --base ci-runner:bookworm"; base="$2"; shift ;;
    --base=*) base="${1#--base=}" ;;
    --tag) [ $# -ge 2 ] || die "--tag needs a value, e.g. --tag ci-runner:bookworm-nopasswd"; tag="$2"; shift ;;
    --tag=*) tag="${1#--tag=}" ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    *) printf 'build-test-images: unknown argument: %s\n' "$1" >&2
       printf 'usage: %s [--force] [--base IMAGE] [--tag TAG]\n' "$0" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$base" ] || die "the base image is empty: pass --base IMAGE or set CI_RUNNER_IMAGE"
[ -n "$tag" ] || die "the image tag is empty: pass --tag TAG or set CI_TEST_IMAGE_NOPASSWD"
[ "$base" != "$tag" ] || die "--base and --tag name the same image ($tag): pass another --tag"

command -v docker >/dev/null 2>&1 \
  || die "the docker CLI is not installed: run scripts/ensure-docker.sh (as root)"
docker info >/dev/null 2>&1 \
  || die "Docker is not reachable (docker info failed): run scripts/ensure-docker.sh (as root), or set DOCKER_HOST to a running daemon"

inspect() { docker image inspect --format "$1" "$2" 2>/dev/null; }
short() { local id="${1#sha256:}"; printf '%s' "${id:0:12}"; }

base_id="$(inspect '{{.Id}}' "$base")" \
  || die "the base image $base is missing: build it with scripts/build-runner-image.sh --tag $base (or pass --base IMAGE)"

# Prints why $tag must be built, or nothing when it exists and was built from the current base.
# Fails when $tag is an image this script did not build.
why_build() {
  local label
  if ! label="$(inspect '{{index .Config.Labels "ci.base"}}' "$tag")"; then
    printf 'image %s does not exist\n' "$tag"
  elif [ "$force" = 1 ]; then
    printf -- '--force given\n'
  elif [ -z "$label" ]; then
    die "image $tag exists but was not built by this script (it has no ci.base label): refusing to replace it; pass another --tag, or --force to replace it"
  elif [ "$label" != "$base_id" ]; then
    printf 'its base changed (built from %s, %s is now %s)\n' "$(short "$label")" "$base" "$(short "$base_id")"
  fi
}

reason="$(why_build)" || exit 1
if [ -z "$reason" ]; then
  log "image $tag is up to date (base $base $(short "$base_id"))"
  exit 0
fi

# One build at a time on this machine where the lock directory is writable; a second caller
# waits and then finds the image.
lock_file=/var/lock/ci-test-images.lock
if { exec 9>>"$lock_file"; } 2>/dev/null; then
  if ! flock -n 9; then
    log "another build is running; waiting for it (lock $lock_file)"
    flock 9
  fi
  reason="$(why_build)" || exit 1
  if [ -z "$reason" ]; then
    log "image $tag is up to date (base $base $(short "$base_id"), built by a concurrent run)"
    exit 0
  fi
fi
log "building $tag from $base ($(short "$base_id")): $reason"
start=$SECONDS

old_id="$(inspect '{{.Id}}' "$tag" || true)"
old_base="$(inspect '{{index .Config.Labels "ci.base"}}' "$tag" || true)"
container="ci-test-image-build-$$"
tmp_tag="ci-test-image-build-$$:tmp"
cleanup() {
  docker rm -f "$container" >/dev/null 2>&1 || true
  docker image rm "$tmp_tag" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs as root in the container (the image's default user when it sets none).
edit_script='
set -eu
tmp=/tmp/.ci-passwd-edit
names=$(awk -F: "\$3 == 1000 { print \$1 }" /etc/passwd /etc/group | sort -u)
homes=$(awk -F: "\$3 == 1000 { print \$6 }" /etc/passwd)
for f in /etc/passwd /etc/passwd- /etc/group /etc/group-; do
  [ -f "$f" ] || continue
  awk -F: "\$3 != 1000" "$f" >"$tmp"
  cat "$tmp" >"$f"
done
for n in $names; do
  for f in /etc/shadow /etc/shadow- /etc/gshadow /etc/gshadow-; do
    [ -f "$f" ] || continue
    awk -F: -v n="$n" "\$1 != n" "$f" >"$tmp"
    cat "$tmp" >"$f"
  done
done
rm -f "$tmp"
for h in $homes; do
  case "$h" in /home/?*) rm -rf "$h" ;; esac
done
rm -rf /home/runner
if awk -F: "\$3 == 1000 { found = 1 } END { exit !found }" /etc/passwd /etc/group; then
  echo "uid/gid 1000 still has an entry in /etc/passwd or /etc/group" >&2
  exit 1
fi
'

# `docker commit` keeps the container's config, which includes `docker run`'s overrides (the
# command, --user, --entrypoint): put the base's values back.
base_user="$(inspect '{{.Config.User}}' "$base")"
base_cmd="$(inspect '{{json .Config.Cmd}}' "$base")"
base_entrypoint="$(inspect '{{json .Config.Entrypoint}}' "$base")"
run_args=(--name "$container" --network none)
changes=(--change "LABEL ci.base=$base_id")
if [ -n "$base_user" ]; then
  run_args+=(--user 0)
  changes+=(--change "USER $base_user")
fi
if [ "$base_entrypoint" != null ]; then
  run_args+=(--entrypoint /bin/sh)
  command=(-c "$edit_script")
  changes+=(--change "ENTRYPOINT $base_entrypoint")
else
  command=(/bin/sh -c "$edit_script")
fi
[ "$base_cmd" = null ] || changes+=(--change "CMD $base_cmd")

if ! out="$(docker run "${run_args[@]}" "$base" "${command[@]}" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "removing the uid 1000 entries in a container of $base failed (output above): the base needs /bin/sh and awk"
fi
docker commit "${changes[@]}" "$container" "$tmp_tag" >/dev/null

config='{{json .Config.Env}} {{json .Config.WorkingDir}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.User}}'
[ "$(inspect "$config" "$tmp_tag")" = "$(inspect "$config" "$base")" ] \
  || die "the derived image's Env/WorkingDir/Cmd/Entrypoint/User differ from $base's: $(inspect "$config" "$tmp_tag") vs $(inspect "$config" "$base")"

# Only a working image gets the real tag: uid 1000 has no user, and pytest still runs as it.
check='import pwd, grp, sys
for lookup, what in ((pwd.getpwuid, "passwd"), (grp.getgrgid, "group")):
    try:
        lookup(1000)
    except KeyError:
        continue
    sys.exit("1000 still has a %s entry" % what)'
if ! out="$(docker run --rm --network none --user 1000:1000 --entrypoint /bin/sh "$tmp_tag" \
      -c 'python3 -c "$1" && python3 -m pytest --version' sh "$check" 2>&1)"; then
  printf '%s\n' "$out" >&2
  die "the derived image fails its check (output above); rerun with --force after fixing the cause"
fi

docker tag "$tmp_tag" "$tag"
new_id="$(inspect '{{.Id}}' "$tag")"
# The image this run replaced, and the base it was built from, are left untagged; drop them unless
# something still uses them (a container, another image). Never remove an image that has a tag.
for id in "$old_id" "$old_base"; do
  [ -n "$id" ] && [ "$id" != "$new_id" ] && [ "$id" != "$base_id" ] || continue
  [ "$(inspect '{{len .RepoTags}}' "$id" || echo gone)" = 0 ] || continue
  docker image rm "$id" >/dev/null 2>&1 || true
done
log "built $tag from $base ($(short "$base_id"), $out) in $((SECONDS - start))s"
