-- The event log and the delivery queue. The queue is this table itself: a delivery row is
-- written in the same transaction as its event, so an accepted event can never lack its work.
-- Times are INTEGER milliseconds since the Unix epoch.

CREATE TABLE events (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    source       TEXT NOT NULL,
    origin       TEXT NOT NULL,
    sor_event_id TEXT,
    dedupe_key   TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    channel      TEXT NOT NULL,
    raw_channel  TEXT,
    object_type  TEXT,
    object_id    TEXT,
    occurred_at  INTEGER,
    received_at  INTEGER NOT NULL,
    headers      TEXT NOT NULL,   -- JSON array of [name, value] pairs
    body         BLOB NOT NULL
);
CREATE UNIQUE INDEX events_dedupe ON events (source, dedupe_key);
-- No index on received_at: ids are ULIDs whose time part is the instant of receipt, so time
-- windows are id ranges served by the primary key. Every index is a page written per event.

-- `due_at` is when the delivery next needs a worker: its next attempt while pending or
-- retrying, its lease expiry while in flight. One partial index then finds all due work,
-- including work whose worker died.
CREATE TABLE deliveries (
    id           TEXT PRIMARY KEY,
    event_id     TEXT NOT NULL REFERENCES events (id),
    destination  TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    source       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    due_at       INTEGER NOT NULL,
    lease_id     TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    last_status  INTEGER,
    last_error   TEXT
);
CREATE INDEX deliveries_due ON deliveries (destination, due_at)
    WHERE state IN ('pending', 'retrying', 'in_flight');
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_dead ON deliveries (destination) WHERE state = 'dead';

CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT,
    outcome     TEXT NOT NULL     -- 'delivered', 'retrying', 'dead', or 'superseded' (lease lost)
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Requests refused because their body could not be parsed: kept with the reason so that a bad
-- deploy on the sender's side can be diagnosed. Signature failures store nothing but a count.
CREATE TABLE rejections (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    tenant  TEXT NOT NULL,
    source  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason  TEXT NOT NULL,
    body    BLOB
);
CREATE INDEX rejections_at ON rejections (at);

-- Per-minute counters, written in the same transaction as the state change they count.
-- Empty strings stand for "not applicable" so that the key is a plain primary key.
CREATE TABLE counters (
    minute      INTEGER NOT NULL,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    destination TEXT NOT NULL,
    metric      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (minute, tenant, source, channel, destination, metric)
) WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
