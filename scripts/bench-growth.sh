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
#           an overload: 1,000 connections sending 2 KB bodies flat out for 30 s. intake's RSS
#           (VmRSS) is sampled every second throughout; statuses are counted.
#
# Environment: BENCH_INTAKE_PORT (18617) and BENCH_HANDLER_PORT (9617), BENCH_PARTS (default "growth memory"), BENCH_SIZES (default "0 1000000
# 10000000"), BENCH_ROUNDS (3), BENCH_DURATION (10s), BENCH_WARMUP (2s), BENCH_BIN=DIR to run
# prebuilt binaries (intake, intake-loadgen, intake-noop-server; intake-store-growth from
# BENCH_TOOL_BIN, default the same DIR), CARGO_TARGET_DIR (default /var/tmp/intake-target).
# Results: a Markdown table on stdout, one row per run; details and JSON in the temp dir
# (kept with BENCH_KEEP=1 or on failure).
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
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
SECRET="bench-kustomer-secret"
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -n ${BENCH_BIN:-} ]]; then
  BIN="$BENCH_BIN"
else
  echo "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)..." >&2
  cargo build --release -p intake -p intake-testkit --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
TOOL="${BENCH_TOOL_BIN:-$BIN}/intake-store-growth"
LOADGEN="$BIN/intake-loadgen"
NOOP="$BIN/intake-noop-server"
INTAKE="$BIN/intake"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/intake-growth.XXXXXX")"
CHILDREN=()
FAILED=()
STARTED_PID=""

stop() {
  local pid=$1 i p kept=()
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
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

start() {
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  STARTED_PID=$!
  CHILDREN+=("$STARTED_PID")
}

wait_http() {
  local url=$1 pid=$2 name=$3 i
  for ((i = 0; i < 1200; i++)); do
    curl -sf -o /dev/null "$url" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name exited; the end of its log:" >&2
      tail -n 40 "$TMP/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "error: $name did not answer $url within 120 s" >&2
  return 1
}

# field FILE KEY: a top-level scalar of a JSON line, or n/a.
field() {
  local v=""
  [[ -s $1 ]] && v="$(sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1)"
  [[ -z $v || $v == null ]] && v="n/a"
  echo "$v"
}

# nested FILE OBJECT KEY: a scalar inside a top-level object of a JSON line, or n/a.
nested() {
  local v=""
  [[ -s $1 ]] && v="$(sed -n "s/.*\"$2\":{[^}]*\"$3\":\([^,}]*\).*/\1/p" "$1" | head -n 1)"
  [[ -z $v ]] && v="n/a"
  echo "$v"
}

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() {
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

# accepted: intake's accepted requests so far, from /metrics.
accepted() {
  curl -s "http://127.0.0.1:$INTAKE_PORT/metrics" |
    awk '/^intake_requests_total\{.*outcome="accepted"/ { s += $NF } END { printf "%d", s }'
}

# rss_kib PID: resident set size in KiB.
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# write_config FILE DB EXTRA: intake's configuration on database DB; EXTRA goes into the
# destination's table.
write_config() {
  cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$INTAKE_PORT"
public_url = "http://127.0.0.1:$INTAKE_PORT"

[storage]
url = "sqlite://$2"

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
$3

[[sources]]
id = "bench-kustomer"
tenant = "bench"
kind = "kustomer"
secrets = ["$SECRET"]
destinations = ["handler"]
EOF
}

start_intake() {
  local name=$1 config=$2 var cmd=(env)
  while IFS= read -r var; do
    cmd+=(-u "$var")
  done < <(compgen -e | grep '^INTAKE_' || true)
  cmd+=("INTAKE_LOG=warn" "$INTAKE" serve --config "$config")
  start "$name" "${cmd[@]}"
  wait_http "http://127.0.0.1:$INTAKE_PORT/healthz" "$STARTED_PID" "$name"
}

# store SIZE: the path of a store holding SIZE delivered events, made if missing (the empty
# one is made again each time).
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

growth() {
  local round size db name pid c0 c1 a0 a1 load
  echo "| round | stored events | ingest req/s c64 | intake CPU µs/event | claim p50 / p99 ms | claim CPU ms | queue gauges p50 ms | load avg |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for ((round = 1; round <= ROUNDS; round++)); do
    for size in $SIZES; do
      name="r$round-n$size"
      db="$(store "$size")"
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
      printf '| %s | %s | %.0f | %s | %s / %s | %s | %s | %s |\n' "$round" "$size" \
        "$(field "$TMP/$name-ingest.json" rps)" \
        "$(awk -v c=$((c1 - c0)) -v a=$((a1 - a0)) -v hz="$(getconf CLK_TCK)" \
          'BEGIN { if (a > 0) printf "%.0f", c / hz * 1e6 / a; else print "n/a" }')" \
        "$(nested "$TMP/$name-probe.json" claim p50_ms)" \
        "$(nested "$TMP/$name-probe.json" claim p99_ms)" \
        "$(nested "$TMP/$name-probe.json" claim cpu_ms_per_call)" \
        "$(nested "$TMP/$name-probe.json" queue_stats p50_ms)" "$load"
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

memory() {
  local db pid handler sampler
  db="$(store "$MEMORY_SIZE")"
  start handler "$NOOP" --listen "127.0.0.1:$HANDLER_PORT"
  handler=$STARTED_PID
  wait_http "http://127.0.0.1:$HANDLER_PORT/healthz" "$handler" handler
  write_config "$TMP/memory.toml" "$db" ""
  start_intake memory-intake "$TMP/memory.toml" || {
    FAILED+=("memory: intake did not start")
    return
  }
  pid=$STARTED_PID
  sample_rss "$pid" "$TMP/rss.txt" &
  sampler=$!
  echo "--- memory: 1000/s delivering for $MEMORY_DURATION on $MEMORY_SIZE stored events" >&2
  "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 64 --rate 1000 \
    --duration "$MEMORY_DURATION" --warmup 2s --json >"$TMP/memory-steady.json" \
    2>"$TMP/memory-steady.txt" || FAILED+=("memory: steady loadgen")
  local steady_end
  steady_end="$(wc -l <"$TMP/rss.txt")"
  echo "--- memory: overload, 1000 connections, 2 KB bodies, 30 s" >&2
  "$LOADGEN" ingest --url "$INTAKE_URL" --secret "$SECRET" --concurrency 1000 \
    --body-size 2048 --duration 30s --warmup 0s --json >"$TMP/memory-overload.json" \
    2>"$TMP/memory-overload.txt" || true
  sleep 5
  stop "$pid"
  stop "$handler"
  wait "$sampler" 2>/dev/null || true
  echo
  echo "| phase | RSS MiB: first / max / last | loadgen |"
  echo "|---|---|---|"
  head -n "$steady_end" "$TMP/rss.txt" | awk -v l="$(field "$TMP/memory-steady.json" rps) req/s, p99 $(field "$TMP/memory-steady.json" p99_ms) ms, $(field "$TMP/memory-steady.json" non_200) non-200" \
    'NR == 1 { f = $2 } { if ($2 > m) m = $2; z = $2 } END { printf "| 1000/s delivering, %d s | %.0f / %.0f / %.0f | %s |\n", NR, f / 1024, m / 1024, z / 1024, l }'
  tail -n "+$((steady_end + 1))" "$TMP/rss.txt" | awk -v l="$(field "$TMP/memory-overload.json" rps) req/s, statuses $(sed -n 's/.*"status":\({[^}]*}\).*/\1/p' "$TMP/memory-overload.json"), $(field "$TMP/memory-overload.json" errors) transport errors" \
    'NR == 1 { f = $2 } { if ($2 > m) m = $2; z = $2 } END { printf "| overload c1000, 2 KB, then 5 s idle | %.0f / %.0f / %.0f | %s |\n", f / 1024, m / 1024, z / 1024, l }'
  echo "RSS samples (seconds, KiB): $TMP/rss.txt" >&2
  cp "$TMP/rss.txt" "$STORES/rss-last-run.txt"
}

# Another benchmark on the same ports would answer in intake's place: refuse to start.
for port in "$INTAKE_PORT" "$HANDLER_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "error: something already listens on 127.0.0.1:$port; set BENCH_INTAKE_PORT/BENCH_HANDLER_PORT" >&2
    exit 1
  fi
done

echo "## Store growth: $(nproc) CPUs, $DURATION per ingest run after $WARMUP warm-up, binaries from $BIN"
echo
for part in $PARTS; do
  "$part"
done
if [[ ${#FAILED[@]} -gt 0 ]]; then
  printf '!!! %s\n' "${FAILED[@]}" >&2
  exit 1
fi
