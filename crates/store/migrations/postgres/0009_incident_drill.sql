-- Drill incidents: the same as on SQLite (see migrations/sqlite/0013_incident_drill.sql).
-- (Numbers 0008 and 0009 belong to work built in parallel; `intake_migrations` records each
-- number, so any order works.)
ALTER TABLE incidents ADD COLUMN drill TEXT;
