-- Recovery jobs (issue 11) and what deliveries need to know about them.
--
-- A delivery knows its own origin when it differs from its event's: a replay re-delivers a
-- `webhook` event with `intake-origin: replay`. NULL means the event's origin, so ingest
-- writes nothing more. `replay_key` makes a replay idempotent: an (event, destination) gets at
-- most one delivery per key, so a replay run twice (or resumed after a crash) delivers once.
-- The index is partial: deliveries written by ingest have no key and cost it nothing.
-- `recovery` names the job that created the delivery (a replay or a requeue).
ALTER TABLE deliveries ADD COLUMN origin TEXT;
ALTER TABLE deliveries ADD COLUMN replay_key TEXT;
ALTER TABLE deliveries ADD COLUMN recovery TEXT;
CREATE UNIQUE INDEX deliveries_replay ON deliveries (event_id, destination, replay_key)
    WHERE replay_key IS NOT NULL;

-- The jobs themselves. `params`, `cursor`, `progress` and `report` are JSON documents the
-- server owns; the store keeps them as text.
CREATE TABLE recoveries (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    source           TEXT NOT NULL,
    dry_run          INTEGER NOT NULL,
    state            TEXT NOT NULL,
    params           TEXT NOT NULL,
    cursor           TEXT,
    progress         TEXT NOT NULL,
    report           TEXT NOT NULL,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER
);
CREATE INDEX recoveries_source_state ON recoveries (source, state);
