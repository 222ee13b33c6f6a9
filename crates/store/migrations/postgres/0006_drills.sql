-- Fire drills (issue 12): the same as on SQLite (see migrations/sqlite/0009_drills.sql for
-- the reasons), with PostgreSQL's types. The report is TEXT, not JSONB: the store never looks
-- inside it, and both backends read it back with the same code.
CREATE TABLE drills (
    id           TEXT COLLATE "C" PRIMARY KEY,
    scenario     TEXT NOT NULL,
    target       TEXT NOT NULL,
    tenant       TEXT,
    trigger_kind TEXT NOT NULL,
    schedule     TEXT,
    state        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    detected_at  BIGINT,
    notified_at  BIGINT,
    healed_at    BIGINT,
    report       TEXT NOT NULL
);
CREATE INDEX drills_state ON drills (state);
CREATE INDEX drills_started ON drills (started_at);
