#!/usr/bin/env bash
# Make sure headless Chromium and its WebDriver (chromedriver) are installed, for the web UI's
# browser tests (tests/tests/ui_browser.rs).
#
# Usage: scripts/ensure-browser.sh
#
# Installs Debian's chromium and chromium-driver with apt-get when `chromium` or `chromedriver` is
# missing (running `apt-get update` first only then); does nothing when both are there. Installing
# needs root. No browser is downloaded from anywhere but the Debian mirror.
set -euo pipefail

die() { printf 'ensure-browser: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'ensure-browser: %s\n' "$*" >&2; }

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi

[ "$(id -u)" = 0 ] || die "chromium or chromedriver is missing and installing them needs root: run this script as root (sudo $0), or apt-get install -y chromium chromium-driver"
command -v apt-get >/dev/null 2>&1 || die "chromium or chromedriver is missing and there is no apt-get here: install Chromium and its chromedriver with your package manager"

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -q >/dev/null || die "apt-get update failed: check /etc/apt/sources.list.d/ and the network, then rerun"
log "apt-get install -y chromium chromium-driver"
apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
  || die "apt-get install -y chromium chromium-driver failed (see the apt output above); fix it and rerun"
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
  || die "chromium-driver is installed but chromium or chromedriver is not on PATH ($PATH)"
log "installed $(chromium --version 2>/dev/null || echo chromium), $(chromedriver --version 2>/dev/null || echo chromedriver)"
