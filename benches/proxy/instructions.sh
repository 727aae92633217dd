#!/usr/bin/env bash
# Instructions per request of two proxy_driver builds, counted with callgrind
# (user space, all threads), so a change can be compared on a busy machine where
# wall-clock and CPU-time numbers swing by tens of percent. The upstream is the same
# nginx `return 200` as in run.sh.
#
# For each round and each build: start the driver under callgrind, warm up 1 s with
# wrk, zero the counters, run wrk for DURATION (keep-alive, then `Connection: close`,
# each on a fresh start), dump, and divide the instruction total by wrk's request
# count. Reports the median over ROUNDS and the ratio NEW/BASE.
#
# Usage: NEW=<proxy_driver> BASE=<proxy_driver> benches/proxy/instructions.sh
# Env:   DURATION=5s ROUNDS=3 CONNS=8
set -euo pipefail

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-8}
: "${NEW:?NEW=<path of the proxy_driver to measure>}"
: "${BASE:?BASE=<path of the proxy_driver to compare with>}"
BENCH_NAME=proxy-instructions
DRIVER=$NEW # common.sh: nothing to build
DRIVER_EXAMPLE=proxy_driver
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
UPSTREAM_PORT=$(free_port)

write_nginx_conf upstream "
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { return 200 \"ok\\n\"; }
  }"
start_nginx upstream
wait_port "$UPSTREAM_PORT"

count() { # driver mode(ka|close) -> instructions per request
  local driver=$1 mode=$2 out="$WORK/callgrind.out"
  rm -f "$out"*
  start_proxy_driver callgrind "$UPSTREAM_PORT" valgrind --tool=callgrind --callgrind-out-file="$out" "$driver"
  local pid=$STARTED_PID port=$STARTED_PORT
  local header=()
  [ "$mode" = close ] && header=(-H "Connection: close")
  wrk -t1 -c"$CONNS" -d1s "${header[@]}" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  callgrind_control -z "$pid" >/dev/null
  local requests
  requests=$(wrk -t1 -c"$CONNS" -d"$DURATION" "${header[@]}" "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  # The dump after zeroing is the last numbered file; its totals line is the count.
  local dump
  dump=$(ls -t "$out".* 2>/dev/null | head -n1)
  awk -v n="$requests" '/^(summary|totals):/ { total = $2 } END { printf "%.0f", total / n }' "$dump"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }

declare -A ALL
for round in $(seq 1 "$ROUNDS"); do
  for mode in ka close; do
    for build in base new; do
      driver=$([ "$build" = new ] && echo "$NEW" || echo "$BASE")
      ir=$(count "$driver" "$mode")
      echo "  round $round $mode $build: $ir instructions/request" >&2
      ALL[$build/$mode]+="$ir "
    done
  done
done

echo
echo "| run (wrk -c$CONNS, median of $ROUNDS) | instructions/request BASE | NEW | NEW/BASE |"
echo "|---|---|---|---|"
for mode in ka close; do
  name=$([ "$mode" = ka ] && echo keep-alive || echo "Connection: close")
  b=$(middle_value <<<"${ALL[base/$mode]}") n=$(middle_value <<<"${ALL[new/$mode]}")
  echo "| $name | $b | $n | $(ratio "$n" "$b") |"
done
