-- Completion receipts (issue 18): for a destination with `completion = "receipt"`, a 2xx
-- means the handler *received* the event; its work is done when it confirms. The delivery's
-- `state` stays `delivered` (final for retries, and what the audit counts); `completion` is
-- the second stage beside it: NULL (not on receipts, or not yet answered), 'received',
-- 'completed' or 'completion_failed'. `delivered_at` is when it was received.
ALTER TABLE deliveries ADD COLUMN completion TEXT;
ALTER TABLE deliveries ADD COLUMN completed_at INTEGER;
ALTER TABLE deliveries ADD COLUMN completion_detail TEXT;

-- The deliveries still waiting for their confirmation, oldest first per destination: the
-- monitor's `completion_stalled` reads the overdue ones and the oldest without scanning the
-- deliveries that are done. Rows leave the index when they are confirmed.
CREATE INDEX deliveries_awaiting_completion ON deliveries (destination, delivered_at)
    WHERE completion = 'received';
