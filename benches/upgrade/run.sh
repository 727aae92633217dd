#!/bin/sh
# Live upgrade under load (benches/upgrade/README.md). Release build only.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
# BIN=<path> measures an already built binary (e.g. the previous build).
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin rollbridge --manifest-path "$root/Cargo.toml" >&2
fi
bin="${BIN:-${CARGO_TARGET_DIR:-$root/target}/release/rollbridge}"
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/release"
cat > "$dir/rollbridge.json" <<JSON
{"application": "upgrade-bench", "control": {"path": "$dir/control.sock"},
 "proxy": {"host": "127.0.0.1", "port": $port},
 "processes": [{"id": "web", "policy": "proxied", "command": "exec python3 $root/tests/fixtures/app.py",
                "port": {"from": 0, "to": 0}, "health": {"path": "/ping", "intervalMs": 50}}]}
JSON
"$bin" daemon -c "$dir/rollbridge.json" --log-level info > "$dir/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; sleep 1; rm -rf "$dir"' EXIT
sleep 1
"$bin" deploy -c "$dir/rollbridge.json" --release-path "$dir/release" --release-id v1 > /dev/null
python3 "$root/benches/upgrade/load.py" "$bin" "$dir/rollbridge.json" "$port" "${UPGRADES:-10}"
echo "pauses (ms, as the new image logs them):"
grep -o 'pause of [0-9]* ms' "$dir/daemon.log" | awk '{print $3}' | sort -n | tr '\n' ' '
echo
"$bin" shutdown -c "$dir/rollbridge.json" > /dev/null
