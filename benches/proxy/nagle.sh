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

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream app { server 127.0.0.1:$APP_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_buffering off;
    }
  }
}
CONF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >/dev/null 2>&1 &
PIDS+=($!)

"$DRIVER" --listen 127.0.0.1:0 --upstream "127.0.0.1:$APP_PORT" >"$WORK/driver.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 200); do
  grep -q '^listening ' "$WORK/driver.log" && break
  sleep 0.05
done
ROLLBRIDGE_PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$WORK/driver.log")
[ -n "$ROLLBRIDGE_PORT" ] || { cat "$WORK/driver.log" >&2; exit 1; }
for port in "$APP_PORT" "$NGINX_PORT"; do
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
  done
done

to_us() { # wrk latency like 85.00us / 1.20ms / 1.01s -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /s$/) print n * 1000000; else print n }'
}
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

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
  echo "| $target | $(median <<<"${P50[$target]}") | $(median <<<"${P99[$target]}") | $(median <<<"${RPS[$target]}") |"
done
