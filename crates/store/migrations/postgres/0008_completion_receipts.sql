-- Completion receipts (issue 18): the same as on SQLite (see
-- migrations/sqlite/0011_completion_receipts.sql for the reasons), with PostgreSQL's types.
ALTER TABLE deliveries ADD COLUMN completion TEXT;
ALTER TABLE deliveries ADD COLUMN completed_at BIGINT;
ALTER TABLE deliveries ADD COLUMN completion_detail TEXT;

CREATE INDEX deliveries_awaiting_completion ON deliveries (destination, delivered_at)
    WHERE completion = 'received';
