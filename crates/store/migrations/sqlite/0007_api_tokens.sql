-- API tokens minted by intake (`intake token create`): only the SHA-256 of each is kept.
-- `tenant` is NULL for an operator token.
CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    tenant     TEXT,
    name       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant);
