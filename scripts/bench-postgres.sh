#!/usr/bin/env bash
# Ingest benchmark on PostgreSQL: one node, then three nodes on one database, on this machine.
#
# For each of 1 and 3 nodes, with a fresh database each time (intake_bench_<random>, dropped at
# the end), through 127.0.0.1:5432 as user postgres (BENCH_PG_URL to change):
#   held   ingest at 64 connections with deliveries held back (destination rate-limited to one
#          attempt a second): the durable ingest path alone;
#   deliv  the same with every event also delivered to a no-op handler;
#   e2e    intake-loadgen e2e at BENCH_E2E_RATE events/s: accept -> delivered latency, and
#          every acknowledged event must arrive.
# With 3 nodes, the load generator spreads its connections over the nodes in turn.
# Prints a Markdown table on stdout; progress and details on stderr.
#
# Environment: BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_E2E_RATE (1000), CARGO_TARGET_DIR,
# BENCH_KEEP=1 keeps the temp dir. Exit status non-zero if a run failed.
set -euo pipefail

DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
E2E_RATE="${BENCH_E2E_RATE:-1000}"
HANDLER_PORT=9100

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-bench-pg "$HANDLER_PORT" 18181 18182 18183

# start_nodes N EXTRA: a fresh database and N intake nodes on ports 18181.. ; EXTRA goes into
# the destination's table.
start_nodes() {
  local n=$1 extra=${2:-} i port
  pg_fresh_db
  URLS=""
  for ((i = 1; i <= n; i++)); do
    port=$((18180 + i))
    mkdir -p "$TMP/node-$i"
    bench_config "$TMP/node-$i/intake.toml" "$port" "url = \"$PG_DB_URL\"
pool_size = 16" "concurrency = 128
$extra" "
[cluster]
node_id = \"bench-$i\""
    # One node at a time: the first one migrates; the others would wait for its lock anyway.
    start_intake "node-$i" "$TMP/node-$i/intake.toml" "$port" || exit 1
    URLS="${URLS:+$URLS,}http://127.0.0.1:$port/ingest/bench-kustomer"
  done
}

run() {
  local name=$1 mode=$2 rc=0
  shift 2
  echo "--- $name" >&2
  "$BIN/intake-loadgen" "$mode" --secret "$SECRET" --duration "$DURATION" --warmup "$WARMUP" \
    --json "$@" >"$TMP/$name.json" 2>"$TMP/$name.txt" || rc=$?
  cat "$TMP/$name.txt" >&2
  [[ $rc -eq 0 ]] || FAILED+=("$name: exit $rc")
}

field() { json_field "$TMP/$1.json" "$2"; }

for n in 1 3; do
  start_nodes "$n" "rate_limit = 1.0"
  run "held-$n" ingest --url "$URLS" --concurrency 64
  stop_all
  start_handler handler
  start_nodes "$n"
  run "deliv-$n" ingest --url "$URLS" --concurrency 64
  stop_all
  start_nodes "$n"
  run "e2e-$n" e2e --url "$URLS" --rate "$E2E_RATE" --handler-listen "127.0.0.1:$HANDLER_PORT"
  stop_all
done

echo
echo "## PostgreSQL ingest benchmark: $(nproc) CPUs, ~2 KB signed Kustomer webhooks, $DURATION per run after $WARMUP warmup"
echo
echo "| nodes | run | req/s | ack p50 ms | ack p99 ms | delivered p50 / p99 ms | missing |"
echo "|---:|---|---:|---:|---:|---|---:|"
for n in 1 3; do
  for r in held deliv e2e; do
    name="$r-$n"
    printf '| %s | %s | %s | %s | %s | %s / %s | %s |\n' "$n" "$r" \
      "$(field "$name" rps)" "$(field "$name" p50_ms)" "$(field "$name" p99_ms)" \
      "$(field "$name" delivered_p50_ms)" "$(field "$name" delivered_p99_ms)" "$(field "$name" missing)"
  done
done

if [[ ${#FAILED[@]} -gt 0 ]]; then
  printf '!!! FAILED: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
