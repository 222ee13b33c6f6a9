-- Incidents (issue 13): an outage record with the tenants it affects, its timeline, and the
-- notices it sent. (Number 0009 belongs to the drills, built in parallel: migrations are
-- recorded by number, so either may be applied first.)
--
-- `tenants`, `sources` and `channels` are JSON arrays of ids; `tracking` is the server's JSON
-- document of what the notification pipeline follows for the incident (its alerts, which
-- tenants were told, an automatic declaration's hold); the store never looks inside it.
-- `version` grows with every write: a write names the version it read, so a person's update
-- and the monitor's pipeline never overwrite each other.
CREATE TABLE incidents (
    id             TEXT PRIMARY KEY,
    title          TEXT NOT NULL,
    severity       TEXT NOT NULL,
    status         TEXT NOT NULL,
    tenants        TEXT NOT NULL,
    sources        TEXT NOT NULL,
    channels       TEXT NOT NULL,
    commander      TEXT,
    impact_start   INTEGER NOT NULL,
    declared_at    INTEGER NOT NULL,
    declared_by    TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    resolved_at    INTEGER,
    next_update_at INTEGER,
    tracking       TEXT NOT NULL,
    version        INTEGER NOT NULL
);
CREATE INDEX incidents_declared ON incidents (declared_at);
CREATE INDEX incidents_open ON incidents (resolved_at);

-- What happened, in order: declaration, updates, alerts joining and resolving, holds. Notices
-- are the outbox rows below, and recovery jobs their own rows; the API merges them in.
CREATE TABLE incident_entries (
    id       INTEGER PRIMARY KEY,
    incident TEXT NOT NULL,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    author   TEXT,
    text     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX incident_entries_incident ON incident_entries (incident, at, id);

-- An incident's notices are outbox rows that name it (and, for a tenant's contact, the
-- tenant). They are its record of who was told what, and when, so they are never pruned.
ALTER TABLE notifications ADD COLUMN incident TEXT;
ALTER TABLE notifications ADD COLUMN tenant TEXT;
CREATE INDEX notifications_incident ON notifications (incident, id) WHERE incident IS NOT NULL;
