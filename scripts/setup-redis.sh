#!/usr/bin/env bash
# Make sure Debian's redis-server is at /usr/bin/redis-server for the tests and bench.stocks.
#
# Idempotent: does nothing when it is installed. Otherwise installs the `redis-server` package with
# apt-get (through sudo when not root). The tests start their own server from it on a free
# loopback port in a temporary folder (tests/fakes/redis_server.py); the package's own system
# service is not needed and is not started here.
set -euo pipefail

REDIS=/usr/bin/redis-server

fail() {
    echo "setup-redis: error: $*" >&2
    exit 1
}

if [ -x "$REDIS" ]; then
    echo "setup-redis: $REDIS is installed: $("$REDIS" --version 2>/dev/null || echo '(version unknown)')"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || fail "$REDIS is missing and apt-get is not available; install Debian's 'redis-server' package by hand."

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo env)
else
    fail "$REDIS is missing; installing it needs root, and sudo is not available. Run as root: apt-get update && apt-get install -y redis-server"
fi

echo "setup-redis: $REDIS is missing; installing Debian's redis-server package with apt-get"
# policy-rc.d answer 101: the package must not start (or fail to start) a system service here.
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update \
    || fail "'apt-get update' failed (network or apt sources?)"
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends redis-server \
    || fail "'apt-get install -y redis-server' failed"

[ -x "$REDIS" ] || fail "the redis-server package installed, but $REDIS is still missing"
echo "setup-redis: installed $("$REDIS" --version)"
