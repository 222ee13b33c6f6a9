-- Issue 16: an attempt row is written only for an attempt that did not deliver (failed, dead,
-- or superseded after its lease was lost). A successful attempt is already on its delivery
-- row (`attempts`, `delivered_at`, `last_status`); what the row lacked is how long that
-- attempt took, kept here, so the event's attempt list shows the success as before (built from
-- the delivery row: started at `delivered_at - delivered_ms`). NULL on deliveries delivered
-- before this migration: their success has its attempt row.
ALTER TABLE deliveries ADD COLUMN delivered_ms INTEGER;
