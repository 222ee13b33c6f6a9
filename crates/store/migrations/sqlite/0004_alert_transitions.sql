-- Every alert transition (pending, firing, resolved) the monitor produced, for the alerts API,
-- the dashboard and postmortems. The live alert book itself is kept as JSON in `meta`.
CREATE TABLE alert_transitions (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    rule        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    destination TEXT NOT NULL,
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,
    value       REAL NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX alert_transitions_at ON alert_transitions (at);
