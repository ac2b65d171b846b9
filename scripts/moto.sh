#!/usr/bin/env bash
# moto (AWS EC2/S3 emulator) for sky-rs tests and `cargo xtask emulators`.
#
#   scripts/moto.sh up     install moto into a venv (once) and start moto_server on 127.0.0.1
#   scripts/moto.sh down   stop the server this script started (by its recorded pid)
#   scripts/moto.sh env    print the environment a shell needs to talk to it
#
# Settings (environment): SKY_EMU_DIR (default /tmp/sky-emulators), SKY_MOTO_VENV (default
# $SKY_EMU_DIR/moto-venv, shared with the sky-cloud-aws test harness), MOTO_PORT (default 5000),
# MOTO_HOST (default 127.0.0.1; a test sets its own namespace bridge's address so that its
# namespace hosts reach moto too). moto listens on that one address only. Its instances get invented addresses (public 54.x, random
# private 10.x): never connect to them; see docs/ARCHITECTURE.md (AWS network safety).
set -euo pipefail
EMU=${SKY_EMU_DIR:-/tmp/sky-emulators}
VENV=${SKY_MOTO_VENV:-$EMU/moto-venv}
PORT=${MOTO_PORT:-5000}
HOST=${MOTO_HOST:-127.0.0.1}
PIDF=$EMU/moto.pid
LOG=$EMU/moto.log
mkdir -p "$EMU"

probe() { curl -sf -o /dev/null "http://$HOST:$PORT/moto-api/"; }

case "${1:-}" in
  up)
    if [ ! -x "$VENV/bin/moto_server" ]; then
      command -v python3 >/dev/null || { echo "moto.sh: python3 is missing" >&2; exit 1; }
      [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
      "$VENV/bin/pip" install -q 'moto[server]'
    fi
    if [ -f "$PIDF" ] && kill -0 "$(cat "$PIDF")" 2>/dev/null && probe; then
      echo "moto already up on $HOST:$PORT (pid $(cat "$PIDF"))"; exit 0
    fi
    MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true MOTO_ENABLE_AMI_VALIDATION=true \
    MOTO_ENABLE_KEYPAIR_VALIDATION=true \
      nohup "$VENV/bin/moto_server" -H "$HOST" -p "$PORT" >"$LOG" 2>&1 &
    echo $! >"$PIDF"
    for _ in $(seq 1 600); do probe && break; sleep 0.1; done
    probe || { echo "moto.sh: moto_server did not come up; see $LOG" >&2; exit 1; }
    echo "moto up on $HOST:$PORT (pid $(cat "$PIDF"))"
    ;;
  down)
    if [ -f "$PIDF" ]; then
      pid=$(cat "$PIDF")
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "moto_server -H $HOST -p $PORT"; then
        kill "$pid"
      fi
      rm -f "$PIDF"
    fi
    echo "moto down"
    ;;
  env)
    echo "export AWS_ENDPOINT_URL=http://$HOST:$PORT AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
    ;;
  *)
    echo "usage: $0 up|down|env" >&2; exit 2
    ;;
esac
