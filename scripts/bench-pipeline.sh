#!/usr/bin/env bash
# The SQLite pipeline (issue 16): what intake's CPU costs per event, and whether delivery keeps
# up with ingest under a sustained load. Loopback only; release binaries from BENCH_BIN (or
# $CARGO_TARGET_DIR/release, built beforehand: cargo build --release -p intake -p intake-testkit --bins).
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
# Environment: BENCH_BIN=DIR (prebuilt binaries), BENCH_KEEP=1 (keep the temp dir),
# INTAKE_LOG (default warn), BENCH_CONCURRENCY (destination concurrency, default 128).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${BENCH_BIN:-${CARGO_TARGET_DIR:-/var/tmp/intake-target}/release}"
INTAKE_PORT=18280
HANDLER_PORT=9300
SECRET="bench-kustomer-secret"
URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"
HZ=$(getconf CLK_TCK)
TMP="$(mktemp -d "${TMPDIR:-/tmp}/intake-pipeline.XXXXXX")"
PIDS=()

cleanup() {
  local rc=$? p
  for p in ${PIDS[@]+"${PIDS[@]}"}; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in ${PIDS[@]+"${PIDS[@]}"}; do
    wait "$p" 2>/dev/null || true
  done
  if [[ $rc -ne 0 || -n ${BENCH_KEEP:-} ]]; then
    echo "logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT

usage() {
  sed -n '2,24p' "$0" >&2
  exit 2
}

# ticks PID: CPU ticks (utime + stime) the process has used so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# wait_http URL: polls until it answers 2xx (30 s).
wait_http() {
  local i
  for ((i = 0; i < 300; i++)); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "error: $1 did not answer within 30 s" >&2
  exit 1
}

# metric NAME [FILTER]: the sum of a metric's samples whose labels match FILTER.
metric() {
  curl -s "http://127.0.0.1:$INTAKE_PORT/metrics" |
    awk -v name="$1" -v filter="${2:-}" '
      index($0, name) == 1 && (filter == "" || index($0, filter) > 0) { s += $NF }
      END { printf "%d", s }'
}

# start_pair EXTRA STATUS: a no-op handler answering STATUS and a fresh intake whose
# destination has EXTRA in its table. Sets INTAKE_PID and HANDLER_PID.
start_pair() {
  local extra=$1 status=$2
  mkdir -p "$TMP/data"
  cat >"$TMP/intake.toml" <<EOF
[server]
listen = "127.0.0.1:$INTAKE_PORT"
public_url = "http://127.0.0.1:$INTAKE_PORT"

[storage]
url = "sqlite://$TMP/data/intake.db"

[admin]
token = "bench"

[[tenants]]
id = "bench"

[[destinations]]
id = "handler"
url = "http://127.0.0.1:$HANDLER_PORT/"
secret = "whsec_YmVuY2gtZGVzdGluYXRpb24tc2VjcmV0"
timeout = "5s"
concurrency = ${BENCH_CONCURRENCY:-128}
$extra

[[sources]]
id = "bench-kustomer"
tenant = "bench"
kind = "kustomer"
secrets = ["$SECRET"]
destinations = ["handler"]
EOF
  "$BIN/intake-noop-server" --listen "127.0.0.1:$HANDLER_PORT" --delivery-status "$status" \
    >"$TMP/handler.log" 2>&1 &
  HANDLER_PID=$!
  PIDS+=("$HANDLER_PID")
  wait_http "http://127.0.0.1:$HANDLER_PORT/healthz"
  env -u INTAKE_URL -u INTAKE_TOKEN INTAKE_LOG="${INTAKE_LOG:-warn}" \
    "$BIN/intake" serve --config "$TMP/intake.toml" >"$TMP/intake.log" 2>&1 &
  INTAKE_PID=$!
  PIDS+=("$INTAKE_PID")
  wait_http "http://127.0.0.1:$INTAKE_PORT/readyz"
}

field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1; }

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
  i0=$(ticks "$INTAKE_PID")
  h0=$(ticks "$HANDLER_PID")
  "$BIN/intake-loadgen" ingest --url "$URL" --secret "$SECRET" --concurrency 64 \
    --duration "${seconds}s" --warmup 0s --json >"$TMP/load.json" 2>"$TMP/load.txt" || true
  i1=$(ticks "$INTAKE_PID")
  h1=$(ticks "$HANDLER_PID")
  if [[ -n $perf_pid ]]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
  fi
  local accepted delivered failed
  accepted=$(metric intake_requests_total 'outcome="accepted"')
  delivered=$(metric intake_deliveries_total 'outcome="delivered"')
  failed=$(metric intake_deliveries_total 'outcome="failed"')
  awk -v s="$scenario" -v rps="$(field "$TMP/load.json" rps)" -v acc="$accepted" \
    -v del="$delivered" -v fail="$failed" -v ic="$((i1 - i0))" -v hc="$((h1 - h0))" \
    -v hz="$HZ" -v non="$(field "$TMP/load.json" non_200)" -v err="$(field "$TMP/load.json" errors)" \
    -v la="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
      printf "%s: %.0f req/s, accepted %d, delivered %d, failed attempts %d, intake CPU %.2f s, handler CPU %.2f s, intake %.1f us/event, non-200 %s, errors %s, load %s\n",
        s, rps, acc, del, fail, ic / hz, hc / hz, (acc > 0 ? ic / hz / acc * 1e6 : 0), non, err, la
    }'
}

sustain() {
  local rate=$1 seconds=${2:-60}
  start_pair "" 200
  "$BIN/intake-loadgen" ingest --url "$URL" --secret "$SECRET" --concurrency 64 \
    --rate "$rate" --duration "${seconds}s" --warmup 0s --json >"$TMP/load.json" 2>"$TMP/load.txt" &
  local load_pid=$! t=0 acc0=0 del0=0 c0 acc del pend c
  c0=$(ticks "$INTAKE_PID")
  echo "| t (s) | accepted/s | delivered/s | pending | intake CPU (cores) |"
  echo "|---:|---:|---:|---:|---:|"
  while kill -0 "$load_pid" 2>/dev/null; do
    sleep 5
    t=$((t + 5))
    acc=$(metric intake_requests_total 'outcome="accepted"')
    del=$(metric intake_deliveries_total 'outcome="delivered"')
    pend=$(metric intake_queue_pending)
    c=$(ticks "$INTAKE_PID")
    awk -v t="$t" -v a="$((acc - acc0))" -v d="$((del - del0))" -v p="$pend" \
      -v c="$((c - c0))" -v hz="$HZ" \
      'BEGIN { printf "| %d | %.0f | %.0f | %d | %.2f |\n", t, a / 5, d / 5, p, c / hz / 5 }'
    acc0=$acc
    del0=$del
    c0=$c
  done
  wait "$load_pid" || true
  local drained=0
  while [[ $(metric intake_queue_pending) -gt 0 && $drained -lt 120 ]]; do
    sleep 1
    drained=$((drained + 1))
  done
  local f="$TMP/load.json"
  echo
  echo "offered $rate/s for ${seconds}s: acknowledged $(field "$f" ok) ($(field "$f" rps)/s), non-200 $(field "$f" non_200), errors $(field "$f" errors);" \
    "ack p50 $(field "$f" p50_ms) ms, p99 $(field "$f" p99_ms) ms, p99.9 $(field "$f" p999_ms) ms, max $(field "$f" max_ms) ms;" \
    "queue empty ${drained}s after the load stopped; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

case ${1:-} in
  cpu) shift; cpu "$@" ;;
  sustain) shift; [[ $# -ge 1 ]] || usage; sustain "$@" ;;
  *) usage ;;
esac
