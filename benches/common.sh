# Shared set-up of the wrk/nginx benchmarks (benches/proxy, benches/observability).
# Source it after setting BENCH_NAME (temp-dir label) and DRIVER_EXAMPLE (the cargo
# example that runs the proxy). It provides REPO, TARGET_DIR, NGINX, DRIVER, WORK,
# PIDS (killed on exit, with WORK removed) and free_port.

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
