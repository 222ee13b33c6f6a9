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
# BENCH_E2E_RATE (default 1000), BENCH_SKIP_E2E=1 to leave out part c, BENCH_BIN=DIR to run the
# binaries in DIR instead of building them, CARGO_TARGET_DIR (default /var/tmp/intake-target),
# INTAKE_LOG (default warn) for intake's own logging, BENCH_KEEP=1 to keep the temp dir (logs and
# one JSON line per run) even after a clean run. Other INTAKE_* variables are removed from
# intake's environment so they cannot override the benchmark's configuration.
#
# The exit status is non-zero if any run failed (a non-200, a transport error, an acknowledged
# event never delivered, or a server that would not start); logs are then kept in the temp dir.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
E2E_RATE="${BENCH_E2E_RATE:-1000}"
INTAKE_PORT=18080
NOOP_PORT=18081
HANDLER_PORT=9100
SECRET="bench-kustomer-secret"
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"
NOOP_URL="http://127.0.0.1:$NOOP_PORT/ingest/bench-kustomer"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n ${BENCH_BIN:-} ]]; then
  # Binaries built beforehand (e.g. two builds compared in turns).
  BIN="$BENCH_BIN"
else
  echo "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)..." >&2
  cargo build --release -p intake -p intake-testkit --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
LOADGEN="$BIN/intake-loadgen"
NOOP="$BIN/intake-noop-server"
INTAKE="$BIN/intake"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/intake-bench.XXXXXX")"
CHILDREN=()
FAILED=()
STARTED_PID=""

# stop PID: SIGTERM, up to 20 s to exit, then SIGKILL.
stop() {
  local pid=$1 i p
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "warning: pid $pid still running 20 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  local kept=()
  for p in ${CHILDREN[@]+"${CHILDREN[@]}"}; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  CHILDREN=(${kept[@]+"${kept[@]}"})
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in ${CHILDREN[@]+"${CHILDREN[@]}"}; do
    stop "$pid"
  done
  if [[ $rc -ne 0 || -n ${BENCH_KEEP:-} ]]; then
    echo "logs and results kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: runs CMD in the background, output in $TMP/NAME.log; sets STARTED_PID.
start() {
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  STARTED_PID=$!
  CHILDREN+=("$STARTED_PID")
}

# wait_http URL PID NAME: polls URL until it answers 2xx, failing if PID exits first.
wait_http() {
  local url=$1 pid=$2 name=$3 i
  for ((i = 0; i < 300; i++)); do
    if curl -sf -o /dev/null "$url"; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name exited before answering $url; the end of its log:" >&2
      tail -n 40 "$TMP/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "error: $name did not answer $url within 30 s; the end of its log:" >&2
  tail -n 40 "$TMP/$name.log" >&2
  return 1
}

# require_free PORT: fails if something already listens on 127.0.0.1:PORT.
require_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$1; stop it and run again" >&2
    exit 1
  fi
}

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
field() {
  local file="$TMP/$1.json" v=""
  if [[ -s $file ]]; then
    v="$(sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$file" | head -n 1)"
  fi
  if [[ -z $v || $v == null ]]; then
    echo "n/a"
  else
    echo "$v"
  fi
}

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
  "$LOADGEN" "$mode" --secret "$SECRET" --duration "$DURATION" --warmup "$WARMUP" --json "$@" \
    >"$TMP/$name.json" 2>"$TMP/$name.txt" || rc=$?
  cat "$TMP/$name.txt" >&2
  if [[ $rc -ne 0 ]]; then
    record_failure "$name" "$rc"
  fi
}

# write_config DIR [EXTRA]: an intake configuration with its data in DIR/data; EXTRA is added
# to the destination's table.
write_config() {
  local dir=$1 extra=${2:-}
  mkdir -p "$dir/data"
  cat >"$dir/intake.toml" <<EOF
[server]
listen = "127.0.0.1:$INTAKE_PORT"
public_url = "http://127.0.0.1:$INTAKE_PORT"

[storage]
url = "sqlite://$dir/data/intake.db"

[admin]
token = "bench"

[[tenants]]
id = "bench"

[[destinations]]
id = "handler"
url = "http://127.0.0.1:$HANDLER_PORT/"
secret = "whsec_YmVuY2gtZGVzdGluYXRpb24tc2VjcmV0"
timeout = "5s"
concurrency = 128
$extra

[[sources]]
id = "bench-kustomer"
tenant = "bench"
kind = "kustomer"
secrets = ["$SECRET"]
destinations = ["handler"]
EOF
}

# start_intake NAME CONFIG: starts intake with only INTAKE_LOG kept from the environment.
start_intake() {
  local name=$1 config=$2 var
  local cmd=(env)
  while IFS= read -r var; do
    [[ $var == INTAKE_LOG ]] || cmd+=(-u "$var")
  done < <(compgen -e | grep '^INTAKE_' || true)
  cmd+=("INTAKE_LOG=${INTAKE_LOG:-warn}" "$INTAKE" serve --config "$config")
  start "$name" "${cmd[@]}"
  wait_http "http://127.0.0.1:$INTAKE_PORT/healthz" "$STARTED_PID" "$name"
}

# start_handler NAME [STATUS]: a no-op server on the destination's port, answering STATUS
# (default 200) to any POST.
start_handler() {
  start "$1" "$NOOP" --listen "127.0.0.1:$HANDLER_PORT" --delivery-status "${2:-200}"
  wait_http "http://127.0.0.1:$HANDLER_PORT/healthz" "$STARTED_PID" "$1"
}

require_free "$INTAKE_PORT"
require_free "$NOOP_PORT"
require_free "$HANDLER_PORT"

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
printf '| intake ack at half max load (%s/s, c64) | %s | %s | %s | %s non-200, %s errors |\n' \
  "$(field intake-half target_rate)" "$(rate intake-half)" "$(field intake-half p50_ms)" \
  "$(field intake-half p99_ms)" "$(field intake-half non_200)" "$(field intake-half errors)"

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo >&2
  echo "!!! FAILED RUNS:" >&2
  for f in "${FAILED[@]}"; do
    echo "!!!   $f" >&2
  done
  exit 1
fi
