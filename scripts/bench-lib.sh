# shellcheck shell=bash
# What every benchmark script shares: the binaries, the processes it starts and stops, their
# logs, intake's configuration, and the numbers it reads back. Sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
#   bench_init intake-growth 18617 9617   # TMP, CHILDREN, FAILED, the EXIT/INT/TERM traps;
#                                         # BIN, INTAKE, LOADGEN, NOOP; the ports must be free
#
# A script that needs more on exit (a database to drop) sets BENCH_ON_EXIT to a function name.
# Every process started with `start` is stopped on exit; the temp dir is kept when the script
# fails or BENCH_KEEP is set.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
SECRET="${SECRET:-bench-kustomer-secret}"
BENCH_ON_EXIT="${BENCH_ON_EXIT:-}"

# BENCH_IDS: the order of the load generator's ids. `sequential` (the default) counts up, as
# Kustomer's time-prefixed object ids do; `scattered` spreads them like random ids (UUIDs,
# hashes), which write a page of the store's dedupe index per event. LOADGEN_IDS holds the
# flag to pass to every `intake-loadgen` run.
case ${BENCH_IDS:-sequential} in
  sequential) LOADGEN_IDS=() ;;
  scattered) LOADGEN_IDS=(--scattered-ids) ;;
  *)
    echo "BENCH_IDS must be sequential or scattered, not ${BENCH_IDS}" >&2
    exit 2
    ;;
esac

# bench_init NAME [PORT...]: a temp dir ($TMP) named after NAME, the process list and the
# traps, the binaries (`bench_binaries`), and a check that every PORT is free.
bench_init() {
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  CHILDREN=()
  FAILED=()
  STARTED_PID=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  bench_binaries
  shift
  require_free "$@"
}

# bench_binaries: BIN is BENCH_BIN when set (prebuilt binaries, e.g. two builds compared in
# turns), else the release build, made now; INTAKE, LOADGEN and NOOP are the binaries in it.
bench_binaries() {
  if [[ -n ${BENCH_BIN:-} ]]; then
    BIN="$BENCH_BIN"
  else
    echo "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)..." >&2
    cargo build --release --locked -p intake -p intake-testkit --bins >&2
    BIN="$CARGO_TARGET_DIR/release"
  fi
  INTAKE="$BIN/intake"
  LOADGEN="$BIN/intake-loadgen"
  NOOP="$BIN/intake-noop-server"
}

# start NAME CMD...: runs CMD in the background, its output in $TMP/NAME.log; sets STARTED_PID.
start() {
  local name=$1
  shift
  "$@" >"$TMP/$name.log" 2>&1 &
  STARTED_PID=$!
  CHILDREN+=("$STARTED_PID")
}

# stop PID: SIGTERM, up to 30 s to exit (a store's last checkpoint), then SIGKILL.
stop() {
  local pid=$1 i p kept=()
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "warning: pid $pid still running 30 s after SIGTERM; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  for p in ${CHILDREN[@]+"${CHILDREN[@]}"}; do
    [[ $p == "$pid" ]] || kept+=("$p")
  done
  CHILDREN=(${kept[@]+"${kept[@]}"})
}

# stop_all: stops every process `start` started.
stop_all() {
  local pid
  for pid in ${CHILDREN[@]+"${CHILDREN[@]}"}; do
    stop "$pid"
  done
}

# PostgreSQL, for the benchmarks that run on it: BENCH_PG_URL (default the local server as
# postgres). pg_fresh_db drops the benchmark's database if it made one and creates a new one,
# intake_bench_<random>, whose URL it puts in PG_DB_URL; pg_drop_db drops it (bench_cleanup
# does too, so a failed run leaves no database behind).
PG_URL="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
PG_DB=""
PG_DB_URL=""
psql_admin() { psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -Atqc "$1"; }
pg_drop_db() {
  if [[ -n $PG_DB ]]; then
    psql_admin "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" || true
    PG_DB=""
  fi
}
pg_fresh_db() {
  pg_drop_db
  PG_DB="intake_bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')"
  psql_admin "CREATE DATABASE $PG_DB"
  PG_DB_URL="$PG_URL/$PG_DB"
}

bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all
  pg_drop_db
  if [[ -n $BENCH_ON_EXIT ]]; then
    "$BENCH_ON_EXIT" || true
  fi
  if [[ $rc -ne 0 || -n ${BENCH_KEEP:-} ]]; then
    echo "logs and results kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}

# wait_http URL PID NAME [SECONDS]: polls URL until it answers 2xx (up to SECONDS, default
# 120: a large store takes a while to open), failing if PID exits first.
wait_http() {
  local url=$1 pid=$2 name=$3 limit=$((${4:-120} * 10)) i
  for ((i = 0; i < limit; i++)); do
    curl -sf -o /dev/null "$url" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "error: $name exited before answering $url; the end of its log:" >&2
      tail -n 40 "$TMP/$name.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "error: $name did not answer $url within $((limit / 10)) s; the end of its log:" >&2
  tail -n 40 "$TMP/$name.log" >&2
  return 1
}

# require_free PORT...: exits if something already listens on one of them (another benchmark
# there would answer in place of ours).
require_free() {
  local port
  for port in "$@"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "error: something already listens on 127.0.0.1:$port; stop it and run again" >&2
      exit 1
    fi
  done
}

# json_field FILE KEY: a top-level scalar of FILE's JSON line, or n/a.
json_field() {
  local v=""
  [[ -s $1 ]] && v="$(sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1" | head -n 1)"
  [[ -z $v || $v == null ]] && v="n/a"
  echo "$v"
}

# json_nested FILE OBJECT KEY: a scalar inside a top-level object of FILE's JSON line, or n/a.
json_nested() {
  local v=""
  [[ -s $1 ]] && v="$(sed -n "s/.*\"$2\":{[^}]*\"$3\":\([^,}]*\).*/\1/p" "$1" | head -n 1)"
  [[ -z $v || $v == null ]] && v="n/a"
  echo "$v"
}

# cpu_ticks PID...: utime + stime of the processes, in clock ticks (CLK_TCK a second).
cpu_ticks() {
  local pid sum=0 t
  for pid in "$@"; do
    t="$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    sum=$((sum + t))
  done
  echo "$sum"
}

# rss_kib PID: resident set size in KiB (0 once it has exited).
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# metric PORT NAME [FILTER]: the sum of the samples of metric NAME on intake's /metrics at PORT
# whose line contains FILTER.
metric() {
  curl -s "http://127.0.0.1:$1/metrics" |
    awk -v name="$2" -v filter="${3:-}" '
      index($0, name) == 1 && (filter == "" || index($0, filter) > 0) { s += $NF }
      END { printf "%d", s }'
}

# bench_config FILE PORT STORAGE DESTINATION [SECTIONS [SERVER]]: intake's configuration for
# the benchmarks: one tenant, a Kustomer source signed with $SECRET, one destination `handler`
# on 127.0.0.1:$HANDLER_PORT. STORAGE is the body of [storage] (at least its url), DESTINATION
# lines added to the destination's table, SECTIONS whole tables added before the tenants,
# SERVER lines added to [server].
bench_config() {
  cat >"$1" <<EOF
[server]
listen = "127.0.0.1:$2"
public_url = "http://127.0.0.1:$2"
${6:-}

[storage]
$3

[admin]
token = "bench"
${5:-}

[[tenants]]
id = "bench"

[[destinations]]
id = "handler"
url = "http://127.0.0.1:$HANDLER_PORT/"
secret = "whsec_YmVuY2gtZGVzdGluYXRpb24tc2VjcmV0"
timeout = "5s"
$4

[[sources]]
id = "bench-kustomer"
tenant = "bench"
kind = "kustomer"
secrets = ["$SECRET"]
destinations = ["handler"]
EOF
}

# start_intake NAME CONFIG [PORT]: intake serve on CONFIG with no INTAKE_* variable from the
# environment but INTAKE_LOG (default warn), so none overrides the benchmark's configuration;
# waits for /readyz on PORT (default $INTAKE_PORT). Sets STARTED_PID.
start_intake() {
  local name=$1 config=$2 port=${3:-$INTAKE_PORT} var cmd=(env)
  while IFS= read -r var; do
    [[ $var == INTAKE_LOG ]] || cmd+=(-u "$var")
  done < <(compgen -e | grep '^INTAKE_' || true)
  cmd+=("INTAKE_LOG=${INTAKE_LOG:-warn}" "$INTAKE" serve --config "$config")
  start "$name" "${cmd[@]}"
  wait_http "http://127.0.0.1:$port/readyz" "$STARTED_PID" "$name"
}

# start_handler NAME [STATUS]: intake-noop-server on $HANDLER_PORT, answering STATUS (default
# 200) to every delivery. Sets STARTED_PID.
start_handler() {
  start "$1" "$NOOP" --listen "127.0.0.1:$HANDLER_PORT" --delivery-status "${2:-200}"
  wait_http "http://127.0.0.1:$HANDLER_PORT/healthz" "$STARTED_PID" "$1"
}

# scenario_load DRAIN WATCHER: a scenario's load. `intake-loadgen e2e` sends RATE signed
# webhooks a second for SECONDS_LOAD s at c16 to $INTAKE_URL and waits up to DRAIN (e.g. 60s)
# for every acknowledged one at its capture handler on $HANDLER_PORT, writing
# $TMP/e2e.json; then /readyz and the request counters are read, the WATCHER process and
# intake ($INTAKE_PID) are stopped, and the load generator's report goes to stderr. Sets
# LOADGEN_RC, READY_AFTER, ACCEPTED_END and REFUSED (requests answered 503 as unavailable).
scenario_load() {
  set +e
  "$LOADGEN" e2e --url "$INTAKE_URL" --secret "$SECRET" --concurrency 16 --rate "$RATE" \
    --duration "${SECONDS_LOAD}s" --warmup 1s --drain "$1" \
    --handler-listen "127.0.0.1:$HANDLER_PORT" \
    ${LOADGEN_IDS[@]+"${LOADGEN_IDS[@]}"} --json >"$TMP/e2e.json" 2>"$TMP/e2e.txt"
  LOADGEN_RC=$?
  set -e
  READY_AFTER=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$INTAKE_PORT/readyz" || true)
  ACCEPTED_END=$(metric "$INTAKE_PORT" intake_requests_total 'outcome="accepted"')
  REFUSED=$(metric "$INTAKE_PORT" intake_requests_total 'outcome="unavailable"')
  stop "$2"
  stop "$INTAKE_PID"
  cat "$TMP/e2e.txt" >&2
}

# seconds A B: A - B with one decimal (instants from `date +%s.%N`).
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }

# scenario_watch DIR [EXTRA [AFTER]]: a scenario's watcher, run in the background while
# intake ($INTAKE_PID) runs. Every 200 ms it appends a line to $TMP/watch.txt: the time, the
# requests refused as unavailable, the /readyz status, the requests accepted, what the
# command EXTRA prints (if given), and DIR's free KiB. Once intake has refused requests for
# HOLD seconds it deletes DIR/ballast, as an operator freeing space would ("TIME freed" in
# $TMP/events.txt); from then on it runs the command AFTER (if given) on every sample, with
# the seconds since the free.
scenario_watch() {
  local dir=$1 extra=${2:-} after=${3:-} full_since="" freed="" now refused ready accepted more
  while kill -0 "$INTAKE_PID" 2>/dev/null; do
    now=$(date +%s.%N)
    refused=$(metric "$INTAKE_PORT" intake_requests_total 'outcome="unavailable"')
    accepted=$(metric "$INTAKE_PORT" intake_requests_total 'outcome="accepted"')
    ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$INTAKE_PORT/readyz" || true)
    more=""
    [[ -n $extra ]] && more="$("$extra") "
    echo "$now $refused $ready $accepted ${more}$(df --output=avail -k "$dir" | tail -n 1 | tr -d ' ')" \
      >>"$TMP/watch.txt"
    if [[ -z $freed ]]; then
      if [[ $refused -gt 0 ]]; then
        [[ -z $full_since ]] && full_since=$now
        if awk -v a="$now" -v b="$full_since" -v h="$HOLD" 'BEGIN { exit !(a - b >= h) }'; then
          rm -f "$dir/ballast"
          freed=$now
          echo "$now freed" >>"$TMP/events.txt"
        fi
      fi
    elif [[ -n $after ]]; then
      "$after" "$(seconds "$now" "$freed")"
    fi
    sleep 0.2
  done
}
