-- Hourly counters (rolled up from the minute shards by the compaction duty, one node at a time,
-- so they need no shards), named state documents, and alert transitions.
CREATE TABLE counters_hourly (
    hour        BIGINT NOT NULL,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    destination TEXT NOT NULL,
    metric      TEXT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (hour, tenant, source, channel, destination, metric)
);

CREATE TABLE state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE alert_transitions (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    rule        TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    source      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    destination TEXT NOT NULL,
    severity    TEXT NOT NULL,
    state       TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX alert_transitions_at ON alert_transitions (at);
