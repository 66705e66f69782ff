#!/usr/bin/env bash
# Makes sure a Chromium is installed for the browser tests (browser_test.go drives it with
# chromedp), and poppler's pdftoppm, with which they read back the ticket Chromium printed to PDF.
# Idempotent: when both are already there it only prints Chromium's version.
#
#   scripts/chromium.sh
#
# Installs Debian's "chromium" and "poppler-utils" packages with apt-get when missing; that needs
# root.
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

missing=()
find_chromium >/dev/null || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != "0" ]; then
    log "${missing[*]} not installed. Install as root with:"
    log "  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}"
    exit 1
  fi
  log "installing Debian's ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! bin="$(find_chromium)"; then
  log "apt-get installed chromium, but no chromium binary was found"
  exit 1
fi
# Debian's wrapper script can print shell warnings on stderr; the version is on stdout.
version="$("$bin" --version 2>/dev/null || true)"
echo "${version:-$bin (version unknown)}"
