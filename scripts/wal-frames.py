#!/usr/bin/env python3
"""WAL frames per ingested event on the SQLite schema, counted, not timed (issue 16).

Builds the schema from crates/store/migrations/sqlite/*.sql (as `intake serve` does), stores
PREFILL events the way ingest writes them (the event row with a ~2 KB body, its delivery),
then commits BATCH-sized transactions of EVENTS more and reports how many WAL frames (and
bytes) each event cost. A frame is one page written by a commit; the checkpoint copies each
page again, so frames per event are the store's write volume per event. Unlike req/s on this
machine (±10-20 % from run to run), the count is the same every run for the same schema.

Variants, each on a fresh database:
  today        the schema as it is
  no-id-index  events and deliveries without their primary keys' indexes
               (what 64-bit ids as rowids would save)
  no-dedupe    without the unique index on (source, dedupe_key)
Dedupe keys: `sequential` (time-ordered, like Kustomer's object ids and intake-loadgen's
bodies) and `random` (like a body hash, Zendesk's key when an event carries no id).

Usage: scripts/wal-frames.py [--page-size N] [--prefill N] [--events N] [--batch N]
"""

import argparse
import glob
import os
import random
import sqlite3
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MIGRATIONS = os.path.join(ROOT, "crates", "store", "migrations", "sqlite", "*.sql")


def schema(variant):
    scripts = []
    for path in sorted(glob.glob(MIGRATIONS)):
        with open(path, encoding="utf-8") as f:
            sql = f.read()
        if variant == "no-id-index" and path.endswith("0001_events_and_queue.sql"):
            for table in ("events", "deliveries"):
                head = f"CREATE TABLE {table} (\n    id           TEXT PRIMARY KEY,"
                if head not in sql:
                    raise SystemExit(f"{path}: the {table} table no longer starts as expected")
                sql = sql.replace(head, f"CREATE TABLE {table} (\n    id           TEXT,", 1)
            sql = sql.replace("REFERENCES events (id)", "").replace("REFERENCES deliveries (id)", "")
        scripts.append(sql)
    return scripts


def frames_per_event(variant, keys, args, rng):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "intake.db")
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA page_size = {args.page_size}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        for sql in schema(variant):
            db.executescript(sql)
        if variant == "no-dedupe":
            db.execute("DROP INDEX events_dedupe")
        body = rng.randbytes(1000).hex()
        seq = 0

        def ingest(n):
            nonlocal seq
            db.execute("BEGIN")
            for _ in range(n):
                seq += 1
                event = f"01J{seq:023d}"
                key = (
                    f"message:{seq:024x}:create"
                    if keys == "sequential"
                    else f"sha256:{rng.getrandbits(256):064x}"
                )
                db.execute(
                    "INSERT INTO events (id, tenant, source, origin, dedupe_key, event_type, "
                    "channel, received_at, headers, body) VALUES (?, 'acme', 'kustomer', "
                    "'webhook', ?, 'message.create', 'email', ?, '[]', ?)",
                    (event, key, seq, body),
                )
                db.execute(
                    "INSERT INTO deliveries (id, event_id, destination, tenant, source, "
                    "channel, state, due_at, created_at, updated_at) VALUES (?, ?, 'handler', "
                    "'acme', 'kustomer', 'email', 'pending', ?, ?, ?)",
                    ("D" + event, event, seq, seq, seq),
                )
            db.execute("COMMIT")

        for _ in range(args.prefill // 1000):
            ingest(1000)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = os.path.getsize(path + "-wal")
        for _ in range(args.events // args.batch):
            ingest(args.batch)
        written = os.path.getsize(path + "-wal") - before
        db.close()
        frame = args.page_size + 24
        counted = args.events // args.batch * args.batch
        return written / frame / counted, written / counted


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--page-size", type=int, default=4096)
    p.add_argument("--prefill", type=int, default=200_000)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--batch", type=int, default=64, help="events per commit (group commit)")
    args = p.parse_args()
    print(f"page size {args.page_size}, {args.prefill} events stored, then {args.events} "
          f"in commits of {args.batch}")
    for keys in ("sequential", "random"):
        for variant in ("today", "no-id-index", "no-dedupe"):
            frames, size = frames_per_event(variant, keys, args, random.Random(16))
            print(f"{keys:>10} dedupe keys, {variant:<12} {frames:5.2f} WAL frames per event "
                  f"({size:,.0f} bytes)", flush=True)


if __name__ == "__main__":
    main()
