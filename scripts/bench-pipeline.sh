#!/usr/bin/env bash
# The SQLite pipeline (issue 16): what intake's CPU costs per event, and whether delivery keeps
# up with ingest under a sustained load. Loopback only; release binaries from BENCH_BIN, or
# built now in $CARGO_TARGET_DIR (default /var/tmp/intake-target).
#
#   scripts/bench-pipeline.sh cpu held|delivering|failing [SECONDS]
#       intake-loadgen ingest at 64 connections for SECONDS (default 10) against a fresh intake
#       whose destination is held back (rate limit 1/s), delivering to a no-op handler, or
#       answered 500 at once. Prints one line: requests acknowledged, events delivered, failed
#       attempts, CPU seconds of intake and of the handler (utime + stime from /proc/<pid>/stat,
#       the whole run) and intake's CPU µs per acknowledged event. The machine's load does not
#       move CPU per event much, unlike req/s. With BENCH_PERF=FILE, `perf record` (DWARF call graphs) samples
#       intake during the run into FILE.
#
#   scripts/bench-pipeline.sh sustain RATE [SECONDS]
#       ingest paced at RATE events/s for SECONDS (default 60) while delivering to a no-op
#       handler; every 5 s one line: accepted/s and delivered/s over the last 5 s, the pending
#       deliveries (`intake_queue_pending`) and intake's CPU. Then the acknowledgement latency
#       of the whole run (p50/p99/p99.9, punctual-client corrected) and how long the queue took
#       to drain after the load stopped. A queue that stays flat means delivery keeps up.
#
#   scripts/bench-pipeline.sh latency RATE [SECONDS]
#       the acknowledgement latency alone at a paced RATE (64 connections, SECONDS, default
#       20, after 2 s of warm-up), first delivering to a no-op handler, then with deliveries
#       held back, each against a fresh intake: one line each, p50/p99/p99.9/max.
#
# Environment: BENCH_BIN=DIR (prebuilt binaries), BENCH_KEEP=1 (keep the temp dir),
# BENCH_IDS=scattered (the bodies' ids in scattered order, like UUIDs, instead of counting up),
# INTAKE_LOG (default warn), BENCH_CONCURRENCY (destination concurrency, default 128),
# BENCH_STORE=postgres to run one node on a fresh PostgreSQL database each time (BENCH_PG_URL,
# default the local server; dropped afterwards) instead of SQLite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
INTAKE_PORT=18280
HANDLER_PORT=9300
URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"
HZ=$(getconf CLK_TCK)

usage() {
  sed -n '2,32p' "$0" >&2
  exit 2
}

# load_ingest ARGS...: intake-loadgen ingest at 64 connections against this intake, ids in
# BENCH_IDS' order, with ARGS (duration, pacing, output) after.
load_ingest() {
  "$BIN/intake-loadgen" ingest --url "$URL" --secret "$SECRET" --concurrency 64 \
    "${LOADGEN_IDS[@]}" "$@"
}

# intake_metric NAME [FILTER]: the sum of a metric's samples whose labels match FILTER.
intake_metric() { metric "$INTAKE_PORT" "$@"; }

# start_pair EXTRA STATUS: a no-op handler answering STATUS and a fresh intake whose
# destination has EXTRA in its table. Sets INTAKE_PID and HANDLER_PID.
start_pair() {
  local extra=$1 status=$2 store
  mkdir -p "$TMP/data"
  if [[ ${BENCH_STORE:-sqlite} == postgres ]]; then
    pg_fresh_db
    store="url = \"$PG_DB_URL\"
pool_size = 16"
  else
    store="url = \"sqlite://$TMP/data/intake.db\""
  fi
  bench_config "$TMP/intake.toml" "$INTAKE_PORT" "$store" \
    "concurrency = ${BENCH_CONCURRENCY:-128}
$extra"
  start_handler handler "$status" || exit 1
  HANDLER_PID=$STARTED_PID
  start_intake intake "$TMP/intake.toml" || exit 1
  INTAKE_PID=$STARTED_PID
}

cpu() {
  local scenario=$1 seconds=${2:-10} extra="" status=200
  case $scenario in
    held) extra="rate_limit = 1.0" ;;
    delivering) ;;
    failing) status=500 ;;
    *) usage ;;
  esac
  start_pair "$extra" "$status"
  local i0 h0 i1 h1 perf_pid=""
  if [[ -n ${BENCH_PERF:-} ]]; then
    perf record --call-graph dwarf,8192 -F 299 -p "$INTAKE_PID" -o "$BENCH_PERF" 2>"$TMP/perf.log" &
    perf_pid=$!
  fi
  i0=$(cpu_ticks "$INTAKE_PID")
  h0=$(cpu_ticks "$HANDLER_PID")
  load_ingest \
    --duration "${seconds}s" --warmup 0s --json >"$TMP/load.json" 2>"$TMP/load.txt" || true
  i1=$(cpu_ticks "$INTAKE_PID")
  h1=$(cpu_ticks "$HANDLER_PID")
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  local accepted delivered failed
  accepted=$(intake_metric intake_requests_total 'outcome="accepted"')
  delivered=$(intake_metric intake_deliveries_total 'outcome="delivered"')
  failed=$(intake_metric intake_deliveries_total 'outcome="failed"')
  awk -v s="$scenario" -v rps="$(json_field "$TMP/load.json" rps)" -v acc="$accepted" \
    -v del="$delivered" -v fail="$failed" -v ic="$((i1 - i0))" -v hc="$((h1 - h0))" \
    -v hz="$HZ" -v non="$(json_field "$TMP/load.json" non_200)" -v err="$(json_field "$TMP/load.json" errors)" \
    -v la="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
      printf "%s: %.0f req/s, accepted %d, delivered %d, failed attempts %d, intake CPU %.2f s, handler CPU %.2f s, intake %.1f us/event, non-200 %s, errors %s, load %s\n",
        s, rps, acc, del, fail, ic / hz, hc / hz, (acc > 0 ? ic / hz / acc * 1e6 : 0), non, err, la
    }'
}

sustain() {
  local rate=$1 seconds=${2:-60}
  start_pair "" 200
  load_ingest \
    --rate "$rate" --duration "${seconds}s" --warmup 0s --json >"$TMP/load.json" 2>"$TMP/load.txt" &
  local load_pid=$! t=0 acc0=0 del0=0 c0 acc del pend c
  c0=$(cpu_ticks "$INTAKE_PID")
  echo "| t (s) | accepted/s | delivered/s | pending | intake CPU (cores) |"
  echo "|---:|---:|---:|---:|---:|"
  while kill -0 "$load_pid" 2>/dev/null; do
    sleep 5
    t=$((t + 5))
    acc=$(intake_metric intake_requests_total 'outcome="accepted"')
    del=$(intake_metric intake_deliveries_total 'outcome="delivered"')
    pend=$(intake_metric intake_queue_pending)
    c=$(cpu_ticks "$INTAKE_PID")
    awk -v t="$t" -v a="$((acc - acc0))" -v d="$((del - del0))" -v p="$pend" \
      -v c="$((c - c0))" -v hz="$HZ" \
      'BEGIN { printf "| %d | %.0f | %.0f | %d | %.2f |\n", t, a / 5, d / 5, p, c / hz / 5 }'
    acc0=$acc
    del0=$del
    c0=$c
  done
  wait "$load_pid" || true
  local drained=0
  while [[ $(intake_metric intake_queue_pending) -gt 0 && $drained -lt 120 ]]; do
    sleep 1
    drained=$((drained + 1))
  done
  local f="$TMP/load.json"
  echo
  echo "offered $rate/s for ${seconds}s: acknowledged $(json_field "$f" ok) ($(json_field "$f" rps)/s), non-200 $(json_field "$f" non_200), errors $(json_field "$f" errors);" \
    "ack p50 $(json_field "$f" p50_ms) ms, p99 $(json_field "$f" p99_ms) ms, p99.9 $(json_field "$f" p999_ms) ms, max $(json_field "$f" max_ms) ms;" \
    "queue empty ${drained}s after the load stopped; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# latency RATE [SECONDS]: see the header.
latency() {
  local rate=$1 seconds=${2:-20} scenario extra f
  for scenario in delivering held; do
    extra=""
    [[ $scenario == held ]] && extra="rate_limit = 1.0"
    start_pair "$extra" 200
    f="$TMP/latency-$scenario.json"
    load_ingest \
      --rate "$rate" --duration "${seconds}s" --warmup 2s --json >"$f" 2>"$TMP/load.txt" || true
    stop "$INTAKE_PID"
    stop "$HANDLER_PID"
    rm -rf "$TMP/data"
    echo "$scenario at $rate/s: ack p50 $(json_field "$f" p50_ms) ms, p99 $(json_field "$f" p99_ms) ms," \
      "p99.9 $(json_field "$f" p999_ms) ms, max $(json_field "$f" max_ms) ms; non-200 $(json_field "$f" non_200)," \
      "errors $(json_field "$f" errors); load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
}

[[ ${1:-} =~ ^(cpu|sustain|latency)$ ]] || usage
[[ ${BENCH_STORE:-sqlite} =~ ^(sqlite|postgres)$ ]] || usage
bench_init intake-pipeline "$INTAKE_PORT" "$HANDLER_PORT"
case ${1:-} in
  cpu) shift; cpu "$@" ;;
  sustain) shift; [[ $# -ge 1 ]] || usage; sustain "$@" ;;
  latency) shift; [[ $# -ge 1 ]] || usage; latency "$@" ;;
  *) usage ;;
esac
