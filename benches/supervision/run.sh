#!/usr/bin/env bash
# Supervision benchmark: daemon CPU, RSS, `status` time, deploy and retirement
# time with 50 / 200 / 1,000 memory-supervised replicas, the current build
# against a baseline build (default: commit 50d552a, before the sampler) in the
# same run. Also times one /proc pass three ways (proc_pass.rs). See README.md.
#
# Usage: benches/supervision/run.sh
# Env:   REPLICAS=50,200,1000  BASELINE_REV=50d552a  BASELINE=<binary> (skip its build)
#        ROLLBRIDGE=<binary> (skip the current build)  RESULTS=<file> (JSON)
#        CARGO_TARGET_DIR=...  KEEP=1 (keep the scratch dir)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
BASELINE_REV=${BASELINE_REV:-50d552a}
REPLICAS=${REPLICAS:-50,200,1000}

if [ -z "${ROLLBRIDGE:-}" ]; then
  echo "building rollbridge (release)" >&2
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bin rollbridge --example proc_pass)
  ROLLBRIDGE=$TARGET_DIR/release/rollbridge
fi
if [ -z "${BASELINE:-}" ]; then
  # The baseline's sources are exported from git into a directory of their own
  # and built with their own target dir (kept, so a second run does not rebuild).
  BASE_SRC=$TARGET_DIR/supervision-baseline/$BASELINE_REV
  if [ ! -x "$BASE_SRC/target/release/rollbridge" ]; then
    echo "building the baseline $BASELINE_REV (release; once)" >&2
    mkdir -p "$BASE_SRC"
    (cd "$REPO" && git archive "$BASELINE_REV") | tar -x -C "$BASE_SRC"
    (cd "$BASE_SRC" && CARGO_TARGET_DIR=$BASE_SRC/target cargo build --release --quiet --bin rollbridge)
  fi
  BASELINE=$BASE_SRC/target/release/rollbridge
fi

# Every replica holds two pipes in the daemon, and a stop opens a pidfd each.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || ulimit -n "$hard"

WORK=$(mktemp -d /tmp/rollbridge-supervision.XXXXXX)
mkdir -p "$WORK/baseline" "$WORK/current"
cp "$BASELINE" "$WORK/baseline/rollbridge-baseline"
cp "$ROLLBRIDGE" "$WORK/current/rollbridge-current"
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "scratch dir kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# One /proc pass three ways, with 1,000 extra processes on the machine.
if [ -x "$TARGET_DIR/release/examples/proc_pass" ]; then
  pids=()
  for _ in $(seq 1000); do sleep 600 & pids+=($!); done
  echo "one /proc pass (median µs):" >&2
  "$TARGET_DIR/release/examples/proc_pass" 101
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
fi

args=(--baseline "$WORK/baseline/rollbridge-baseline" --current "$WORK/current/rollbridge-current"
  --work "$WORK" --replicas "$REPLICAS")
[ -n "${RESULTS:-}" ] && args+=(--json "$RESULTS")
python3 "$HERE/supervision.py" "${args[@]}"
