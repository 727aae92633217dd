#!/usr/bin/env bash
# Footprint benchmark: memory of the daemon (idle, one release, per idle WebSocket)
# and wall time of CLI commands and deploys. See README.md next to this file.
#
# Usage: benches/footprint/run.sh              (from anywhere)
# Env:   WEBSOCKETS=2000  RUNS=200 (per CLI timing)  DEPLOYS=10
#        CARGO_TARGET_DIR=...   ROLLBRIDGE=<path> to measure an already built binary
#        RESULTS=<file> to also write the numbers as JSON   KEEP=1 to keep the scratch dir
set -euo pipefail

WEBSOCKETS=${WEBSOCKETS:-2000}
RUNS=${RUNS:-200}
DEPLOYS=${DEPLOYS:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

if ! command -v hyperfine >/dev/null; then
  echo "installing hyperfine (Debian package)" >&2
  if ! { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }; then
    echo "hyperfine unavailable: CLI timings fall back to a python loop" >&2
  fi
fi

if [ -z "${ROLLBRIDGE:-}" ]; then
  echo "building rollbridge (release)" >&2
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin rollbridge)
  ROLLBRIDGE=$TARGET_DIR/release/rollbridge
fi

# Every WebSocket costs the daemon two descriptors (client and upstream side), and
# the client and the upstream app one each.
needed=$((2 * WEBSOCKETS + 256))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$needed" ]; then
  echo "the open-files hard limit ($hard) is below the $needed this run needs;" \
    "raise it (ulimit -Hn as root) or lower WEBSOCKETS" >&2
  exit 1
fi
ulimit -n "$hard"

WORK=$(mktemp -d /tmp/rollbridge-footprint.XXXXXX)
BENCH_PID=""
cleanup() {
  # footprint.py shuts its daemon down itself; this only covers it being killed.
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill "$BENCH_PID" 2>/dev/null || true
    wait "$BENCH_PID" 2>/dev/null || true
  fi
  if [ -S "$WORK/control.sock" ]; then
    "$ROLLBRIDGE" shutdown --config "$WORK/rollbridge.json" >/dev/null 2>&1 || true
  fi
  if [ -f "$WORK/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$WORK/pids"
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "scratch dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args=(--rollbridge "$ROLLBRIDGE" --work "$WORK" --websockets "$WEBSOCKETS"
  --runs "$RUNS" --deploys "$DEPLOYS")
[ -n "${RESULTS:-}" ] && args+=(--json "$RESULTS")
python3 "$HERE/footprint.py" "${args[@]}" &
BENCH_PID=$!
wait "$BENCH_PID"
