#!/usr/bin/env bash
# Ingest benchmark: intake against the no-op ceiling, on this machine.
#
# The product's quality bars say durable ingest must reach at least half of what a no-op server
# built with the same stack achieves for the same requests, and that the pipeline must deliver
# what it acknowledged. This script measures both, on loopback only:
#
#   a. intake-noop-server (axum, same stack, does nothing) under intake-loadgen ingest at
#      concurrency 16 and 64: the ceiling;
#   b. intake serve, same two loads, with a no-op handler as its destination; then with the
#      deliveries held back (b2), and with a destination that fails every attempt at once (b3:
#      the handler answers 500), whose ingest must stay within 10 % of b2's;
#   c. a fresh intake: intake-loadgen e2e at 1000 events/s (accept -> delivered latency, and no
#      acknowledged event missing), then ingest paced at half of the c64 throughput from (b)
#      (acknowledgement latency at half of maximum load);
#   d. a Markdown table of the results on stdout (progress and details go to stderr).
#
# Environment: BENCH_DURATION (default 10s) and BENCH_WARMUP (default 2s) per run,
# BENCH_E2E_RATE (default 1000), BENCH_SKIP_E2E=1 to leave out part c, BENCH_IDS=scattered
# for bodies whose ids are in scattered order (like UUIDs) instead of counting up,
# BENCH_BIN=DIR to run the binaries in DIR instead of building them, CARGO_TARGET_DIR
# (default /var/tmp/intake-target), INTAKE_LOG (default warn) for intake's own logging,
# BENCH_KEEP=1 to keep the temp dir (logs and one JSON line per run) even after a clean run. Other INTAKE_* variables are removed from
# intake's environment so they cannot override the benchmark's configuration.
#
# The exit status is non-zero if any run failed (a non-200, a transport error, an acknowledged
# event never delivered, or a server that would not start); logs are then kept in the temp dir.
set -euo pipefail

DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
E2E_RATE="${BENCH_E2E_RATE:-1000}"
INTAKE_PORT=18080
NOOP_PORT=18081
HANDLER_PORT=9100
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"
NOOP_URL="http://127.0.0.1:$NOOP_PORT/ingest/bench-kustomer"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-bench "$INTAKE_PORT" "$NOOP_PORT" "$HANDLER_PORT"

# rate NAME: run NAME's achieved requests per second, rounded, or n/a.
rate() {
  local v
  v="$(field "$1" rps)"
  if [[ $v == n/a ]]; then
    echo "n/a"
  else
    awk -v v="$v" 'BEGIN { printf "%.0f", v }'
  fi
}

# field NAME KEY: a top-level scalar from run NAME's JSON line, or n/a.
field() { json_field "$TMP/$1.json" "$2"; }

# record_failure NAME RC: remembers a failed run, naming what went wrong.
record_failure() {
  local name=$1 rc=$2 why=()
  [[ $(field "$name" non_200) =~ ^[1-9] ]] && why+=("$(field "$name" non_200) non-200")
  [[ $(field "$name" errors) =~ ^[1-9] ]] && why+=("$(field "$name" errors) transport errors")
  [[ $(field "$name" missing) =~ ^[1-9] ]] && why+=("$(field "$name" missing) acked events never delivered")
  [[ ${#why[@]} -eq 0 ]] && why+=("exit status $rc")
  FAILED+=("$name: ${why[*]}")
}

# run_loadgen NAME MODE ARGS...: one loadgen run; JSON in $TMP/NAME.json, summary to stderr.
run_loadgen() {
  local name=$1 mode=$2 rc=0
  shift 2
  echo "--- $name" >&2
  "$LOADGEN" "$mode" --secret "$SECRET" --duration "$DURATION" --warmup "$WARMUP" --json \
    "${LOADGEN_IDS[@]}" "$@" \
    >"$TMP/$name.json" 2>"$TMP/$name.txt" || rc=$?
  cat "$TMP/$name.txt" >&2
  if [[ $rc -ne 0 ]]; then
    record_failure "$name" "$rc"
  fi
}

# write_config DIR [EXTRA]: an intake configuration with its data in DIR/data; EXTRA is added
# to the destination's table.
write_config() {
  mkdir -p "$1/data"
  bench_config "$1/intake.toml" "$INTAKE_PORT" "url = \"sqlite://$1/data/intake.db\"" "concurrency = 128
${2:-}"
}


# a. The ceiling.
start noop "$NOOP" --listen "127.0.0.1:$NOOP_PORT"
noop_pid=$STARTED_PID
wait_http "http://127.0.0.1:$NOOP_PORT/healthz" "$noop_pid" noop
run_loadgen noop-c16 ingest --url "$NOOP_URL" --concurrency 16
run_loadgen noop-c64 ingest --url "$NOOP_URL" --concurrency 64
stop "$noop_pid"

# b. intake, delivering to a no-op handler so deliveries succeed instead of piling up retries.
write_config "$TMP/b"
start_handler handler-b
handler_pid=$STARTED_PID
if start_intake intake-b "$TMP/b/intake.toml"; then
  intake_pid=$STARTED_PID
  run_loadgen intake-c16 ingest --url "$INTAKE_URL" --concurrency 16
  run_loadgen intake-c64 ingest --url "$INTAKE_URL" --concurrency 64
  stop "$intake_pid"
else
  FAILED+=("intake-b: intake did not start")
  stop "$STARTED_PID"
fi
stop "$handler_pid"

# b2. The ingest path alone: the same loads with deliveries held back (the destination is
#     rate-limited to one attempt a second), so the 2 cores do nothing but acknowledge. The
#     queue absorbs the burst; run b shows the same loads with every event also delivered.
write_config "$TMP/b2" "rate_limit = 1.0"
start_handler handler-b2
handler_pid=$STARTED_PID
if start_intake intake-b2 "$TMP/b2/intake.toml"; then
  intake_pid=$STARTED_PID
  run_loadgen ingest-only-c16 ingest --url "$INTAKE_URL" --concurrency 16
  run_loadgen ingest-only-c64 ingest --url "$INTAKE_URL" --concurrency 64
  stop "$intake_pid"
else
  FAILED+=("intake-b2: intake did not start")
  stop "$STARTED_PID"
fi
stop "$handler_pid"

# b3. The same loads while every delivery fails at once: the handler answers 500, so each
#     event is attempted, recorded as failed and retried on the destination's schedule. A
#     failing destination must not take ingest's capacity: compare with b2.
write_config "$TMP/b3"
start_handler handler-b3 500
handler_pid=$STARTED_PID
if start_intake intake-b3 "$TMP/b3/intake.toml"; then
  intake_pid=$STARTED_PID
  run_loadgen failing-c16 ingest --url "$INTAKE_URL" --concurrency 16
  run_loadgen failing-c64 ingest --url "$INTAKE_URL" --concurrency 64
  curl -s "http://127.0.0.1:$INTAKE_PORT/metrics" | grep '^intake_deliveries_total' >"$TMP/failing-attempts.txt" || true
  stop "$intake_pid"
else
  FAILED+=("intake-b3: intake did not start")
  stop "$STARTED_PID"
fi
stop "$handler_pid"

# c. A fresh intake: end to end at a fixed rate, then acknowledgement latency at half load.
write_config "$TMP/c"
if [[ -n ${BENCH_SKIP_E2E:-} ]]; then
  echo "--- part c left out (BENCH_SKIP_E2E)" >&2
elif start_intake intake-c "$TMP/c/intake.toml"; then
  intake_pid=$STARTED_PID
  run_loadgen e2e e2e --url "$INTAKE_URL" --rate "$E2E_RATE" \
    --handler-listen "127.0.0.1:$HANDLER_PORT"
  half="$(field intake-c64 rps)"
  if [[ $half != n/a ]]; then
    half="$(awk -v r="$half" 'BEGIN { printf "%d", r / 2 }')"
  fi
  if [[ $half =~ ^[1-9][0-9]*$ ]]; then
    start_handler handler-c
    handler_pid=$STARTED_PID
    run_loadgen intake-half ingest --url "$INTAKE_URL" --concurrency 64 --rate "$half"
    stop "$handler_pid"
  else
    FAILED+=("intake-half: no c64 throughput from run b to take half of")
  fi
  stop "$intake_pid"
else
  FAILED+=("intake-c: intake did not start")
  stop "$STARTED_PID"
fi

# d. The table.
ratio() {
  local a b
  a="$(field "$1" rps)"
  b="$(field "$2" rps)"
  if [[ $a == n/a || $b == n/a ]]; then
    echo "n/a"
  else
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'
  fi
}
verdict() {
  [[ $1 == n/a ]] && return
  awk -v r="$1" 'BEGIN { print (r >= 0.5 ? "meets the bar (>= 0.50)" : "BELOW the bar (>= 0.50)") }'
}
row() {
  local label=$1 name=$2
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$(rate "$name")" \
    "$(field "$name" p50_ms)" "$(field "$name" p99_ms)" "$(field "$name" non_200) non-200, $(field "$name" errors) errors"
}
r16="$(ratio intake-c16 noop-c16)"
r64="$(ratio intake-c64 noop-c64)"
o16="$(ratio ingest-only-c16 noop-c16)"
o64="$(ratio ingest-only-c64 noop-c64)"
f16="$(ratio failing-c16 ingest-only-c16)"
f64="$(ratio failing-c64 ingest-only-c64)"

echo
echo "## Ingest benchmark: $(nproc) CPUs, ~2 KB signed Kustomer webhooks, $DURATION per run after $WARMUP warmup"
echo
echo "| run | req/s | p50 ms | p99 ms | notes |"
echo "|---|---:|---:|---:|---|"
row "noop c16" noop-c16
row "noop c64" noop-c64
row "intake c16 (ack latency)" intake-c16
row "intake c64 (ack latency)" intake-c64
row "intake c16, deliveries held back" ingest-only-c16
row "intake c64, deliveries held back" ingest-only-c64
row "intake c16, destination failing (500)" failing-c16
row "intake c64, destination failing (500)" failing-c64
echo "| ratio intake/noop c16 (delivering / held back) | $r16 / $o16 | | | $(verdict "$o16") |"
echo "| ratio intake/noop c64 (delivering / held back) | $r64 / $o64 | | | $(verdict "$o64") |"
echo "| ratio failing/held back c16 / c64 | $f16 / $f64 | | | target >= 0.90 |"
if [[ -s $TMP/failing-attempts.txt ]]; then
  echo "attempts while failing (intake_deliveries_total):" >&2
  cat "$TMP/failing-attempts.txt" >&2
fi
printf '| accept -> delivered at %s/s | %s | %s | %s | ack p50 %s / p99 %s ms; delivered max %s ms; %s of %s acked events missing |\n' \
  "$E2E_RATE" "$(rate e2e)" "$(field e2e delivered_p50_ms)" "$(field e2e delivered_p99_ms)" \
  "$(field e2e p50_ms)" "$(field e2e p99_ms)" "$(field e2e delivered_max_ms)" \
  "$(field e2e missing)" "$(field e2e acked)"
printf '| intake ack at half max load (%s/s, c64) | %s | %s | %s | p99.9 %s ms (target: p99 < 10, p99.9 < 50); %s non-200, %s errors |\n' \
  "$(field intake-half target_rate)" "$(rate intake-half)" "$(field intake-half p50_ms)" \
  "$(field intake-half p99_ms)" "$(field intake-half p999_ms)" "$(field intake-half non_200)" \
  "$(field intake-half errors)"

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo >&2
  echo "!!! FAILED RUNS:" >&2
  for f in "${FAILED[@]}"; do
    echo "!!!   $f" >&2
  done
  exit 1
fi
