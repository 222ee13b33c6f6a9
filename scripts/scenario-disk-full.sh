#!/usr/bin/env bash
# A real full disk under load: intake's embedded store on a small tmpfs that fills up while
# signed webhooks arrive and are delivered, then space comes back without a restart.
#
#   sudo scripts/scenario-disk-full.sh          # needs root: it mounts a tmpfs
#
# 1. A tmpfs of DISK_MB (default 768) MiB holds the store. intake serves on it with one
#    Kustomer source delivering to the load generator's capture handler. A ballast file then
#    takes all of the free space but HEADROOM_MB (default 16) MiB.
# 2. `intake-loadgen e2e` sends RATE (default 2,000) signed ~2 KB webhooks a second for
#    SECONDS_LOAD (default 30), c16, and waits up to 60 s for every acknowledged one to
#    arrive. The headroom fills within seconds; the disk must hold the rest of the run once
#    the ballast is gone (about 7 KB an event).
# 3. Once intake has refused requests as unavailable for HOLD (default 5) seconds, the ballast
#    is deleted: space is back, as when an operator frees some.
#
# intake's store sets aside a 16 MiB reserve at open; when the disk fills it gives the reserve
# back and delivers what it accepted while refusing new events, until the file system has
# 32 MiB free again (docs/operations.md, the runbook).
#
# It passes when:
#   - every acknowledged (200) event arrived at the handler (the load generator's `missing` is 0);
#   - the disk really filled: requests were refused with 503 and `Retry-After`;
#   - /readyz answered 503 while the disk was full;
#   - after the space came back, intake accepted again without a restart, and /readyz is 200.
# Every number is printed; the temp dir and logs are kept on failure (or with BENCH_KEEP=1).
#
# Environment: BENCH_BIN (prebuilt binaries), CARGO_TARGET_DIR, DISK_MB, HEADROOM_MB, RATE,
# SECONDS_LOAD, HOLD.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/bench-lib.sh

DISK_MB="${DISK_MB:-768}"
HEADROOM_MB="${HEADROOM_MB:-16}"
RATE="${RATE:-2000}"
SECONDS_LOAD="${SECONDS_LOAD:-30}"
HOLD="${HOLD:-5}"
INTAKE_PORT=18095
HANDLER_PORT=9105
INTAKE_URL="http://127.0.0.1:$INTAKE_PORT/ingest/bench-kustomer"

if [[ $(id -u) -ne 0 ]]; then
  echo "error: this scenario mounts a tmpfs and needs root" >&2
  exit 2
fi

bench_init intake-disk-full "$INTAKE_PORT" "$HANDLER_PORT"
DISK="$TMP/disk"
mkdir -p "$DISK"
unmount_disk() { umount "$DISK" 2>/dev/null || true; }
BENCH_ON_EXIT=unmount_disk
mount -t tmpfs -o "size=${DISK_MB}m" tmpfs "$DISK"

bench_config "$TMP/intake.toml" "$INTAKE_PORT" "url = \"sqlite://$DISK/intake.db\"" \
  "concurrency = 64"
start_intake intake "$TMP/intake.toml"
INTAKE_PID=$STARTED_PID
free_mb=$(($(df --output=avail -k "$DISK" | tail -n 1) / 1024))
BALLAST_MB=$((free_mb - HEADROOM_MB))
dd if=/dev/zero of="$DISK/ballast" bs=1M count="$BALLAST_MB" status=none

# The watcher (bench-lib.sh): one line of time, refused, readyz status, accepted, free KiB
# every 200 ms in $TMP/watch.txt; frees the ballast once intake has refused requests for HOLD
# seconds.
scenario_watch "$DISK" &
WATCHER=$!
CHILDREN+=("$WATCHER")

scenario_load 60s "$WATCHER"

freed_at=$(awk '/freed/ { print $1 }' "$TMP/events.txt" 2>/dev/null || true)
not_ready=$(awk '$3 == 503' "$TMP/watch.txt" | wc -l)
first_refusal=$(awk '$2 > 0 { print $1; exit }' "$TMP/watch.txt")
# What the counters stood at when the ballast was freed, and the first sample after it at
# which a request was accepted again.
read -r refused_at_free accepted_at_free < <(awk -v f="${freed_at:-0}" \
  '$1 >= f { print $2, $4; exit }' "$TMP/watch.txt")
back_at=$(awk -v f="${freed_at:-0}" -v a="${accepted_at_free:-0}" \
  '$1 >= f && $4 > a { print $1; exit }' "$TMP/watch.txt")
missing=$(json_field "$TMP/e2e.json" missing)
acked=$(json_field "$TMP/e2e.json" acked)

printf 'disk %s MiB, ballast %s MiB (%s MiB left free), %s/s for %s s\n' "$DISK_MB" "$BALLAST_MB" "$HEADROOM_MB" "$RATE" "$SECONDS_LOAD"
printf 'acknowledged %s, missing at the handler %s (load generator exit %s)\n' "$acked" "$missing" "$LOADGEN_RC"
printf 'answers by status: %s\n' "$(sed -n 's/.*"status":\({[^}]*}\).*/\1/p' "$TMP/e2e.json")"
printf 'refused as unavailable: %s in all, %s before the ballast was freed\n' "$REFUSED" "${refused_at_free:-n/a}"
if [[ -n $first_refusal && -n $freed_at ]]; then
  printf 'first refusal %s s after the start of the watch, ballast freed %s s later\n' \
    "$(seconds "$first_refusal" "$(head -n 1 "$TMP/watch.txt" | cut -d' ' -f1)")" \
    "$(seconds "$freed_at" "$first_refusal")"
fi
if [[ -n $back_at ]]; then
  printf 'accepting again %s s after the free\n' "$(seconds "$back_at" "$freed_at")"
fi
printf '/readyz 503 in %s samples of 200 ms; after the run: %s\n' "$not_ready" "$READY_AFTER"
printf 'accepted in all: %s\n' "$ACCEPTED_END"

ok=1
[[ $missing == 0 ]] || { echo "FAIL: acknowledged events missing at the handler" >&2; ok=0; }
[[ $REFUSED -gt 0 ]] || { echo "FAIL: the disk never filled (raise RATE or SECONDS_LOAD, or lower DISK_MB)" >&2; ok=0; }
[[ -n $freed_at ]] || { echo "FAIL: the ballast was never freed" >&2; ok=0; }
[[ -n $back_at ]] || { echo "FAIL: intake did not accept again after the space came back" >&2; ok=0; }
[[ $not_ready -gt 0 ]] || { echo "FAIL: /readyz never answered 503 while the disk was full" >&2; ok=0; }
[[ $READY_AFTER == 200 ]] || { echo "FAIL: /readyz answers $READY_AFTER after the space came back" >&2; ok=0; }
[[ $ok == 1 ]] || exit 1
echo PASS
