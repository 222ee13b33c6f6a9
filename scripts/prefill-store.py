#!/usr/bin/env python3
"""Fills a new SQLite store with N delivered events, fast, for scripts/bench-growth.sh.

    scripts/prefill-store.py --db DIR/intake.db --events 10000000 [--pending 20000]

The schema is the one `intake serve` makes: every migration of crates/store/migrations/sqlite,
in order, each recorded in `intake_migrations` (as crates/store/src/sqlite/schema.rs does), so
intake opens the file as its own. Then `--events` delivered events, each with its delivery
(the success kept on the delivery row, as intake keeps it: no attempt row), received over the seven days before the last hour, are written in bulk with
the journal off and no fsync: nothing is acknowledged here, this only builds what a store that
lived a week holds. The last `--pending` events are left pending and due, for
`intake-store-growth probe` to claim.

Bodies are small (`--body-bytes`, default 64) to spare the disk: what a lookup pays is the
size of the tables' indexes, not of the bodies. The dedupe keys are random, as real object ids
are. One event took ~0.9 KB on disk with an attempt row; a little less now with those bodies (10 M events: ~9 GB).
"""

import argparse
import json
import os
import random
import re
import sqlite3
import sys
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
WEEK_MS = 7 * 24 * 3600 * 1000
CHUNK = 100_000
MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "crates", "store", "migrations", "sqlite")


def ulid(ms, rnd):
    """A ULID's text: 48 bits of milliseconds, 80 random bits."""
    n = (ms << 80) | rnd.getrandbits(80)
    return "".join(CROCKFORD[(n >> (5 * i)) & 31] for i in range(25, -1, -1))


def create_schema(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS intake_migrations (version INTEGER PRIMARY KEY)")
    files = sorted(f for f in os.listdir(MIGRATIONS) if re.match(r"^\d{4}_.*\.sql$", f))
    highest = 0
    for f in files:
        version = int(f[:4])
        with open(os.path.join(MIGRATIONS, f), encoding="utf-8") as sql:
            conn.executescript(sql.read())
        conn.execute("INSERT INTO intake_migrations (version) VALUES (?)", (version,))
        highest = max(highest, version)
    conn.execute(f"PRAGMA user_version = {highest}")
    conn.commit()


def rows(args, rnd, first, last, start, step):
    """The events and deliveries of events first..last."""
    body = b"x" * args.body_bytes
    events, deliveries = [], []
    for i in range(first, last):
        at = start + step * i
        event_id = "evt_" + ulid(at, rnd)
        delivery_id = "dlv_" + ulid(at, rnd)
        obj = "%024x" % rnd.getrandbits(96)
        events.append((event_id, args.tenant, args.source, "%024x" % rnd.getrandbits(96),
                       f"message:{obj}:create", obj, at, body, "%024x" % rnd.getrandbits(96)))
        delivered = i < args.events
        deliveries.append((delivery_id, event_id, args.destination, args.tenant, args.source,
                           "delivered" if delivered else "pending", int(delivered), at,
                           at + 1 if delivered else at, at + 1 if delivered else None,
                           200 if delivered else None, 1 if delivered else None))
    return events, deliveries


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--pending", type=int, default=20_000)
    p.add_argument("--body-bytes", type=int, default=64)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--tenant", default="bench")
    p.add_argument("--source", default="bench-kustomer")
    p.add_argument("--destination", default="handler")
    args = p.parse_args()
    if os.path.exists(args.db):
        sys.exit(f"error: {args.db} exists: prefill writes a new store")
    rnd = random.Random(args.seed)
    conn = sqlite3.connect(args.db, isolation_level=None)
    create_schema(conn)
    conn.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; "
                       "PRAGMA cache_size = -2000000;")
    total = args.events + args.pending
    end = int(time.time() * 1000) - 3600 * 1000
    step = max(1, WEEK_MS // max(1, total))
    start = end - step * total
    began = time.time()
    for first in range(0, total, CHUNK):
        last = min(first + CHUNK, total)
        events, deliveries = rows(args, rnd, first, last, start, step)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (id, tenant, source, origin, sor_event_id, dedupe_key, event_type,"
            " channel, raw_channel, object_type, object_id, occurred_at, received_at, headers,"
            " body, conversation_id) VALUES (?1, ?2, ?3, 'webhook', ?4, ?5,"
            " 'kustomer.message.create', 'email', 'email', 'message', ?6, ?7, ?7, '[]', ?8, ?9)",
            events)
        conn.executemany(
            "INSERT INTO deliveries (id, event_id, destination, tenant, source, channel, state,"
            " attempts, due_at, created_at, updated_at, delivered_at, last_status, delivered_ms)"
            " VALUES (?1, ?2, ?3, ?4, ?5, 'email', ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12)",
            deliveries)
        conn.execute("COMMIT")
        print(f"{last} of {total} events ({time.time() - began:.0f} s)", file=sys.stderr)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    print(json.dumps({"events": args.events, "pending": args.pending,
                      "body_bytes": args.body_bytes, "seed": args.seed,
                      "db_bytes": os.path.getsize(args.db),
                      "seconds": round(time.time() - began, 1)}))


if __name__ == "__main__":
    main()
