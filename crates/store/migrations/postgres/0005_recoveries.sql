-- Recovery jobs (issue 11) and what deliveries need to know about them: the same as on SQLite
-- (see migrations/sqlite/0008_recoveries.sql for the reasons), with PostgreSQL's types.
ALTER TABLE deliveries ADD COLUMN origin TEXT;
ALTER TABLE deliveries ADD COLUMN replay_key TEXT;
ALTER TABLE deliveries ADD COLUMN recovery TEXT;
CREATE UNIQUE INDEX deliveries_replay ON deliveries (event_id, destination, replay_key)
    WHERE replay_key IS NOT NULL;

-- The JSON documents are TEXT, not JSONB: the store never looks inside them, and both backends
-- read them back with the same code.
CREATE TABLE recoveries (
    id               TEXT COLLATE "C" PRIMARY KEY,
    kind             TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    source           TEXT NOT NULL,
    dry_run          BOOLEAN NOT NULL,
    state            TEXT NOT NULL,
    params           TEXT NOT NULL,
    cursor           TEXT,
    progress         TEXT NOT NULL,
    report           TEXT NOT NULL,
    error            TEXT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
CREATE INDEX recoveries_source_state ON recoveries (source, state);
