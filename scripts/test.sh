#!/usr/bin/env bash
# The project's test command: Docker + runner image + build + the whole test suite.
#
# Usage: scripts/test.sh [NEXTEST ARGS...]
#   e.g. scripts/test.sh -E 'test(sse)'     # extra arguments go to `cargo nextest run`
#
# Runs scripts/ensure-docker.sh (with docker-compose, for the compose deployment's test),
# scripts/ensure-gvisor.sh (gVisor's runtimes, for the controller_gvisor tests),
# scripts/ensure-schemathesis.sh, scripts/ensure-browser.sh (headless Chromium and chromedriver
# for the web UI's tests), scripts/ensure-postgres.sh (PostgreSQL's server, for the tests that
# start throwaway clusters), scripts/build-runner-image.sh and scripts/build-test-images.sh (each
# does nothing when all is in place), builds every binary (the integration tests start the real
# ci-server/ci-controller, and deploy_compose puts them in the service image), then `cargo nextest
# run --workspace --no-fail-fast`, and then (without arguments) the end-to-end tests that touch the
# database once more on PostgreSQL (CI_TEST_DATABASE=postgres). The tests use the image in
# $CI_TEST_IMAGE (default:
# $CI_RUNNER_IMAGE, else ci-runner:bookworm, the image built here) and, where a job's uid must have
# no user, $CI_TEST_IMAGE_NOPASSWD (default ci-runner:bookworm-nopasswd, derived here from the
# runner image).
set -euo pipefail

die() { printf 'test.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'test.sh: %s\n' "$*" >&2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

runner_image="${CI_RUNNER_IMAGE:-ci-runner:bookworm}"
export CI_TEST_IMAGE="${CI_TEST_IMAGE:-$runner_image}"
export CI_TEST_IMAGE_NOPASSWD="${CI_TEST_IMAGE_NOPASSWD:-ci-runner:bookworm-nopasswd}"

scripts/ensure-docker.sh --compose
scripts/ensure-gvisor.sh
scripts/ensure-schemathesis.sh
scripts/ensure-browser.sh
scripts/ensure-postgres.sh
if [ "$CI_TEST_IMAGE" = "$runner_image" ]; then
  scripts/build-runner-image.sh --tag "$runner_image"
  scripts/build-test-images.sh --base "$runner_image" --tag "$CI_TEST_IMAGE_NOPASSWD"
else
  log "CI_TEST_IMAGE=$CI_TEST_IMAGE is not the runner image ($runner_image): not building it nor $CI_TEST_IMAGE_NOPASSWD; the tests use both as they are"
fi

# CI shells may not have rustup's bin directory on PATH.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
  PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then rerun"
cargo nextest --version >/dev/null 2>&1 \
  || die "cargo-nextest is not installed: cargo install cargo-nextest --locked, then rerun"

locked=()
[ -f Cargo.lock ] && locked=(--locked)

log "cargo build --workspace --bins ${locked[*]}"
cargo build --workspace --bins "${locked[@]}"

# The end-to-end tests that run again on PostgreSQL (CI_TEST_DATABASE=postgres makes
# ci_tests::TestDb a fresh database on a throwaway cluster): everything the API, the streams, the
# client, the controller's scheduling, recovery, steps, results, cache and artifacts do through the
# database. Left out: what does not touch the database differently (the sandbox, gVisor, images,
# project kinds, the browser, compose, the benchmarks' smoke test), what is SQLite's by nature
# (admin_import, admin_db_copy's source, admin_cache's hand-aged entries) and the tests that name PostgreSQL already.
postgres_e2e='(binary(/^server_/) | binary(/^client_/) | binary(compat_prototype) | binary(tasks)
  | binary(test_results) | binary(controller_recovery) | binary(controller_singleton)
  | binary(controller_fixtures) | binary(dependency_cache) | binary(ui_pages) | binary(admin)
  | binary(git_jobs) | binary(webhooks) | binary(key_scopes) | binary(quotas)
  | binary(retention) | binary(teams) | binary(secret_variables) | binary(audit))
  & !test(/_on_postgres$/)'

status=0
log "cargo nextest run --workspace --no-fail-fast $* (CI_TEST_IMAGE=$CI_TEST_IMAGE)"
cargo nextest run --workspace --no-fail-fast "$@" || status=$?
if [ $# -eq 0 ]; then
  log "the end-to-end tests again on PostgreSQL: CI_TEST_DATABASE=postgres, -E '$postgres_e2e'"
  # --workspace, as above: the same features, so nothing is built again.
  CI_TEST_DATABASE=postgres cargo nextest run --workspace --no-fail-fast \
    -E "package(ci-tests) & ($postgres_e2e)" || status=$?
fi
exit "$status"
