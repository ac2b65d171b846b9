#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the managed-jobs dashboard test
# (crates/sky-jobs/tests/notice_dashboard.rs) and `cargo xtask ci`.
# Idempotent: does nothing when `chromium` is already on PATH. Starts nothing.
set -euo pipefail

if command -v chromium > /dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
# A stale package index fails the install; refresh only when the first try fails.
if ! $SUDO apt-get install -y -qq chromium > /dev/null 2>&1; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium > /dev/null
fi
command -v chromium
