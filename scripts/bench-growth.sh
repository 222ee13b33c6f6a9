#!/usr/bin/env bash
# Cost as the store grows, and memory (issue 16): on loopback only, SQLite.
#
#   growth  for each store size in BENCH_SIZES (events already stored, delivered), in
#           BENCH_ROUNDS rounds: the claim latency and the queue gauges' read time on that
#           store (intake-store-growth: 200 claims of 64 due deliveries, 5 reads of
#           Store::queue_stats), then intake serve on it with deliveries held back (the
#           destination rate-limited to one attempt a second) under intake-loadgen ingest at
#           c64: req/s, and intake's CPU time per accepted event (utime + stime from
#           /proc/PID/stat over the run, divided by the accepted count from /metrics), which
#           the other builds on the machine disturb far less than req/s.
#           Stores are made once by scripts/prefill-store.py in BENCH_STORES (default
#           /var/tmp/intake-growth: ~0.8 KB per event on disk with 64-byte bodies, so 10 M
#           events take ~8 GB) and reused; each run adds what it ingests (a few 100 k events).
#           The empty store is made again for every round.
#   memory  on the store of BENCH_MEMORY_SIZE events (default 1 M): intake serve delivering to
#           a no-op handler at 1,000 events/s for BENCH_MEMORY_DURATION (default 60s), then
#           an overload: 1,000 connections sending 2 KB bodies flat out for 30 s, first with
#           the default limits (256 connections per address: the rest are answered 503), then
#           on a second intake that admits all 1,000. intake's RSS (VmRSS) is sampled every
#           second throughout; statuses are counted.
#
# Environment: BENCH_INTAKE_PORT (18617) and BENCH_HANDLER_PORT (9617), BENCH_PARTS (default "growth memory"), BENCH_SIZES (default "0 1000000
# 10000000"), BENCH_ROUNDS (3), BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_BIN=DIR to run
# prebuilt binaries (intake, intake-loadgen, intake-noop-server; intake-store-growth from
# BENCH_TOOL_BIN, default the same DIR), CARGO_TARGET_DIR (default /var/tmp/intake-target).
# Results: a Markdown table on stdout, one row per run; details and JSON in the temp dir
# (kept with BENCH_KEEP=1 or on failure).
set -euo pipefail

PARTS="${BENCH_PARTS:-growth memory}"
SIZES="${BENCH_SIZES:-0 1000000 10000000}"
ROUNDS="${BENCH_ROUNDS:-3}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
STORES="${BENCH_STORES:-/var/tmp/intake-growth}"
MEMORY_SIZE="${BENCH_MEMORY_SIZE:-1000000}"
MEMORY_DURATION="${BENCH_MEMORY_DURATION:-60s}"
INTAKE_PORT="${BENCH_INTAKE_PORT:-18617}"
HANDLER_PORT="${BENCH_HANDLER_PORT:-9617}"
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-growth "$INTAKE_PORT" "$HANDLER_PORT"
TOOL="${BENCH_TOOL_BIN:-$BIN}/intake-store-growth"

# accepted: intake's accepted requests so far, from /metrics.
accepted() {
  metric "$INTAKE_PORT" intake_requests_total 'outcome="accepted"'
}

# write_config FILE DB EXTRA: intake's configuration on database DB; EXTRA goes into the
# destination's table.
write_config() {
  bench_config "$1" "$INTAKE_PORT" "url = \"sqlite://$2\"" "concurrency = 128
$3"
}

# store SIZE: the path of a store holding SIZE delivered events, made if missing (the empty
# one is made again each time). A run on it adds what it ingests: `trim` takes that away
# again, so every round and part finds the store as prefilled (its 20,000 due deliveries, not
# a backlog left by the runs before).
store() {
  local size=$1 dir="$STORES/n$1"
  if [[ $size == 0 ]]; then
    rm -rf "$dir"
  fi
  if [[ ! -e $dir/intake.db ]]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "--- prefill $size events into $dir" >&2
    scripts/prefill-store.py --db "$dir/intake.db" --events "$size" >"$TMP/prefill-$size.json"
    cat "$TMP/prefill-$size.json" >&2
  fi
  echo "$dir/intake.db"
}

# now_ms: the time in milliseconds.
now_ms() { date +%s%3N; }

# trim DB SINCE: takes away what runs did to DB from SINCE (ms) on: the events received since,
# their deliveries and attempts are deleted, and the store's newest 20,000 deliveries (by
# rowid: prefill-store.py wrote them in time order) are pending and due again, as it left them
# (a run may have attempted or delivered them; the probe's claims are made due again at every
# open anyway).
trim() {
  sqlite3 "$1" "PRAGMA busy_timeout = 10000;
    DELETE FROM attempts WHERE delivery_id IN
      (SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.received_at >= $2);
    DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE received_at >= $2);
    DELETE FROM events WHERE received_at >= $2;
    DELETE FROM attempts WHERE delivery_id IN
      (SELECT id FROM deliveries ORDER BY rowid DESC LIMIT 20000);
    UPDATE deliveries SET state = 'pending', attempts = 0, due_at = created_at,
        updated_at = created_at, delivered_at = NULL, last_status = NULL, last_error = NULL,
        delivered_ms = NULL, lease_id = NULL, lease_node = NULL
      WHERE id IN (SELECT id FROM deliveries ORDER BY rowid DESC LIMIT 20000);
    PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
}

growth() {
  local round size db name pid c0 c1 a0 a1 load since
  echo "| round | stored events | ingest req/s c64 | intake CPU µs/event | claim p50 / p99 ms | claim CPU ms | queue gauges p50 ms | load avg |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for ((round = 1; round <= ROUNDS; round++)); do
    for size in $SIZES; do
      name="r$round-n$size"
      db="$(store "$size")"
      since="$(now_ms)"
      load="$(cut -d' ' -f1-3 /proc/loadavg)"
      if [[ -x $TOOL ]]; then
        echo "--- $name: probe" >&2
        "$TOOL" --db "$db" >"$TMP/$name-probe.json" || FAILED+=("$name: probe")
      else
        echo "--- $name: no $TOOL, claims and gauges not measured" >&2
      fi
      write_config "$TMP/$name.toml" "$db" "rate_limit = 1.0"
      if ! start_intake "$name-intake" "$TMP/$name.toml"; then
        FAILED+=("$name: intake did not start")
        continue
      fi
      pid=$STARTED_PID
      c0="$(cpu_ticks "$pid")"
      a0="$(accepted)"
      echo "--- $name: ingest c64" >&2
      "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 64 \
        --duration "$DURATION" --warmup "$WARMUP" --json >"$TMP/$name-ingest.json" \
        2>"$TMP/$name-ingest.txt" || FAILED+=("$name: loadgen")
      c1="$(cpu_ticks "$pid")"
      a1="$(accepted)"
      stop "$pid"
      trim "$db" "$since"
      printf '| %s | %s | %.0f | %s | %s / %s | %s | %s | %s |\n' "$round" "$size" \
        "$(json_field "$TMP/$name-ingest.json" rps)" \
        "$(awk -v c=$((c1 - c0)) -v a=$((a1 - a0)) -v hz="$(getconf CLK_TCK)" \
          'BEGIN { if (a > 0) printf "%.0f", c / hz * 1e6 / a; else print "n/a" }')" \
        "$(json_nested "$TMP/$name-probe.json" claim p50_ms)" \
        "$(json_nested "$TMP/$name-probe.json" claim p99_ms)" \
        "$(json_nested "$TMP/$name-probe.json" claim cpu_ms_per_call)" \
        "$(json_nested "$TMP/$name-probe.json" queue_stats p50_ms)" "$load"
    done
  done
}

# sample_rss PID FILE: appends "seconds rss_kib" every second until PID exits.
sample_rss() {
  local pid=$1 file=$2 t=0
  while kill -0 "$pid" 2>/dev/null; do
    echo "$t $(rss_kib "$pid")" >>"$file"
    sleep 1
    t=$((t + 1))
  done
}

# overload NAME: 1,000 connections sending 2 KB bodies flat out for 30 s, then 5 s idle.
overload() {
  echo "--- memory: $1: 1000 connections, 2 KB bodies, 30 s" >&2
  "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 1000 \
    --body-size 2048 --duration 30s --warmup 0s --json >"$TMP/memory-$1.json" \
    2>"$TMP/memory-$1.txt" || true
  sleep 5
}

# rss_row LABEL RUN FIRST LAST: a table row of the RSS samples FIRST..LAST of $TMP/rss-RUN.txt
# and what the load generator of RUN saw.
rss_row() {
  local f="$TMP/memory-$2.json" seen
  seen="$(json_field "$f" rps) req/s, ack p50 $(json_field "$f" p50_ms) / p99 $(json_field "$f" p99_ms) / max $(json_field "$f" max_ms) ms, statuses $(sed -n 's/.*"status":\({[^}]*}\).*/\1/p' "$f"), $(json_field "$f" errors) transport errors"
  sed -n "$3,$4p" "$TMP/rss-$2.txt" | awk -v label="$1" -v seen="$seen" \
    'NR == 1 { f = $2 } { if ($2 > m) m = $2; z = $2 } END { printf "| %s | %.0f / %.0f / %.0f | %s |\n", label, f / 1024, m / 1024, z / 1024, seen }'
}

# memory: intake on the store of MEMORY_SIZE events, RSS sampled every second through
#   steady    1,000 events/s delivered to a no-op handler, for MEMORY_DURATION;
#   per-ip    1,000 connections from one address with the defaults: past
#             server.max_connections_per_ip (256), connections are answered 503;
#   admitted  a second intake on the same store with max_connections_per_ip = 4096, so that
#             all 1,000 connections get in and wait on the writer: past its capacity.
# sampled_intake NAME CONFIG: intake on CONFIG with its RSS sampled every second into
# $TMP/rss-NAME.txt; sets PID and SAMPLER.
sampled_intake() {
  start_intake "memory-$1" "$2" || return 1
  PID=$STARTED_PID
  sample_rss "$PID" "$TMP/rss-$1.txt" &
  SAMPLER=$!
}

memory() {
  local db handler steady_end since
  db="$(store "$MEMORY_SIZE")"
  since="$(now_ms)"
  start_handler handler
  handler=$STARTED_PID
  write_config "$TMP/memory.toml" "$db" ""
  sampled_intake steady "$TMP/memory.toml" || {
    FAILED+=("memory: intake did not start")
    return
  }
  echo "--- memory: 1000/s delivering for $MEMORY_DURATION on $MEMORY_SIZE stored events" >&2
  "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 64 --rate 1000 \
    --duration "$MEMORY_DURATION" --warmup 2s --json >"$TMP/memory-steady.json" \
    2>"$TMP/memory-steady.txt" || FAILED+=("memory: steady loadgen")
  steady_end="$(wc -l <"$TMP/rss-steady.txt")"
  overload per-ip
  stop "$PID"
  wait "$SAMPLER" 2>/dev/null || true
  cp "$TMP/rss-steady.txt" "$TMP/rss-per-ip.txt"

  bench_config "$TMP/memory-admitted.toml" "$INTAKE_PORT" "url = \"sqlite://$db\"" \
    "concurrency = 128" "" "max_connections_per_ip = 4096"
  sampled_intake admitted "$TMP/memory-admitted.toml" || {
    FAILED+=("memory: the second intake did not start")
    return
  }
  overload admitted
  stop "$PID"
  stop "$handler"
  wait "$SAMPLER" 2>/dev/null || true
  trim "$db" "$since"
  echo
  echo "| phase | RSS MiB: first / max / last | load generator |"
  echo "|---|---|---|"
  rss_row "1,000/s delivering, $MEMORY_DURATION on $MEMORY_SIZE stored" steady 1 "$steady_end"
  rss_row "c1000 from one address (defaults: 256 per address), then 5 s idle" per-ip "$((steady_end + 1))" '$'
  rss_row "c1000 admitted (max_connections_per_ip = 4096), then 5 s idle" admitted 1 '$'
  mkdir -p "$STORES"
  cp "$TMP"/rss-*.txt "$STORES/"
  echo "RSS samples (seconds, KiB): $STORES/rss-*.txt" >&2
}

echo "## Store growth: $(nproc) CPUs, $DURATION per ingest run after $WARMUP warm-up, binaries from $BIN"
echo
for part in $PARTS; do
  "$part"
done
if [[ ${#FAILED[@]} -gt 0 ]]; then
  printf '!!! %s\n' "${FAILED[@]}" >&2
  exit 1
fi
