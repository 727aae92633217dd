#!/usr/bin/env bash
# Two-write app behind a keep-alive pool: an app that writes its response head and
# body separately with Nagle on (Python's http.server, benches/proxy/two_write_app.py)
# measured with one keep-alive wrk connection
#   direct-fresh - wrk straight at the app, `Connection: close` (a fresh connection
#                  per request: the latency the app is capable of),
#   direct-ka    - wrk straight at the app, keep-alive (wrk's own delayed ACK stalls),
#   rollbridge   - wrk through rollbridge's proxy (upstream keep-alive pool),
#   nginx        - wrk through nginx with `keepalive 16` to the app.
# Reports the median over ROUNDS of each round's p50 and p99.
#
# Usage: benches/proxy/nagle.sh            (from the repository root)
# Env:   DURATION=3s ROUNDS=5  DRIVER=<path> (an already built proxy_driver)
set -euo pipefail

DURATION=${DURATION:-3s}
ROUNDS=${ROUNDS:-5}
BENCH_NAME=proxy-nagle
DRIVER_EXAMPLE=proxy_driver
# shellcheck source=../common.sh
source "$(dirname "$0")/../common.sh"
APP_PORT=$(free_port)
NGINX_PORT=$(free_port)

python3 "$REPO/benches/proxy/two_write_app.py" "$APP_PORT" 2>"$WORK/app.log" &
PIDS+=($!)

write_nginx_conf nginx "
  upstream app { server 127.0.0.1:$APP_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Host \$http_host;
      proxy_buffering off;
    }
  }"
start_nginx nginx
start_proxy_driver rollbridge "$APP_PORT" "$DRIVER"
ROLLBRIDGE_PORT=$STARTED_PORT
wait_port "$APP_PORT"
wait_port "$NGINX_PORT"

declare -A P50 P99 RPS
measure() { # label port mode(ka|close)
  local header=()
  [ "$3" = close ] && header=(-H "Connection: close")
  local out
  out=$(wrk -t1 -c1 -d"$DURATION" --latency "${header[@]}" "http://127.0.0.1:$2/")
  local p50 p99 rps
  p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  echo "  $1: p50 $p50 us, p99 $p99 us, $rps req/s" >&2
  P50[$1]+="$p50 " P99[$1]+="$p99 " RPS[$1]+="$rps "
}

echo "measuring ($ROUNDS interleaved rounds of $DURATION, wrk -t1 -c1)" >&2
for round in $(seq 1 "$ROUNDS"); do
  measure direct-fresh "$APP_PORT" close
  measure direct-ka "$APP_PORT" ka
  measure rollbridge "$ROLLBRIDGE_PORT" ka
  measure nginx "$NGINX_PORT" ka
done

echo
echo "| target | p50 us (median of rounds) | p99 us (median) | req/s (median) |"
echo "|---|---|---|---|"
for target in direct-fresh direct-ka rollbridge nginx; do
  echo "| $target | $(middle_value <<<"${P50[$target]}") | $(middle_value <<<"${P99[$target]}") | $(middle_value <<<"${RPS[$target]}") |"
done
