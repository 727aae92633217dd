#!/usr/bin/env bash
# The rollbridge demo: start a daemon, deploy a release, then deploy a second one
# and roll back while a load generator keeps sending requests, and show that not a
# single request failed. Needs only the Rust toolchain and python3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

say "Building rollbridge"
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin rollbridge
rb="$root/target/debug/rollbridge"

DEMO_DIR="$(mktemp -d /tmp/rollbridge-demo.XXXXXX)"
export DEMO_DIR
config="$here/rollbridge.lua"
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    "$rb" shutdown --config "$config" >/dev/null 2>&1 || kill "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$DEMO_DIR"
}
trap cleanup EXIT

for release in v1 v2; do
  mkdir -p "$DEMO_DIR/releases/$release"
  cp "$here/app.py" "$here/worker.py" "$DEMO_DIR/releases/$release/"
done

say "Checking the config"
"$rb" validate --config "$config"

say "Starting the daemon (its event log goes to $DEMO_DIR/daemon.log)"
"$rb" daemon --config "$config" >"$DEMO_DIR/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  grep -q '"control socket listening"' "$DEMO_DIR/daemon.log" 2>/dev/null && break
  sleep 0.1
done
port="$("$rb" status --config "$config" | python3 -c 'import json,sys; print(json.load(sys.stdin)["proxy"]["port"])')"
echo "proxy listening on 127.0.0.1:$port"

say "Deploying release v1"
"$rb" deploy --config "$config" --release-path "$DEMO_DIR/releases/v1" --release-id v1
python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode())"

say "Starting traffic: 4 clients, keep-alive and fresh connections"
python3 "$here/load.py" "$port" "$DEMO_DIR/stop-load" "$DEMO_DIR/progress.json" >"$DEMO_DIR/load-summary.json" &
load_pid=$!
progress() {
  python3 -c "import json; t=json.load(open('$DEMO_DIR/progress.json')); print(f\"  traffic so far: {t['ok']} ok, {t['failed']} failed, served by {t['byRelease']}\")" 2>/dev/null || true
}
sleep 1; progress

say "Deploying release v2 while traffic flows"
"$rb" deploy --config "$config" --release-path "$DEMO_DIR/releases/v2" --release-id v2
sleep 1; progress

say "Rolling back to v1 while traffic flows"
"$rb" rollback --config "$config"
sleep 1; progress

say "Deploying v2 again"
"$rb" deploy --config "$config" --release-path "$DEMO_DIR/releases/v2" --release-id v2
sleep 1; progress

touch "$DEMO_DIR/stop-load"
wait "$load_pid"
summary="$(cat "$DEMO_DIR/load-summary.json")"
failed="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['failed'])" "$summary")"
say "Traffic summary"
python3 -c "import json,sys; t=json.loads(sys.argv[1]); print(f\"  {t['ok']} requests answered, {t['failed']} failed; served by {t['byRelease']}\"); [print('  error:', e) for e in t['errors']]" "$summary"

say "Recent events"
"$rb" events --config "$config" --limit 14

say "Shutting down"
"$rb" shutdown --config "$config"
wait "$daemon_pid" || true
daemon_pid=""
leftovers="$(pgrep -f "$DEMO_DIR/releases" || true)"
if [ -n "$leftovers" ]; then
  echo "processes left behind: $leftovers" >&2
  exit 1
fi
echo "daemon stopped; no managed process left running"

if [ "$failed" != "0" ]; then
  echo "demo failed: $failed requests failed during the deploys" >&2
  exit 1
fi
say "Done: two deploys and a rollback under load, zero failed requests"
