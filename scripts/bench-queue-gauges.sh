#!/usr/bin/env bash
# The queue gauges during a long handler outage: what `/metrics` and `GET /api/v1/queue` cost
# when millions of deliveries are queued (docs/benchmarks.md, "The queue gauges during a long
# outage"). Loopback only; release binaries from BENCH_BIN, or built now.
#
#   scripts/bench-queue-gauges.sh [PENDING]
#
# Makes (once, kept in BENCH_QUEUE_STORE, default /var/tmp/intake-queue-store-PENDING) a SQLite
# store whose PENDING deliveries (default 3,000,000) are all queued, with
# scripts/prefill-store.py, then starts intake on it (deliveries held back: the destination
# is rate-limited to one attempt a second at an address nothing answers) and prints one line
# per measurement, each with its latencies in seconds:
#   alone    three scrapes of /metrics one after the other;
#   x4, x8   4 and 8 scrapes at once, and intake's CPU seconds for them;
#   steady   for 10 s, a scrape every second beside two dashboards reading the queue API
#            every second: every latency, sorted, and intake's CPU seconds.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
INTAKE_PORT=18455
HANDLER_PORT=9455
PENDING=${1:-3000000}
STORE=${BENCH_QUEUE_STORE:-/var/tmp/intake-queue-store-$PENDING}
HZ=$(getconf CLK_TCK)
bench_init intake-queue-gauges "$INTAKE_PORT"

if [[ ! -s $STORE/intake.db ]]; then
  mkdir -p "$STORE"
  echo "--- prefill $PENDING pending deliveries into $STORE (once)" >&2
  scripts/prefill-store.py --db "$STORE/intake.db" --events "$PENDING" --pending "$PENDING" >&2
fi
# A copy per run: intake changes the store (leases, counters) while it runs.
cp "$STORE/intake.db" "$TMP/intake.db"
bench_config "$TMP/intake.toml" "$INTAKE_PORT" "url = \"sqlite://$TMP/intake.db\"" 'rate_limit = "1/s"'
start_intake intake "$TMP/intake.toml"
PID=$STARTED_PID
URL="http://127.0.0.1:$INTAKE_PORT"

# get NAME PATH: one request; prints NAME and its latency.
get() {
  curl -s -o /dev/null -H 'Authorization: Bearer bench' -w "$1 %{time_total}\n" "$URL$2"
}

cpu_seconds() { echo "scale=2; ($2 - $1) / $HZ" | bc; }

for _ in 1 2 3; do get alone /metrics; done
for n in 4 8; do
  c0=$(cpu_ticks "$PID")
  pids=()
  for ((i = 0; i < n; i++)); do
    get "x$n" /metrics &
    pids+=($!)
  done
  wait "${pids[@]}"
  echo "x$n intake_cpu $(cpu_seconds "$c0" "$(cpu_ticks "$PID")")"
done
c0=$(cpu_ticks "$PID")
pids=()
for _ in $(seq 1 10); do
  get metrics /metrics >>"$TMP/steady" &
  pids+=($!)
  for _ in 1 2; do
    get api /api/v1/queue >>"$TMP/steady" &
    pids+=($!)
  done
  sleep 1
done
wait "${pids[@]}"
for what in metrics api; do
  echo "steady $what $(awk -v w="$what" '$1 == w { print $2 }' "$TMP/steady" | sort -n | tr '\n' ' ')"
done
echo "steady intake_cpu $(cpu_seconds "$c0" "$(cpu_ticks "$PID")")"
