# Shared set-up of the wrk/nginx benchmarks (benches/proxy, benches/observability).
# Source it after setting BENCH_NAME (temp-dir label) and DRIVER_EXAMPLE (the cargo
# example that runs the proxy). It provides REPO, TARGET_DIR, NGINX, DRIVER, WORK,
# PIDS (killed on exit, with WORK removed), free_port, and the helpers below
# (nginx instances, starting a proxy_driver, wrk latency figures, medians).

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

need_packages=()
command -v wrk >/dev/null || need_packages+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_packages+=(nginx)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "installing ${need_packages[*]} (Debian packages)" >&2
  apt-get update -qq && apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [ -z "${DRIVER:-}" ]; then
  echo "building $DRIVER_EXAMPLE (release)" >&2
  (cd "$REPO" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --example "$DRIVER_EXAMPLE")
  DRIVER=$TARGET_DIR/release/examples/$DRIVER_EXAMPLE
fi

WORK=$(mktemp -d "/tmp/rollbridge-$BENCH_NAME-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

write_nginx_conf() { # name http-block-body: $WORK/<name>/nginx.conf, 1 worker
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

start_nginx() { # name (after write_nginx_conf)
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

# Starts a proxy in front of 127.0.0.1:<upstream-port>: the command words (a
# proxy_driver, possibly behind valgrind) get --listen/--upstream (and --workers
# when WORKERS is set). Sets STARTED_PID and STARTED_PORT.
start_proxy_driver() { # label upstream-port command...
  local label=$1 upstream=$2
  shift 2
  LD_PRELOAD=${PRELOAD:-} "$@" --listen 127.0.0.1:0 --upstream "127.0.0.1:$upstream" ${WORKERS:+--workers "$WORKERS"} \
    >"$WORK/$label.log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 600); do
    grep -q '^listening ' "$WORK/$label.log" && break
    sleep 0.05
  done
  STARTED_PORT=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$WORK/$label.log")
  [ -n "$STARTED_PORT" ] || { cat "$WORK/$label.log" >&2; exit 1; }
}

to_us() { # wrk latency like 85.00us / 1.20ms / 1.01s -> microseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /s$/) print n * 1000000; else print n }'
}

middle_value() { # numbers on stdin (space or newline separated, "-" ignored) -> the median (lower middle)
  tr ' ' '\n' | sed '/^$/d;/^-$/d' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
