#!/usr/bin/env bash
# Makes sure a Chromium is installed for the browser test (browser_test.go drives it with
# chromedp). Idempotent: when Chromium is already there it only prints its version.
#
#   scripts/chromium.sh
#
# Installs Debian's "chromium" package with apt-get when it is missing; that needs root.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_chromium() {
  if [ -x /usr/bin/chromium ]; then
    echo /usr/bin/chromium
  elif command -v chromium >/dev/null 2>&1; then
    command -v chromium
  else
    return 1
  fi
}

if bin="$(find_chromium)"; then
  # Debian's wrapper script can print shell warnings on stderr; the version is on stdout.
  version="$("$bin" --version 2>/dev/null || true)"
  echo "${version:-$bin (version unknown)}"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  log "Chromium is not installed. Install it as root with:"
  log "  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium"
  exit 1
fi

log "installing Debian's chromium package"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

if ! bin="$(find_chromium)"; then
  log "apt-get installed chromium, but no chromium binary was found"
  exit 1
fi
version="$("$bin" --version 2>/dev/null || true)"
echo "${version:-$bin (version unknown)}"
