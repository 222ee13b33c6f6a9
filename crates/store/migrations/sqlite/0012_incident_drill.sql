-- Drill incidents: an incident a fire drill's alert declared names the drill (`drl_…`), so
-- that it is shown as a drill, never merges with a real incident, and holds tenant notices
-- unless `[incidents] drill_tenant_notices` says otherwise. NULL for every other incident.
-- (Numbers 0011 and 0012 belong to work built in parallel; migrations are recorded by number,
-- so any order works.)
ALTER TABLE incidents ADD COLUMN drill TEXT;
