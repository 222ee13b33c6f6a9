-- The conversation (ticket) an event's object belongs to: recovery reports and incident
-- postmortems count conversations, not only events.
ALTER TABLE events ADD COLUMN conversation_id TEXT;
