#!/usr/bin/env bash
# Hostile-client benchmark: a body flood and idle sockets against the real `intake serve`, while
# one honest client sends signed webhooks. Each run starts a fresh server (the embedded default's
# demo source and handler on port BENCH_PORT (default 18090), a temp data dir, connection caps raised so that the body budget is what holds)
# and runs scripts/bench-hostile.py against it; one JSON line per run on stdout: honest traffic
# before / during / after the attack and RSS idle, peak and after the close.
#
#   scripts/bench-hostile.sh [RUNS] [-- extra bench-hostile.py arguments]
#
# Environment: CARGO_TARGET_DIR (default /var/tmp/intake-target), BENCH_PROFILE (debug or
# release, default debug), and anything else is passed to the server (e.g. MIMALLOC_* options,
# to compare allocator settings). The attack needs ~4,000 file descriptors: the script raises
# its own limit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
PROFILE="${BENCH_PROFILE:-debug}"
RUNS="${1:-5}"
shift || true
[[ "${1:-}" == "--" ]] && shift

if [[ "$PROFILE" == release ]]; then
  cargo build --release -p intake --bin intake >&2
else
  cargo build -p intake --bin intake >&2
fi
INTAKE="$CARGO_TARGET_DIR/$PROFILE/intake"
ulimit -n 20000

PORT="${BENCH_PORT:-18090}"
BASE="http://127.0.0.1:$PORT"

for run in $(seq 1 "$RUNS"); do
  dir="$(mktemp -d "${TMPDIR:-/tmp}/intake-hostile.XXXXXX")"
  cat >"$dir/intake.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
public_url = "$BASE"
demo_handler = true
max_connections = 8192
max_connections_per_ip = 8192

[storage]
url = "sqlite://$dir/intake.db"

[admin]
token = "bench-admin-token"

[[tenants]]
id = "demo"

[[destinations]]
id = "demo-handler"
url = "$BASE/demo/handler"
secret = "whsec_ZGVtby1kZXN0aW5hdGlvbi1zZWNyZXQ="

[[sources]]
id = "demo-kustomer"
tenant = "demo"
kind = "kustomer"
secrets = ["demo-kustomer-secret"]
destinations = ["demo-handler"]
TOML
  INTAKE_LOG=warn "$INTAKE" serve --config "$dir/intake.toml" >"$dir/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -sf "$BASE/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  if ! curl -sf "$BASE/readyz" >/dev/null 2>&1; then
    echo "run $run: intake did not become ready; log in $dir/serve.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  python3 scripts/bench-hostile.py --url "$BASE" --pid "$pid" "$@"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
done
