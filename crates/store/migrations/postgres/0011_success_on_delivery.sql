-- Issue 16: the same as on SQLite (see migrations/sqlite/0014_success_on_delivery.sql): a
-- successful attempt is kept on its delivery row, with how long it took, instead of an
-- attempt row.
ALTER TABLE deliveries ADD COLUMN delivered_ms BIGINT;
