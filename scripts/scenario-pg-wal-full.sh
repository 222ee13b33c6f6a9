#!/usr/bin/env bash
# A full disk under PostgreSQL's own WAL (pg_wal), under load: the database server itself
# stops, and intake must refuse new events, lose nothing it acknowledged, and carry on by
# itself once the server is back.
#
#   sudo scripts/scenario-pg-wal-full.sh        # needs root: it mounts a tmpfs, runs initdb
#
# 1. A PostgreSQL cluster of its own (the machine's binaries, port PG_PORT, default 5441) is
#    created with its WAL directory on a tmpfs of WAL_MB (default 128) MiB; its tables stay on
#    the main disk. intake serves on it with one Kustomer source delivering to the load
#    generator's capture handler. A ballast file then takes all of the tmpfs but HEADROOM_MB
#    (default 8) MiB: less than one 16 MiB WAL segment.
# 2. `intake-loadgen e2e` sends RATE (default 1,000) signed ~2 KB webhooks a second for
#    SECONDS_LOAD (default 40), c16, and waits up to 90 s for every acknowledged one.
# 3. Once intake has refused requests as unavailable for HOLD (default 5) seconds, the ballast
#    is deleted, as an operator freeing space would. If the server has stopped for good by
#    then (its startup needs WAL space too), it is started again, as the operator would; the
#    script says whether that was needed. intake is never restarted.
#
# It passes when:
#   - every acknowledged (200) event arrived at the handler (`missing` is 0);
#   - the WAL really filled: PostgreSQL logged `No space left on device`, and intake refused
#     requests with 503;
#   - /readyz answered 503 while the server was down;
#   - after the server was back, intake accepted again without a restart, and /readyz is 200.
# Every number is printed; the temp dir and logs are kept on failure (or with BENCH_KEEP=1).
#
# Environment: BENCH_BIN (prebuilt binaries), CARGO_TARGET_DIR, WAL_MB, HEADROOM_MB, RATE,
# SECONDS_LOAD, HOLD, PG_PORT.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bench-lib.sh

WAL_MB="${WAL_MB:-128}"
HEADROOM_MB="${HEADROOM_MB:-8}"
RATE="${RATE:-1000}"
SECONDS_LOAD="${SECONDS_LOAD:-40}"
HOLD="${HOLD:-5}"
PG_PORT="${PG_PORT:-5441}"
INTAKE_PORT=18096
HANDLER_PORT=9106
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"

if [[ $(id -u) -ne 0 ]]; then
  echo "error: this scenario mounts a tmpfs and runs initdb as user postgres; it needs root" >&2
  exit 2
fi
PGBIN="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -n 1)/bin"
[[ -x $PGBIN/initdb ]] || { echo "error: no PostgreSQL server binaries under $PGBIN" >&2; exit 2; }

bench_init intake-pg-wal-full "$INTAKE_PORT" "$HANDLER_PORT" "$PG_PORT"
chmod 755 "$TMP"
WAL="$TMP/wal"
DATA="$TMP/pgdata"
mkdir -p "$WAL" "$TMP/sock" "$DATA"
mount -t tmpfs -o "size=${WAL_MB}m" tmpfs "$WAL"
touch "$TMP/pg.log"
chown postgres "$WAL" "$TMP/sock" "$DATA" "$TMP/pg.log"
as_pg() { su postgres -s /bin/bash -c "$*"; }
pg_up() { as_pg "$PGBIN/pg_ctl -D $DATA status" >/dev/null 2>&1; }
pg_start() {
  as_pg "$PGBIN/pg_ctl -D $DATA -l $TMP/pg.log -w -t 60 start -o \"-p $PG_PORT -k $TMP/sock \
    -c listen_addresses=127.0.0.1 -c max_wal_size=64MB -c min_wal_size=32MB\"" >/dev/null
}
teardown() {
  pg_up && as_pg "$PGBIN/pg_ctl -D $DATA -m immediate stop" >/dev/null 2>&1
  umount "$WAL" 2>/dev/null || true
}
BENCH_ON_EXIT=teardown

as_pg "$PGBIN/initdb -D $DATA --waldir=$WAL/pg_wal -U postgres --auth=trust" >"$TMP/initdb.log"
pg_start
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atqc "create database intake" postgres

bench_config "$TMP/intake.toml" "$INTAKE_PORT" \
  "url = \"postgres://postgres@127.0.0.1:$PG_PORT/intake\"" "concurrency = 64"
start_intake intake "$TMP/intake.toml"
INTAKE_PID=$STARTED_PID
free_mb=$(($(df --output=avail -k "$WAL" | tail -n 1) / 1024))
BALLAST_MB=$((free_mb - HEADROOM_MB))
dd if=/dev/zero of="$WAL/ballast" bs=1M count="$BALLAST_MB" status=none

# The watcher (bench-lib.sh): every 200 ms one line of time, refused, /readyz status,
# accepted, whether the server is up (1/0) and the WAL's free KiB in $TMP/watch.txt; frees the
# ballast once intake has refused requests for HOLD seconds, then starts the server if it is
# still down 2 s later.
server_up() { if pg_up; then echo 1; else echo 0; fi; }
start_if_down() {
  if ! pg_up && awk -v s="$1" 'BEGIN { exit !(s >= 2) }'; then
    echo "$(date +%s.%N) started" >>"$TMP/events.txt"
    pg_start || echo "$(date +%s.%N) start failed" >>"$TMP/events.txt"
  fi
}
scenario_watch "$WAL" server_up start_if_down &
WATCHER=$!
CHILDREN+=("$WATCHER")

scenario_load 90s "$WATCHER"

freed_at=$(awk '/freed/ { print $1 }' "$TMP/events.txt" 2>/dev/null || true)
started_at=$(awk '/started/ { print $1; exit }' "$TMP/events.txt" 2>/dev/null || true)
not_ready=$(awk '$3 == 503' "$TMP/watch.txt" | wc -l)
down_samples=$(awk '$5 == 0' "$TMP/watch.txt" | wc -l)
first_refusal=$(awk '$2 > 0 { print $1; exit }' "$TMP/watch.txt")
read -r accepted_at_free < <(awk -v f="${freed_at:-0}" '$1 >= f { print $4; exit }' "$TMP/watch.txt")
back_at=$(awk -v f="${freed_at:-0}" -v a="${accepted_at_free:-0}" \
  '$1 >= f && $4 > a { print $1; exit }' "$TMP/watch.txt")
missing=$(json_field "$TMP/e2e.json" missing)
acked=$(json_field "$TMP/e2e.json" acked)
no_space=$(grep -c 'No space left on device' "$TMP/pg.log" || true)
panics=$(grep -c 'PANIC' "$TMP/pg.log" || true)

printf 'WAL tmpfs %s MiB, ballast %s MiB (%s MiB left free), %s/s for %s s\n' "$WAL_MB" "$BALLAST_MB" "$HEADROOM_MB" "$RATE" "$SECONDS_LOAD"
printf 'acknowledged %s, missing at the handler %s (load generator exit %s)\n' "$acked" "$missing" "$LOADGEN_RC"
printf 'answers by status: %s\n' "$(sed -n 's/.*"status":\({[^}]*}\).*/\1/p' "$TMP/e2e.json")"
printf 'refused as unavailable: %s\n' "$REFUSED"
printf 'PostgreSQL log: %s lines with No space left on device, %s PANIC lines\n' "$no_space" "$panics"
printf 'server down in %s samples of 200 ms; /readyz 503 in %s\n' "$down_samples" "$not_ready"
if [[ -n $first_refusal && -n $freed_at ]]; then
  printf 'first refusal %s s after the start of the watch, ballast freed %s s later\n' \
    "$(seconds "$first_refusal" "$(head -n 1 "$TMP/watch.txt" | cut -d' ' -f1)")" \
    "$(seconds "$freed_at" "$first_refusal")"
fi
if [[ -n $started_at ]]; then
  printf 'the server stayed down after the free and was started by hand %s s after it\n' "$(seconds "$started_at" "$freed_at")"
else
  printf 'the server came back by itself\n'
fi
if [[ -n $back_at ]]; then
  printf 'intake accepting again %s s after the free\n' "$(seconds "$back_at" "$freed_at")"
fi
printf '/readyz after the run: %s; accepted in all: %s\n' "$READY_AFTER" "$ACCEPTED_END"
grep -E 'PANIC|FATAL|LOG:  (database system is ready|startup process|server process|all server processes terminated|aborting)' "$TMP/pg.log" | grep -v 'in recovery mode' | head -n 12 >&2 || true

ok=1
[[ $missing == 0 ]] || { echo "FAIL: acknowledged events missing at the handler" >&2; ok=0; }
[[ $no_space -gt 0 ]] || { echo "FAIL: the WAL never filled (raise RATE or SECONDS_LOAD, or lower HEADROOM_MB)" >&2; ok=0; }
[[ $REFUSED -gt 0 ]] || { echo "FAIL: intake never refused a request" >&2; ok=0; }
[[ -n $freed_at ]] || { echo "FAIL: the ballast was never freed" >&2; ok=0; }
[[ -n $back_at ]] || { echo "FAIL: intake did not accept again after the server came back" >&2; ok=0; }
[[ $not_ready -gt 0 ]] || { echo "FAIL: /readyz never answered 503 while the server was down" >&2; ok=0; }
[[ $READY_AFTER == 200 ]] || { echo "FAIL: /readyz answers $READY_AFTER after the server came back" >&2; ok=0; }
[[ $ok == 1 ]] || exit 1
echo PASS
