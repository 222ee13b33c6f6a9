#!/usr/bin/env bash
# Retention benchmark: ingest while a retention pass deletes a big backlog, against the same
# ingest with retention off, in turns.
#
#   1. A SQLite store is prefilled once with BENCH_PREFILL (default 1,000,000) events received
#      40 days ago, each with one delivered delivery and one attempt row. The prefill writes
#      rows with plain SQL (sqlite3), not through intake: its bodies are small (a 64-byte
#      JSON object), its ids are valid event ids of that instant. Real bodies would make the
#      deletes write more pages; the rows and index entries touched are the same.
#   2. Each round copies the prefilled store, starts intake on it with `storage.retention` on
#      (`30d`: the pass that runs at start deletes the whole backlog, retention::BATCH events
#      per writer request) or off, and runs intake-loadgen ingest at concurrency 64 (~2 KB signed Kustomer
#      bodies; deliveries held back by a rate limit of one attempt a second, so the 2 cores
#      only acknowledge and delete). Rounds alternate on, off, on, off, … BENCH_ROUNDS times
#      each (default 3).
#   3. Per run: req/s and ack p50/p99 (loadgen), the intake process's CPU seconds per accepted
#      request (utime + stime from /proc over warmup and run, divided by the events the run
#      stored, counted in the database; in the `on` runs it includes the deletes), and the old
#      events deleted per
#      second during the loadgen run (counted in the database before and after, by a
#      read-only sqlite3 connection). A Markdown table on stdout.
#
# Environment: BENCH_PREFILL, BENCH_ROUNDS, BENCH_DURATION (default 10s), BENCH_WARMUP (2s),
# BENCH_BIN=DIR to run prebuilt binaries, CARGO_TARGET_DIR, BENCH_KEEP=1 to keep the temp dir.
set -euo pipefail

PREFILL="${BENCH_PREFILL:-1000000}"
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
INTAKE_PORT=18080
HANDLER_PORT=9100
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-bench-retention "$INTAKE_PORT" "$HANDLER_PORT"

# field RUN KEY: a top-level scalar of run RUN's loadgen JSON, or n/a.
field() { json_field "$TMP/$1.json" "$2"; }

# write_config DIR RETENTION: intake on DIR/data/intake.db with `storage.retention` RETENTION,
# canaries out of the way, deliveries held back (one attempt a second).
write_config() {
  bench_config "$1/intake.toml" "$INTAKE_PORT" "url = \"sqlite://$1/data/intake.db\"
retention = \"$2\"" "rate_limit = 1.0" '
[canary]
interval = "30d"
deadline = "60d"'
}

# The ULID time part (10 Crockford base32 characters) of an instant in milliseconds.
ulid_time() {
  local ms=$1 alphabet=0123456789ABCDEFGHJKMNPQRSTVWXYZ out="" i
  for ((i = 0; i < 10; i++)); do
    out="${alphabet:$((ms % 32)):1}$out"
    ms=$((ms / 32))
  done
  echo "$out"
}

# 1. The prefilled store: the schema made by intake itself, then rows by SQL.
echo "--- prefill: $PREFILL delivered events received 40 days ago" >&2
mkdir -p "$TMP/seed/data"
write_config "$TMP/seed" off
start_intake seed "$TMP/seed/intake.toml"
stop "$STARTED_PID"
old_ms=$(($(date +%s) * 1000 - 40 * 86400 * 1000))
t10="$(ulid_time "$old_ms")"
prefill_start=$(date +%s.%N)
sqlite3 "$TMP/seed/data/intake.db" <<EOF
PRAGMA journal_mode=WAL;
PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $PREFILL - 1)
INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key, event_type, channel,
                    received_at, headers, body)
SELECT 'evt_$t10' || printf('%016d', i), 'bench', 'bench-kustomer', 'webhook', 'sor-' || i,
       'prefill-' || i, 'kustomer.message.create', 'email', $old_ms + i / 1000,
       '[["content-type","application/json"]]',
       CAST('{"prefill":' || printf('%050d', i) || '}' AS BLOB)
FROM n;
INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state, attempts,
                        due_at, created_at, updated_at, delivered_at, last_status)
SELECT 'dlv_' || substr(id, 5), id, 'handler', tenant, source, channel, 'delivered', 1,
       received_at, received_at, received_at + 5, received_at + 5, 200
FROM events;
INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, outcome)
SELECT id, 1, created_at, 5, 200, 'delivered' FROM deliveries;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
prefill_end=$(date +%s.%N)
echo "prefill took $(awk -v a="$prefill_start" -v b="$prefill_end" 'BEGIN { printf "%.0f", b - a }') s; $(du -sh "$TMP/seed/data" | cut -f1) on disk" >&2
bound="evt_$(ulid_time $((old_ms + 86400 * 1000)))"
old_events() {
  sqlite3 -readonly "$1" "SELECT COUNT(*) FROM events WHERE id < '$bound'"
}
new_events() {
  sqlite3 -readonly "$1" "SELECT COUNT(*) FROM events WHERE id >= '$bound'"
}

start_handler handler
handler_pid=$STARTED_PID

# 2. The rounds, in turns.
RUNS=()
for ((round = 1; round <= ROUNDS; round++)); do
  for mode in on off; do
    name="$mode-$round"
    dir="$TMP/$name"
    mkdir -p "$dir/data"
    cp "$TMP/seed/data/intake.db" "$dir/data/intake.db"
    if [[ $mode == on ]]; then write_config "$dir" 30d; else write_config "$dir" off; fi
    if ! start_intake "intake-$name" "$dir/intake.toml"; then
      FAILED+=("$name: intake did not start")
      continue
    fi
    pid=$STARTED_PID
    before_old="$(old_events "$dir/data/intake.db")"
    before_cpu="$(cpu_ticks "$pid")"
    t0=$(date +%s.%N)
    echo "--- $name (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    rc=0
    "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 64 \
      --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/$name.json" 2>"$TMP/$name.txt" || rc=$?
    t1=$(date +%s.%N)
    after_cpu="$(cpu_ticks "$pid")"
    after_old="$(old_events "$dir/data/intake.db")"
    accepted="$(new_events "$dir/data/intake.db")"
    cat "$TMP/$name.txt" >&2
    [[ $rc -eq 0 ]] || FAILED+=("$name: loadgen exit status $rc")
    stop "$pid"
    hz=$(getconf CLK_TCK)
    deleted_rate=$(awk -v a="$before_old" -v b="$after_old" -v t0="$t0" -v t1="$t1" \
      'BEGIN { printf "%.0f", (a - b) / (t1 - t0) }')
    cpu_us=$(awk -v c0="$before_cpu" -v c1="$after_cpu" -v hz="$hz" -v n="$accepted" \
      'BEGIN { if (n > 0) printf "%.0f", (c1 - c0) / hz / n * 1e6; else print "n/a" }')
    RUNS+=("| $name | $(field "$name" rps) | $(field "$name" p50_ms) | $(field "$name" p99_ms) | $cpu_us | $deleted_rate | $before_old → $after_old | $(cut -d' ' -f1 /proc/loadavg) |")
    rm -rf "$dir/data"
  done
done
stop "$handler_pid"

echo
echo "## Retention benchmark: $(nproc) CPUs, $PREFILL old delivered events prefilled, c64 ingest of ~2 KB bodies, $DURATION after $WARMUP warmup, deliveries held back"
echo
echo "| run | req/s | ack p50 ms | ack p99 ms | CPU µs/request (intake) | old events deleted/s | old events before → after | load avg (1 min) |"
echo "|---|---:|---:|---:|---:|---:|---|---:|"
for r in "${RUNS[@]}"; do
  echo "$r"
done

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo "!!! FAILED RUNS: ${FAILED[*]}" >&2
  exit 1
fi
