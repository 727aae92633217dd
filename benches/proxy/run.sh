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

write_nginx_conf() { # name body
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/$1/body;
  proxy_temp_path $WORK/$1/proxy;
  fastcgi_temp_path $WORK/$1/fastcgi;
  uwsgi_temp_path $WORK/$1/uwsgi;
  scgi_temp_path $WORK/$1/scgi;
$2
}
EOF
}

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

start_nginx() { # name
  "$NGINX" -c "$WORK/$1/nginx.conf" -p "$WORK/$1" >/dev/null 2>&1 &
  PIDS+=($!)
}

wait_port() { # port
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

start_nginx upstream
start_nginx nginxproxy
wait_port "$UPSTREAM_PORT"
wait_port "$NGINX_PROXY_PORT"

LD_PRELOAD=${PRELOAD:-} "$DRIVER" --listen 127.0.0.1:0 --upstream "127.0.0.1:$UPSTREAM_PORT" ${WORKERS:+--workers "$WORKERS"} \
  >"$WORK/driver.log" 2>&1 &
DRIVER_PID=$!
PIDS+=("$DRIVER_PID")
for _ in $(seq 1 200); do
  grep -q '^listening ' "$WORK/driver.log" && break
  sleep 0.05
done
ROLLBRIDGE_PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$WORK/driver.log")
[ -n "$ROLLBRIDGE_PORT" ] || { cat "$WORK/driver.log" >&2; exit 1; }

nginx_worker() { # name -> pid of its worker process
  local master
  master=$(cat "$WORK/$1/nginx.pid")
  pgrep -P "$master" | head -n1
}
BASELINE_PID= BASELINE_PORT=
if [ -n "${BASELINE:-}" ]; then
  LD_PRELOAD=${PRELOAD:-} "$BASELINE" --listen 127.0.0.1:0 --upstream "127.0.0.1:$UPSTREAM_PORT" ${WORKERS:+--workers "$WORKERS"} \
    >"$WORK/baseline.log" 2>&1 &
  BASELINE_PID=$!
  PIDS+=("$BASELINE_PID")
  for _ in $(seq 1 200); do
    grep -q '^listening ' "$WORK/baseline.log" && break
    sleep 0.05
  done
  BASELINE_PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$WORK/baseline.log")
  [ -n "$BASELINE_PORT" ] || { cat "$WORK/baseline.log" >&2; exit 1; }
fi

NGINX_PROXY_WORKER=$(nginx_worker nginxproxy)
CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() { # pid -> utime+stime (all threads)
  awk '{print $14 + $15}' "/proc/$1/stat"
}

to_us() { # wrk latency like 85.00us / 1.20ms / 1.01s -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /s$/) print n * 1000000; else print n }'
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
  median() { tr ' ' '\n' | sed '/^$/d;/^-$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
  echo
  echo "Medians over $ROUNDS rounds, rollbridge (this build) against BASELINE ($BASELINE):"
  echo
  echo "| run | CPU us/req rollbridge | CPU us/req baseline | CPU ratio | req/s rollbridge | req/s baseline | req/s ratio |"
  echo "|---|---|---|---|---|---|---|"
  for mode in ka close; do
    for conns in 1 64; do
      r="rollbridge/$mode/c$conns" b="baseline/$mode/c$conns"
      name=$([ "$mode" = ka ] && echo keep-alive || echo "Connection: close")
      rc=$(median <<<"${ALL_CPU[$r]}") bc=$(median <<<"${ALL_CPU[$b]}")
      rr=$(median <<<"${ALL_RPS[$r]}") br=$(median <<<"${ALL_RPS[$b]}")
      echo "| $name c=$conns | $rc | $bc | $(ratio "$rc" "$bc") | $rr | $br | $(ratio "$rr" "$br") |"
    done
  done
fi
