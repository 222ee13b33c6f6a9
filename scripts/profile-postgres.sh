#!/usr/bin/env bash
# Where the CPU goes during durable ingest on PostgreSQL (deliveries held back) and while
# delivering: CPU seconds of intake, of PostgreSQL's processes and of the load generator.
set -euo pipefail
# Build first: cargo build --release -p intake -p intake-testkit --bins
BIN="${CARGO_TARGET_DIR:-/var/tmp/intake-target}/release"
PG=postgres://postgres@127.0.0.1:5432
TMP=$(mktemp -d)
ticks() { # CPU ticks (utime+stime, children excluded) of the given pids
  local t=0 p
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] || continue
    t=$((t + $(awk '{ print $14 + $15 }' /proc/$p/stat)))
  done
  echo $t
}
pgticks() { ticks $(pgrep -x postgres); }
deadpg() { # ticks of postgres children that exited, accounted to the postmaster
  local pm; pm=$(pgrep -o -x postgres); awk '{ print $16 + $17 }' /proc/$pm/stat
}
measure() { # name extra
  local name=$1 extra=$2
  DB="intake_prof_$RANDOM$RANDOM"
  psql "$PG/postgres" -Atqc "CREATE DATABASE $DB"
  cat > $TMP/intake.toml <<EOT
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
  $BIN/intake-noop-server --listen 127.0.0.1:9111 > $TMP/h.log 2>&1 & H=$!
  INTAKE_LOG=warn $BIN/intake serve --config $TMP/intake.toml > $TMP/i.log 2>&1 & I=$!
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:18191/readyz && break; sleep 0.1; done
  local pg0 in0 t0
  pg0=$(( $(pgticks) + $(deadpg) )); in0=$(ticks $I); t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o $TMP/lg.time $BIN/intake-loadgen ingest --secret s3cret --duration 10s --warmup 0s --json \
     --url http://127.0.0.1:18191/ingest/bench-kustomer --concurrency 64 > $TMP/$name.json 2>$TMP/$name.txt
  local pg1 in1 t1
  pg1=$(( $(pgticks) + $(deadpg) )); in1=$(ticks $I); t1=$(date +%s.%N)
  lg=$(awk '{ print $1 + $2 }' $TMP/lg.time)
  rps=$(sed -n 's/.*"rps":\([^,}]*\).*/\1/p' $TMP/$name.json)
  hz=$(getconf CLK_TCK)
  echo "$name: rps=$rps wall=$(echo "$t1-$t0" | bc) intake_cpu=$(echo "scale=1; ($in1-$in0)/$hz" | bc)s postgres_cpu=$(echo "scale=1; ($pg1-$pg0)/$hz" | bc)s loadgen_cpu=${lg}s"
  kill $I $H; wait $I $H 2>/dev/null || true
  psql "$PG/postgres" -Atqc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
}
measure held 'rate_limit = 1.0'
measure deliv ''
