#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the browser tests (tests/e2e).
#
# Idempotent: does nothing when it is already installed. Otherwise installs the `chromium`
# package with apt-get (through sudo when not root). It never downloads a browser from anywhere
# else: no `playwright install`, no snap, no vendor builds.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

fail() {
    echo "setup-chromium: error: $*" >&2
    exit 1
}

version() {
    # Debian's wrapper script may print shell noise on stderr; keep only the version line.
    "$CHROMIUM" --version 2>/dev/null || echo "(version unknown)"
}

if [ -x "$CHROMIUM" ]; then
    echo "setup-chromium: $CHROMIUM is installed: $(version)"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || fail "$CHROMIUM is missing and apt-get is not available; install Debian's 'chromium' package by hand."

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo env)
else
    fail "$CHROMIUM is missing; installing it needs root, and sudo is not available. Run as root: apt-get update && apt-get install -y chromium"
fi

echo "setup-chromium: $CHROMIUM is missing; installing Debian's chromium package with apt-get"
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update \
    || fail "'apt-get update' failed (network or apt sources?)"
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y chromium \
    || fail "'apt-get install -y chromium' failed; this needs Debian (or a distribution with a 'chromium' deb, not a snap)"

[ -x "$CHROMIUM" ] || fail "the chromium package installed, but $CHROMIUM is still missing"
echo "setup-chromium: installed $(version)"
