#!/usr/bin/env bash
# Proxy benchmark: the same fast upstream (nginx `return 200`, 1 worker) measured
#   direct      - wrk straight at the upstream,
#   rollbridge  - wrk through rollbridge's proxy (benches/proxy/driver.rs),
#   nginx       - wrk through nginx as a keep-alive reverse proxy (1 worker),
# each with keep-alive and `Connection: close` clients at c=1 and c=64.
#
# Usage: benches/proxy/run.sh            (from the repository root)
# Env:   DURATION=3s ROUNDS=3 (interleaved; the best round of each is kept)  WORKERS=N (rollbridge proxy threads; default: the daemon's choice for this machine)  CARGO_TARGET_DIR=...
#        DRIVER=<path> to use an already built proxy_driver instead of building one
#        PRELOAD=<lib> to run the proxy with LD_PRELOAD (e.g. another malloc)
#        BASELINE=<path> another proxy_driver (e.g. built from an earlier commit) measured
#          as a fourth target; medians over the rounds of its CPU/request and req/s
#          against rollbridge's are printed at the end
set -euo pipefail

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-}
BENCH_NAME=proxy
DRIVER_EXAMPLE=proxy_driver
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
UPSTREAM_PORT=$(free_port)
NGINX_PROXY_PORT=$(free_port)

write_nginx_conf upstream "
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { return 200 \"ok\n\"; }
  }"

# The same header work rollbridge does: X-Forwarded-For/-Proto/-Host/-Port.
write_nginx_conf nginxproxy "
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PROXY_PORT backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Forwarded-Port \$server_port;
      proxy_buffering off;
    }
  }"

start_nginx upstream
start_nginx nginxproxy
wait_port "$UPSTREAM_PORT"
wait_port "$NGINX_PROXY_PORT"

start_proxy_driver rollbridge "$UPSTREAM_PORT" "$DRIVER"
DRIVER_PID=$STARTED_PID ROLLBRIDGE_PORT=$STARTED_PORT

nginx_worker() { # name -> pid of its worker process
  local master
  master=$(cat "$WORK/$1/nginx.pid")
  pgrep -P "$master" | head -n1
}
BASELINE_PID= BASELINE_PORT=
if [ -n "${BASELINE:-}" ]; then
  start_proxy_driver baseline "$UPSTREAM_PORT" "$BASELINE"
  BASELINE_PID=$STARTED_PID BASELINE_PORT=$STARTED_PORT
fi

NGINX_PROXY_WORKER=$(nginx_worker nginxproxy)
CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() { # pid -> utime+stime (all threads)
  awk '{print $14 + $15}' "/proc/$1/stat"
}

declare -A RPS P50 P99 CPU ALL_RPS ALL_CPU
measure() { # label port conns mode(ka|close) warmup(0|1) [pid for cpu]
  local label=$1 port=$2 conns=$3 mode=$4 warmup=$5 pid=${6:-}
  local header=()
  [ "$mode" = close ] && header=(-H "Connection: close")
  if [ "$warmup" = 1 ]; then
    wrk -t1 -c"$conns" -d1s "${header[@]}" "http://127.0.0.1:$port/" >/dev/null 2>&1 || true
  fi
  local before=0 after=0
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local out
  out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency "${header[@]}" "http://127.0.0.1:$port/")
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  local key="$label/$mode/c$conns"
  local rps p50 p99 requests errors cpu="-"
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  [ -n "$errors" ] && echo "  $key: $errors" >&2
  if [ -n "$pid" ] && [ "${requests:-0}" -gt 0 ]; then
    cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" \
      'BEGIN { printf "%.1f", t * 1000000 / hz / n }')
  fi
  echo "  $key: $rps req/s, p50 $p50 us, p99 $p99 us, cpu $cpu us/req" >&2
  ALL_RPS[$key]+="$rps " ALL_CPU[$key]+="$cpu "
  # The machine is shared: noise only ever slows a run down, so keep the best one.
  if [ -z "${RPS[$key]:-}" ] || awk -v a="$rps" -v b="${RPS[$key]}" 'BEGIN { exit !(a > b) }'; then
    RPS[$key]=$rps P50[$key]=$p50 P99[$key]=$p99 CPU[$key]=$cpu
  fi
}

echo "measuring ($ROUNDS interleaved rounds of $DURATION, rollbridge with ${WORKERS:-default} proxy threads${PRELOAD:+, LD_PRELOAD=$PRELOAD})" >&2
for mode in ka close; do
  for conns in 1 64; do
    for round in $(seq 1 "$ROUNDS"); do
      warm=$([ "$round" = 1 ] && echo 1 || echo 0)
      measure direct "$UPSTREAM_PORT" "$conns" "$mode" "$warm"
      measure rollbridge "$ROLLBRIDGE_PORT" "$conns" "$mode" "$warm" "$DRIVER_PID"
      measure nginx "$NGINX_PROXY_PORT" "$conns" "$mode" "$warm" "$NGINX_PROXY_WORKER"
      if [ -n "$BASELINE_PORT" ]; then
        measure baseline "$BASELINE_PORT" "$conns" "$mode" "$warm" "$BASELINE_PID"
      fi
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

echo
echo "| run | direct req/s | rollbridge req/s | nginx proxy req/s | rb/direct | rb/nginx | p50 us (direct / rb / nginx) | p99 us (direct / rb / nginx) | CPU us/req (rb / nginx) |"
echo "|---|---|---|---|---|---|---|---|---|"
for mode in ka close; do
  for conns in 1 64; do
    d="direct/$mode/c$conns" r="rollbridge/$mode/c$conns" n="nginx/$mode/c$conns"
    name=$([ "$mode" = ka ] && echo keep-alive || echo "Connection: close")
    echo "| $name c=$conns | ${RPS[$d]} | ${RPS[$r]} | ${RPS[$n]} | $(ratio "${RPS[$r]}" "${RPS[$d]}") | $(ratio "${RPS[$r]}" "${RPS[$n]}") | ${P50[$d]} / ${P50[$r]} / ${P50[$n]} | ${P99[$d]} / ${P99[$r]} / ${P99[$n]} | ${CPU[$r]} / ${CPU[$n]} |"
  done
done
added=$(awk -v r="${P50[rollbridge/ka/c1]}" -v d="${P50[direct/ka/c1]}" 'BEGIN { printf "%.0f", r - d }')
added_nginx=$(awk -v r="${P50[nginx/ka/c1]}" -v d="${P50[direct/ka/c1]}" 'BEGIN { printf "%.0f", r - d }')
echo
echo "p50 latency added at c=1 (keep-alive): rollbridge ${added} us, nginx ${added_nginx} us"

if [ -n "$BASELINE_PORT" ]; then
  echo
  echo "Medians over $ROUNDS rounds, rollbridge (this build) against BASELINE ($BASELINE):"
  echo
  echo "| run | CPU us/req rollbridge | CPU us/req baseline | CPU ratio | req/s rollbridge | req/s baseline | req/s ratio |"
  echo "|---|---|---|---|---|---|---|"
  for mode in ka close; do
    for conns in 1 64; do
      r="rollbridge/$mode/c$conns" b="baseline/$mode/c$conns"
      name=$([ "$mode" = ka ] && echo keep-alive || echo "Connection: close")
      rc=$(middle_value <<<"${ALL_CPU[$r]}") bc=$(middle_value <<<"${ALL_CPU[$b]}")
      rr=$(middle_value <<<"${ALL_RPS[$r]}") br=$(middle_value <<<"${ALL_RPS[$b]}")
      echo "| $name c=$conns | $rc | $bc | $(ratio "$rc" "$bc") | $rr | $br | $(ratio "$rr" "$br") |"
    done
  done
fi
