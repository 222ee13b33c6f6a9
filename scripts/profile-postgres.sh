#!/usr/bin/env bash
# What one event costs PostgreSQL, and where the CPU goes, during durable ingest (deliveries
# held back) and while delivering: one intake node, 64 connections, a fresh database per run.
#
# Per run it prints one line: the rates (accepted/s from the load generator; delivered/s =
# deliveries delivered by the end of the load, over PROFILE_DURATION), the queue left at the end
# of the load, then the cost per event accepted, measured from the start of the load until the
# queue has drained (deliv; at most PROFILE_DRAIN seconds) or the load ended (held):
#   pg_us      CPU µs of every PostgreSQL process (exited backends included: the postmaster's
#              children time), so other databases' work on the same server counts too;
#   pgdb_us    CPU µs of the backends connected to this run's database only;
#   intake_us  CPU µs of the intake process;
#   wal_b      bytes of WAL written (pg_current_wal_lsn before and after; the whole server);
#   commits    transactions committed in this run's database (pg_stat_database, read after
#              intake exited, so every backend has flushed its statistics);
# and the load average, and how many other databases had sessions (work of others in the same
# server, which the all-process and WAL figures include).
#
# Environment:
#   BENCH_BIN       directories of prebuilt binaries (intake, intake-loadgen, intake-noop-server),
#                   separated by spaces; several are run in turns, round after round. Without it
#                   the release binaries are built first and taken from $CARGO_TARGET_DIR/release.
#   PROFILE_ROUNDS  rounds (default 1); PROFILE_RUNS which runs (default "held deliv");
#   PROFILE_DURATION load per run (default 10s); PROFILE_DRAIN (default 120) seconds at most to
#                   wait for the queue to drain after a deliv run;
#   PROFILE_RATE    for the run "paced": the rate the load generator keeps (default 5000/s).
#   BENCH_PG_URL    the server (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
PG="${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}"
ROUNDS="${PROFILE_ROUNDS:-1}"
RUNS="${PROFILE_RUNS:-held deliv}"
DURATION="${PROFILE_DURATION:-10s}"
DRAIN="${PROFILE_DRAIN:-120}"
RATE="${PROFILE_RATE:-5000}"
if [[ -z ${BENCH_BIN:-} ]]; then
  cargo build --release -p intake -p intake-testkit --bins
  BENCH_BIN="$CARGO_TARGET_DIR/release"
fi
TMP=$(mktemp -d)
HZ=$(getconf CLK_TCK)
I="" H="" DB=""
cleanup() {
  [[ -n $I ]] && kill "$I" 2>/dev/null
  [[ -n $H ]] && kill "$H" 2>/dev/null
  wait 2>/dev/null || true
  [[ -n $DB ]] && psql "$PG/postgres" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

sql() { psql "$PG/postgres" -Atqc "$1"; }
ticks() { # CPU ticks (utime+stime, children excluded) of the given pids
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  echo $t
}
pgticks() { # every postgres process, plus the children that exited (the postmaster's)
  local pm
  pm=$(pgrep -o -x postgres)
  echo $(($(ticks $(pgrep -x postgres)) + $(awk '{ print $16 + $17 }' "/proc/$pm/stat")))
}
dbpids() { sql "SELECT pid FROM pg_stat_activity WHERE datname = '$DB'"; }
others() { sql "SELECT COUNT(DISTINCT datname) FROM pg_stat_activity WHERE datname NOT IN ('$DB', 'postgres')"; }
per_event() { # total events scale -> micro-units per event
  if [[ $2 -gt 0 ]]; then echo "scale=3; $1 * $3 / $2" | bc; else echo n/a; fi
}

measure() { # label bin run
  local label=$1 bin=$2 run=$3 extra="" args=(--concurrency 64)
  case $run in
    held) extra='rate_limit = 1.0' ;;
    deliv) ;;
    paced) args=(--concurrency 64 --rate "$RATE") ;;
    *) echo "unknown run $run" >&2; return 1 ;;
  esac
  DB="intake_prof_$RANDOM$RANDOM"
  sql "CREATE DATABASE $DB"
  cat >"$TMP/intake.toml" <<EOT
[server]
listen = "127.0.0.1:18191"
[storage]
url = "$PG/$DB"
pool_size = 16
[admin]
token = "bench"
[[tenants]]
id = "bench"
[[destinations]]
id = "handler"
url = "http://127.0.0.1:9111/"
secret = "whsec_YmVuY2gtZGVzdGluYXRpb24tc2VjcmV0"
timeout = "5s"
concurrency = 128
$extra
[[sources]]
id = "bench-kustomer"
tenant = "bench"
kind = "kustomer"
secrets = ["s3cret"]
destinations = ["handler"]
EOT
  "$bin/intake-noop-server" --listen 127.0.0.1:9111 >"$TMP/h.log" 2>&1 &
  H=$!
  env -u INTAKE_STORAGE_URL INTAKE_LOG=warn "$bin/intake" serve --config "$TMP/intake.toml" >"$TMP/i.log" 2>&1 &
  I=$!
  for _ in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:18191/readyz && break; sleep 0.1; done
  sleep 1
  local pids lsn0 pg0 db0 in0 t0 load others0
  pids=$(dbpids)
  lsn0=$(sql "SELECT pg_current_wal_lsn()")
  pg0=$(pgticks) db0=$(ticks $pids) in0=$(ticks $I) t0=$(date +%s.%N)
  load=$(cut -d' ' -f1 /proc/loadavg) others0=$(others)
  /usr/bin/time -f "%U %S" -o "$TMP/lg.time" "$bin/intake-loadgen" ingest --secret s3cret \
    --duration "$DURATION" --warmup 0s --json --url http://127.0.0.1:18191/ingest/bench-kustomer \
    "${args[@]}" >"$TMP/$run.json" 2>"$TMP/$run.txt"
  local t1 done1 left1
  t1=$(date +%s.%N)
  done1=$(psql "$PG/$DB" -Atqc "SELECT COUNT(*) FILTER (WHERE state = 'delivered'), COUNT(*) FILTER (WHERE state <> 'delivered') FROM deliveries")
  left1=${done1#*|} done1=${done1%|*}
  local drained=0
  if [[ $run != held ]]; then
    local start=$SECONDS
    while (($(psql "$PG/$DB" -Atqc "SELECT COUNT(*) FROM deliveries WHERE state <> 'delivered'") > 0)); do
      ((SECONDS - start < DRAIN)) || break
      sleep 0.5
    done
    drained=$(echo "$(date +%s.%N) - $t1" | bc)
  fi
  local pids2 pg1 db1 in1 lsn1 events others1
  pids2=$(dbpids)
  pg1=$(pgticks) db1=$(ticks $pids2) in1=$(ticks $I)
  lsn1=$(sql "SELECT pg_current_wal_lsn()") others1=$(others)
  events=$(psql "$PG/$DB" -Atqc "SELECT COUNT(*) FROM events")
  kill "$I" "$H"
  wait "$I" "$H" 2>/dev/null || true
  I="" H=""
  sleep 0.5
  local wal commits rps lg
  wal=$(sql "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
  commits=$(sql "SELECT xact_commit FROM pg_stat_database WHERE datname = '$DB'")
  rps=$(sed -n 's/.*"rps":\([^,}]*\).*/\1/p' "$TMP/$run.json")
  lg=$(awk '{ print $1 + $2 }' "$TMP/lg.time")
  printf '%s %s: accepted/s=%s delivered/s=%s left=%s drain=%ss events=%s | per event: pg_us=%s pgdb_us=%s intake_us=%s wal_b=%s commits=%s | intake_cpu=%ss pg_cpu=%ss pgdb_cpu=%ss loadgen_cpu=%ss load=%s other_dbs=%s/%s\n' \
    "$label" "$run" "$rps" "$(echo "scale=0; $done1 / ${DURATION%s}" | bc)" "$left1" "$drained" "$events" \
    "$(per_event $((pg1 - pg0)) "$events" "1000000 / $HZ")" \
    "$(per_event $((db1 - db0)) "$events" "1000000 / $HZ")" \
    "$(per_event $((in1 - in0)) "$events" "1000000 / $HZ")" \
    "$(per_event "$wal" "$events" 1)" "$(per_event "$commits" "$events" 1)" \
    "$(echo "scale=1; ($in1 - $in0) / $HZ" | bc)" "$(echo "scale=1; ($pg1 - $pg0) / $HZ" | bc)" \
    "$(echo "scale=1; ($db1 - $db0) / $HZ" | bc)" "$lg" "$load" "$others0" "$others1"
  sql "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  DB=""
}

for round in $(seq "$ROUNDS"); do
  for bin in $BENCH_BIN; do
    for run in $RUNS; do
      measure "round $round $(basename "$bin")" "$bin" "$run"
    done
  done
done
