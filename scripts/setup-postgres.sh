#!/usr/bin/env bash
# Make sure Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) are installed for the
# tests and the benchmarks' PostgreSQL runs, and that a non-root user can run them.
#
# Idempotent: does nothing when they are installed. Otherwise installs the `postgresql` package with
# apt-get (through sudo when not root). The tests start their own server from it in a temporary
# cluster on a free loopback port (tests/fakes/postgres_server.py); the package's own system
# service is not needed and is not started here. initdb refuses to run as root, so when this runs
# as root it also makes sure the system user `desk-pg` exists (no login, no home): the tests run
# the server as that user when they themselves run as root.
set -euo pipefail

fail() {
    echo "setup-postgres: error: $*" >&2
    exit 1
}

find_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
            echo "$d"
        fi
    done | sort -V | tail -n 1
}

ensure_user() {
    if [ "$(id -u)" -eq 0 ] && ! id desk-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin desk-pg \
            || fail "could not create the system user desk-pg (initdb does not run as root)"
        echo "setup-postgres: created the system user desk-pg to run the tests' server"
    fi
}

BIN=$(find_bin)
if [ -n "$BIN" ]; then
    echo "setup-postgres: $BIN is installed: $("$BIN/postgres" --version 2>/dev/null || echo '(version unknown)')"
    ensure_user
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || fail "PostgreSQL's server binaries are missing and apt-get is not available; install Debian's 'postgresql' package by hand."

if [ "$(id -u)" -eq 0 ]; then
    as_root=(env)
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo env)
else
    fail "PostgreSQL is missing; installing it needs root, and sudo is not available. Run as root: apt-get update && apt-get install -y postgresql"
fi

echo "setup-postgres: PostgreSQL is missing; installing Debian's postgresql package with apt-get"
# RUNLEVEL=1: the package must not start (or fail to start) a system service here.
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update \
    || fail "'apt-get update' failed (network or apt sources?)"
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y --no-install-recommends postgresql \
    || fail "'apt-get install -y postgresql' failed"

BIN=$(find_bin)
[ -n "$BIN" ] || fail "the postgresql package installed, but initdb/pg_ctl/postgres are still missing under /usr/lib/postgresql"
ensure_user
echo "setup-postgres: installed $("$BIN/postgres" --version)"
