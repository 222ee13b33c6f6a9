#!/usr/bin/env bash
# Completion receipts benchmark: what receipts cost the full pipeline on this machine.
#
# For each round and each mode (completion = "ack", then "receipt"), a fresh intake (SQLite)
# takes intake-loadgen e2e at BENCH_RATE events/s for BENCH_DURATION: ingest, queue, delivery to
# the loadgen's own handler, and, with receipts, the handler confirming every delivery in
# batches (POST /api/v1/deliveries/complete, as docs/handlers.md describes). The run waits
# until every acknowledged event was delivered (and confirmed); the pipeline's events/s is the
# acknowledged events over the send phase plus that drain. One line per run on stdout:
#   round mode rate acked delivered unconfirmed send_s drain_s events_per_s ack_p99_ms delivered_p99_ms
# and the machine's load average before each run, since other work moves these numbers.
#
# Environment: BENCH_ROUNDS (2), BENCH_RATE (3000), BENCH_DURATION (10s), BENCH_WARMUP (2s),
# CARGO_TARGET_DIR (default /var/tmp/intake-target). BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail

ROUNDS="${BENCH_ROUNDS:-2}"
RATE="${BENCH_RATE:-3000}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
INTAKE_PORT=18090
HANDLER_PORT=9190

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-bench-receipts "$INTAKE_PORT" "$HANDLER_PORT"

run() {
  local round=$1 mode=$2 dir="$TMP/$1-$2"
  mkdir -p "$dir/data"
  bench_config "$dir/intake.toml" "$INTAKE_PORT" "url = \"sqlite://$dir/data/intake.db\"" \
    "concurrency = 128
completion = \"$mode\"" '
[canary]
interval = "30d"
deadline = "60d"'
  start_intake "intake-$round-$mode" "$dir/intake.toml" || exit 1
  local intake_pid=$STARTED_PID
  local load
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  local confirm=()
  [[ $mode == receipt ]] && confirm=(--confirm-url "http://127.0.0.1:$INTAKE_PORT" --confirm-token bench)
  "$BIN/intake-loadgen" e2e --url "http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer" \
    --secret "$SECRET" --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP" \
    --concurrency 64 --handler-listen "127.0.0.1:$HANDLER_PORT" --drain 120s --json \
    ${confirm[@]+"${confirm[@]}"} >"$dir/run.json" 2>"$dir/run.txt" || true
  stop "$intake_pid"
  local acked delivered unconfirmed drain send
  acked="$(json_field "$dir/run.json" acked)"
  delivered="$(json_field "$dir/run.json" delivered)"
  unconfirmed="$(json_field "$dir/run.json" unconfirmed)"
  drain="$(sed -n 's/.*within \([0-9.]*\)s after the send phase.*/\1/p' "$dir/run.txt" | head -n 1)"
  send="$(awk -v d="${DURATION%s}" -v w="${WARMUP%s}" 'BEGIN { print d + w }')"
  awk -v r="$round" -v m="$mode" -v rate="$RATE" -v a="$acked" -v dl="$delivered" -v u="$unconfirmed" \
      -v s="$send" -v dr="$drain" -v p="$(json_field "$dir/run.json" p99_ms)" \
      -v dp="$(json_field "$dir/run.json" delivered_p99_ms)" -v l="$load" \
    'BEGIN { printf "%s %s %s %s %s %s %.0f %.2f %.0f %s %s load %s\n", r, m, rate, a, dl, u, s, dr, a / (s + dr), p, dp, l }'
}

echo "round mode rate acked delivered unconfirmed send_s drain_s events_per_s ack_p99_ms delivered_p99_ms load1/5/15"
for round in $(seq 1 "$ROUNDS"); do
  run "$round" ack
  run "$round" receipt
done
