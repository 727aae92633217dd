#!/usr/bin/env bash
# Lua hook overhead against the built-in `command` plugin running `true`
# (see README.md next to this script).
#
# Usage: benches/hooks/run.sh [calls]     (from anywhere; default 2000 calls)
# Env:   CARGO_TARGET_DIR=...
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
exec cargo bench --bench hooks -- "$@"
