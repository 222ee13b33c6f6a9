-- Incidents (issue 13): the same as on SQLite (see migrations/sqlite/0010_incidents.sql for
-- the reasons), with PostgreSQL's types. (Number 0006 belongs to the drills, built in
-- parallel; `intake_migrations` records each number, so either may be applied first.)
CREATE TABLE incidents (
    id             TEXT COLLATE "C" PRIMARY KEY,
    title          TEXT NOT NULL,
    severity       TEXT NOT NULL,
    status         TEXT NOT NULL,
    tenants        TEXT NOT NULL,
    sources        TEXT NOT NULL,
    channels       TEXT NOT NULL,
    commander      TEXT,
    impact_start   BIGINT NOT NULL,
    declared_at    BIGINT NOT NULL,
    declared_by    TEXT NOT NULL,
    updated_at     BIGINT NOT NULL,
    resolved_at    BIGINT,
    next_update_at BIGINT,
    tracking       TEXT NOT NULL,
    version        BIGINT NOT NULL
);
CREATE INDEX incidents_declared ON incidents (declared_at);
CREATE INDEX incidents_open ON incidents (resolved_at);

CREATE TABLE incident_entries (
    id       BIGSERIAL PRIMARY KEY,
    incident TEXT NOT NULL,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    author   TEXT,
    text     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX incident_entries_incident ON incident_entries (incident, at, id);

ALTER TABLE notifications ADD COLUMN incident TEXT;
ALTER TABLE notifications ADD COLUMN tenant TEXT;
CREATE INDEX notifications_incident ON notifications (incident, id) WHERE incident IS NOT NULL;
