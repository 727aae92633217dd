#!/usr/bin/env bash
# What metrics and the access log cost the proxy: the same fast upstream (nginx
# `return 200`, 1 worker) measured through three proxies of the same build in
# one run,
#   off     - rollbridge's proxy without observability,
#   metrics - with request metrics and a /metrics listener scraped once a second,
#   on      - metrics as above plus a JSON access log,
# with interleaved rounds so machine noise hits all alike. Reported: requests
# per second (median and best round), the ratios to "off", CPU per request of
# the proxy process (its access log writer thread included), and whether the
# access log kept every line.
#
# Usage: benches/observability/run.sh          (from the repository root)
# Env:   DURATION=3s ROUNDS=8 WORKERS=N (proxy threads; default: the daemon's choice) CARGO_TARGET_DIR=...
#        DRIVER=<path> to use an already built proxy_driver
set -euo pipefail

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-8}
WORKERS=${WORKERS:-}
BENCH_NAME=observability
DRIVER_EXAMPLE=proxy_driver
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
UPSTREAM_PORT=$(free_port)

mkdir -p "$WORK/upstream"
cat >"$WORK/upstream/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/upstream/body;
  proxy_temp_path $WORK/upstream/proxy;
  fastcgi_temp_path $WORK/upstream/fastcgi;
  uwsgi_temp_path $WORK/upstream/uwsgi;
  scgi_temp_path $WORK/upstream/scgi;
  server {
    listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
    location / { return 200 "ok\n"; }
  }
}
CONF
"$NGINX" -c "$WORK/upstream/nginx.conf" -p "$WORK/upstream" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$UPSTREAM_PORT") 2>/dev/null && break
  sleep 0.05
done

declare -A PORT PID
start_driver() { # label extra-args...
  local label=$1
  shift
  "$DRIVER" --listen 127.0.0.1:0 --upstream "127.0.0.1:$UPSTREAM_PORT" ${WORKERS:+--workers "$WORKERS"} "$@" \
    >"$WORK/$label.out" 2>&1 &
  PID[$label]=$!
  PIDS+=("${PID[$label]}")
  for _ in $(seq 1 200); do
    grep -q '^listening ' "$WORK/$label.out" && break
    sleep 0.05
  done
  PORT[$label]=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$WORK/$label.out")
  [ -n "${PORT[$label]}" ] || { cat "$WORK/$label.out" >&2; exit 1; }
}
start_driver off
start_driver metrics --metrics 127.0.0.1:0
start_driver on --metrics 127.0.0.1:0 --access-log "$WORK/access.log" --format json
declare -A METRICS_PORT
for label in metrics on; do
  METRICS_PORT[$label]=$(sed -n 's/^metrics .*:\([0-9]*\)$/\1/p' "$WORK/$label.out")
done
LABELS=(off metrics on)

# A scraper like Prometheus, once a second, while a proxy with metrics is measured.
# One long-lived process per proxy, switched on by a flag file: starting a client
# (curl) every second would itself take CPU from the proxy being measured, which
# shows up as a metrics "cost" (it did: 6 % at c=1).
start_scraper() { # label port
  python3 - "$WORK/scrape.$1" "$2" <<'PY' &
import http.client, os, sys, time
flag, port = sys.argv[1], int(sys.argv[2])
while True:
    time.sleep(1)
    if os.path.exists(flag):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/metrics")
            connection.getresponse().read()
            connection.close()
        except OSError:
            pass
PY
  PIDS+=($!)
}
for label in metrics on; do
  start_scraper "$label" "${METRICS_PORT[$label]}"
done

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A SAMPLES CPU_SUM REQ_SUM
TOTAL_ON_REQUESTS=0
measure() { # label conns mode(ka|close)
  local label=$1 conns=$2 mode=$3
  local header=()
  [ "$mode" = close ] && header=(-H "Connection: close")
  touch "$WORK/scrape.$label"
  local before after out
  before=$(cpu_ticks "${PID[$label]}")
  out=$(wrk -t1 -c"$conns" -d"$DURATION" "${header[@]}" "http://127.0.0.1:${PORT[$label]}/")
  after=$(cpu_ticks "${PID[$label]}")
  rm -f "$WORK/scrape.$label"
  local key="$label/$mode/c$conns" rps requests
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  awk '/Non-2xx|Socket errors/' <<<"$out" | sed "s|^|  $key: |" >&2
  [ "$label" = on ] && TOTAL_ON_REQUESTS=$((TOTAL_ON_REQUESTS + requests))
  SAMPLES[$key]="${SAMPLES[$key]:-} $rps"
  CPU_SUM[$key]=$(( ${CPU_SUM[$key]:-0} + after - before ))
  REQ_SUM[$key]=$(( ${REQ_SUM[$key]:-0} + requests ))
  echo "  $key: $rps req/s" >&2
}

CONFIGS=("ka 1" "ka 64" "close 64")
echo "warming up" >&2
for config in "${CONFIGS[@]}"; do
  read -r mode conns <<<"$config"
  for label in "${LABELS[@]}"; do
    header=()
    [ "$mode" = close ] && header=(-H "Connection: close")
    wrk -t1 -c"$conns" -d1s "${header[@]}" "http://127.0.0.1:${PORT[$label]}/" >/dev/null 2>&1 || true
  done
done
WARMUP_LINES=$(wc -l <"$WORK/access.log")

echo "measuring ($ROUNDS interleaved rounds of $DURATION, ${WORKERS:-default} proxy threads)" >&2
for round in $(seq 1 "$ROUNDS"); do
  for config in "${CONFIGS[@]}"; do
    read -r mode conns <<<"$config"
    # Rotate which proxy goes first so none always gets the warmer machine.
    case $((round % 3)) in
      1) order=(off metrics on) ;;
      2) order=(on off metrics) ;;
      *) order=(metrics on off) ;;
    esac
    for label in "${order[@]}"; do
      measure "$label" "$conns" "$mode"
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
best() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -n1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
cpu_us() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", t * 1000000 / hz / n; else print "-" }'; }

kill -TERM "${PID[on]}"
wait "${PID[on]}" 2>/dev/null || true
DROPPED=$(sed -n 's/^access-log-dropped //p' "$WORK/on.out")
LINES=$(( $(wc -l <"$WORK/access.log") - WARMUP_LINES ))

echo
echo "| run | off req/s (median / best) | metrics req/s (median / best) | metrics + access log req/s (median / best) | metrics/off (median / best) | full/off (median / best) | CPU us/req off / metrics / full |"
echo "|---|---|---|---|---|---|---|"
for config in "${CONFIGS[@]}"; do
  read -r mode conns <<<"$config"
  off="off/$mode/c$conns" met="metrics/$mode/c$conns" on="on/$mode/c$conns"
  off_median=$(median <<<"${SAMPLES[$off]}") met_median=$(median <<<"${SAMPLES[$met]}") on_median=$(median <<<"${SAMPLES[$on]}")
  off_best=$(best <<<"${SAMPLES[$off]}") met_best=$(best <<<"${SAMPLES[$met]}") on_best=$(best <<<"${SAMPLES[$on]}")
  name=$([ "$mode" = ka ] && echo keep-alive || echo "Connection: close")
  echo "| $name c=$conns | $off_median / $off_best | $met_median / $met_best | $on_median / $on_best | $(ratio "$met_median" "$off_median") / $(ratio "$met_best" "$off_best") | $(ratio "$on_median" "$off_median") / $(ratio "$on_best" "$off_best") | $(cpu_us "${CPU_SUM[$off]}" "${REQ_SUM[$off]}") / $(cpu_us "${CPU_SUM[$met]}" "${REQ_SUM[$met]}") / $(cpu_us "${CPU_SUM[$on]}" "${REQ_SUM[$on]}") |"
done
echo
echo "access log: $LINES lines for $TOTAL_ON_REQUESTS measured requests, ${DROPPED:-?} dropped"
