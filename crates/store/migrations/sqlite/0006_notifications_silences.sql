-- The notification outbox: one row per (notice, notifier). A row is pending until its notifier
-- accepts it (sent) or refuses it for good (dead); `due_at` is its next attempt, or the end of
-- the lease of the sender trying it now.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    notifier    TEXT NOT NULL,
    key         TEXT NOT NULL,
    notice      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    due_at      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    last_error  TEXT
);
CREATE INDEX notifications_pending ON notifications (notifier, id) WHERE state = 'pending';
CREATE INDEX notifications_finished ON notifications (notifier, finished_at);

-- Silences: label matchers (JSON object) muting notifications until `ends_at`.
CREATE TABLE silences (
    id               TEXT PRIMARY KEY,
    matchers         TEXT NOT NULL,
    starts_at        INTEGER NOT NULL,
    ends_at          INTEGER NOT NULL,
    created_by       TEXT NOT NULL,
    comment          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expiry_announced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX silences_ends_at ON silences (ends_at);
