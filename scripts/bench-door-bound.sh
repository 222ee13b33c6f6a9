#!/usr/bin/env bash
# The bound on durable ingest that the door itself sets (issue 16): how fast intake acknowledges
# when its store costs nothing. Builds, beside this checkout, a copy of HEAD with
# scripts/door-only.patch applied (the ingest door answers 200 without calling the store and
# wakes no dispatcher: an experiment, never a build to run), then runs ROUNDS rounds, in turns:
#
#   1. the ceiling: intake-noop-server under intake-loadgen ingest at 64 connections, 10 s,
#      with the server's CPU per request;
#   2. intake as built here, deliveries held back (`bench-pipeline.sh cpu held 10`);
#   3. the door-only build, the same way.
#
# Each line: req/s and intake's CPU µs per acknowledged event. The door-only build's rate over
# the ceiling is the most any durable store could reach behind this door on this machine; the
# difference in µs per event between (2) and (3) is what the store costs now.
#
#   scripts/bench-door-bound.sh [ROUNDS]          # default 3
#
# The door-only build has its own target dir (DOOR_TARGET, default /var/tmp/intake-door-target):
# sharing one with this checkout would let cargo take one build's artifacts for the other's.
# A cold build of it takes about 6 min on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3}
DOOR_TARGET=${DOOR_TARGET:-/var/tmp/intake-door-target}
NOOP_PORT=18999
HZ=$(getconf CLK_TCK)
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
bench_init intake-door-bound "$NOOP_PORT"

# The door-only build: a worktree of HEAD in $TMP, patched and built, removed on exit.
remove_door() { git worktree remove --force "$TMP/door" >/dev/null 2>&1; }
BENCH_ON_EXIT=remove_door
git worktree add --detach "$TMP/door" HEAD >/dev/null
if ! git -C "$TMP/door" apply "$PWD/scripts/door-only.patch"; then
  echo "error: scripts/door-only.patch no longer applies to crates/server/src/ingest.rs; update it" >&2
  exit 1
fi
echo "building the door-only binary (CARGO_TARGET_DIR=$DOOR_TARGET)..." >&2
(cd "$TMP/door" && CARGO_TARGET_DIR="$DOOR_TARGET" cargo build --release --locked -p intake --bins >&2)
mkdir -p "$TMP/bin-door"
cp "$BIN"/intake-loadgen "$BIN"/intake-noop-server "$TMP/bin-door/"
cp "$DOOR_TARGET/release/intake" "$TMP/bin-door/"

# ceiling: one run of the no-op server at 64 connections, with its CPU per request.
ceiling() {
  start noop "$NOOP" --listen "127.0.0.1:$NOOP_PORT"
  local pid=$STARTED_PID t0 t1
  wait_http "http://127.0.0.1:$NOOP_PORT/healthz" "$pid" noop
  t0=$(cpu_ticks "$pid")
  "$LOADGEN" ingest --url "http://127.0.0.1:$NOOP_PORT/ingest/x" --secret "$SECRET" \
    --concurrency 64 --duration 10s --warmup 0s --json >"$TMP/noop.json" 2>/dev/null
  t1=$(cpu_ticks "$pid")
  stop "$pid"
  awk -v rps="$(json_field "$TMP/noop.json" rps)" -v c="$((t1 - t0))" -v hz="$HZ" 'BEGIN {
    printf "ceiling: %.0f req/s, server %.1f us/request\n", rps, c / hz / (rps * 10) * 1e6 }'
}

for round in $(seq 1 "$rounds"); do
  echo "--- round $round"
  ceiling
  BENCH_BIN="$BIN" scripts/bench-pipeline.sh cpu held 10 | sed 's/^held/intake/'
  BENCH_BIN="$TMP/bin-door" scripts/bench-pipeline.sh cpu held 10 | sed 's/^held/door only/'
done
