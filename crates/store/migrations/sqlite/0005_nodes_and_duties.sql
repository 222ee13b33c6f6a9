-- The node holding a delivery's lease, and the cluster tables. On SQLite one process owns the
-- file, so there is one node and every duty runs in it; the tables exist so that both
-- backends keep the same promises (and `GET /api/v1/cluster` answers the same way).
ALTER TABLE deliveries ADD COLUMN lease_node TEXT;

CREATE TABLE nodes (
    id             TEXT PRIMARY KEY,
    address        TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL
);

CREATE TABLE duties (
    duty        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
