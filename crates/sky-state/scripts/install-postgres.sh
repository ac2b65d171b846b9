#!/usr/bin/env bash
# Installs the PostgreSQL server binaries the sky-state tests use (Debian/Ubuntu).
# Idempotent: does nothing when /usr/lib/postgresql/*/bin/initdb already exists.
# The tests start their own throwaway server; this script starts nothing.
set -euo pipefail

if compgen -G '/usr/lib/postgresql/*/bin/initdb' > /dev/null; then
    echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/bin | tr '\n' ' ')"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql > /dev/null
# Debian's postinst may start the system cluster; the tests do not use it.
ls -d /usr/lib/postgresql/*/bin
