#!/usr/bin/env bash
# COPY benchmark: sky-storage's download engine vs `rclone copy`, same moto server, same data.
# Two datasets: FILES files totalling SIZE_MIB, and one SIZE_MIB file. Prints one line per run.
#
#   scripts/bench-storage-copy.sh            (SIZE_MIB=1024 FILES=1000 PROFILE=release; PROFILE=debug for a debug build)
#
# Needs moto (scripts/moto.sh) and rclone (Debian: apt-get install rclone). Heavy: run it under
# `flock /tmp/sky-heavy-tests.lock`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE_MIB=${SIZE_MIB:-1024}
FILES=${FILES:-1000}
PROFILE=${PROFILE:-release}
PORT=${BENCH_MOTO_PORT:-5917}
W=$(mktemp -d /tmp/sky-copy-bench.XXXXXX)
export SKY_EMU_DIR=$W/emu MOTO_PORT=$PORT
trap 'bash "$ROOT/scripts/moto.sh" down >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
command -v rclone >/dev/null || { echo "bench: rclone is missing (apt-get install rclone)" >&2; exit 1; }
SKY_MOTO_VENV=/tmp/sky-emulators/moto-venv bash "$ROOT/scripts/moto.sh" up >/dev/null
EP=http://127.0.0.1:$PORT

flag=(); [ "$PROFILE" = release ] && flag=(--release)
cargo build -q -p sky-storage --example copy_bench "${flag[@]}"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/examples/copy_bench

mkdir -p "$W/many" "$W/one"
per=$(( SIZE_MIB * 1024 / FILES ))
for i in $(seq 1 "$FILES"); do head -c "${per}K" /dev/urandom > "$W/many/f$i.bin"; done
head -c "${SIZE_MIB}M" /dev/urandom > "$W/one/big.bin"
"$BIN" upload "$EP" bench many/ "$W/many" >/dev/null
"$BIN" upload "$EP" bench one/ "$W/one" >/dev/null

export RCLONE_CONFIG_MOTO_TYPE=s3 RCLONE_CONFIG_MOTO_PROVIDER=Other RCLONE_CONFIG_MOTO_ENDPOINT=$EP \
  RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=testing RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=testing \
  RCLONE_CONFIG_MOTO_REGION=us-east-1
for set in many one; do
  rm -rf "$W/out"; mkdir "$W/out"
  echo "sky   $set ($SIZE_MIB MiB): $("$BIN" download "$EP" bench "$set/" "$W/out")"
  rm -rf "$W/out"; mkdir "$W/out"
  t0=$(date +%s.%N)
  env -u AWS_CA_BUNDLE rclone --config /dev/null copy "moto:bench/$set" "$W/out" --transfers 32 --multi-thread-streams 8
  t1=$(date +%s.%N)
  echo "rclone $set ($SIZE_MIB MiB): seconds=$(echo "$t1 - $t0" | bc -l | xargs printf '%.2f')"
done
