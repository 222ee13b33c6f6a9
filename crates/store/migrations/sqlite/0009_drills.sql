-- Fire drills (issue 12). A running drill's row is its stored fault: every node applies the
-- faults of running drills whose `expires_at` is ahead, so a drill holds on every node,
-- survives a restart, and is never applied past its expiry even if nobody finished it.
-- `report` is a JSON document the server owns; the store keeps it as text.
CREATE TABLE drills (
    id           TEXT PRIMARY KEY,
    scenario     TEXT NOT NULL,
    target       TEXT NOT NULL,
    tenant       TEXT,
    trigger_kind TEXT NOT NULL,
    schedule     TEXT,
    state        TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    detected_at  INTEGER,
    notified_at  INTEGER,
    healed_at    INTEGER,
    report       TEXT NOT NULL
);
-- Every node reads the running drills every second; listings are newest first.
CREATE INDEX drills_state ON drills (state);
CREATE INDEX drills_started ON drills (started_at);
