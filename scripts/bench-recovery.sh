#!/usr/bin/env bash
# Recovery benchmark (issue 11): the product story's 236 chat + 813 email conversations, lost
# in a 20-hour window, recovered with `intake recover backfill` from a fake Kustomer that
# enforces Kustomer's real limits (1,000 requests/min, 100 searches/min, pages of at most 500,
# 100 pages per search). Loopback only, real clock.
#
# Builds `intake` and `intake-bench-recovery` in release and runs the driver, which starts the
# fake Kustomer, a handler and `intake serve`, sends the webhooks outside the window, runs the
# recover command and reports (stdout: a Markdown table and one JSON line; progress on stderr):
# time to the last missing event delivered, SOR requests by kind, 429s, the share of the
# allowed request rate used, and duplicates, objects from outside the window, missing events.
#
# Arguments are passed to the driver: --seed N (default 1), --keep (keep the temp dir),
# --timeout-secs S (default 900), --start-second S (start the command at that second of a
# minute). Environment: CARGO_TARGET_DIR (default /var/tmp/intake-target), INTAKE_LOG (default
# warn) for intake's own logging; other INTAKE_* variables are removed from intake's
# environment by the driver.
#
# The exit status is the driver's: 0 for an exact recovery, 2 when anything was missing,
# duplicated or from outside the window (or the command failed), 1 when the benchmark could
# not run. The temp dir is kept after a failure.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/intake-target}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)..." >&2
cargo build --release -p intake --bin intake -p intake-testkit --bin intake-bench-recovery
BIN="$CARGO_TARGET_DIR/release"

exec "$BIN/intake-bench-recovery" --intake "$BIN/intake" "$@"
