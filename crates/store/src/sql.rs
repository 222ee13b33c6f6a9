//! SQL text that is the same on both backends, written once: column lists (each backend's row
//! readers read them in this order) and queries without parameters (the backends differ in how
//! they write parameters, `?1` or `$1`).
//!
//! Rule: constants only; this module imports nothing from the crate.

/// The columns of an event summary, in the order the backends' `event_summary` reads them.
pub(crate) const EVENT_COLUMNS: &str = "id, tenant, source, origin, sor_event_id, dedupe_key, \
     event_type, channel, raw_channel, occurred_at, received_at, object_type, object_id, \
     conversation_id";

/// The columns of a delivery summary, in the order `decode::delivery_summary` reads them, and
/// its event's id last (the status is read as a 64-bit integer on both backends).
pub(crate) const DELIVERY_COLUMNS: &str = "id, destination, state, attempts, due_at, \
     delivered_at, CAST(last_status AS BIGINT), last_error, origin, recovery, event_id, \
     completion, completed_at, completion_detail";

/// The successful attempts of an event's deliveries, kept on the delivery rows since issue 16
/// (`delivered_ms`), in the order `decode::delivered_attempt` reads them (`{p}1`: the event).
/// Deliveries delivered before then have an attempt row instead, and `delivered_ms` NULL.
pub(crate) const DELIVERED_ATTEMPTS: &str = "SELECT id, attempts, delivered_at, \
     CAST(last_status AS BIGINT), delivered_ms FROM deliveries \
     WHERE event_id = {p}1 AND delivered_ms IS NOT NULL AND delivered_at IS NOT NULL";

/// The columns of a delivery as a confirmation reads it, in the order
/// `decode::delivery_record` reads them.
pub(crate) const DELIVERY_RECORD_COLUMNS: &str = "id, event_id, destination, tenant, source, \
     channel, state, attempts, completion";

/// The deliveries of a destination awaiting their confirmation, per tenant and source (`$1`
/// or `?1`: the destination, then the overdue cutoff), written with `{p}` for the parameter
/// mark.
pub(crate) const COMPLETION_BACKLOG: &str = "SELECT tenant, source, COUNT(*), \
     SUM(CASE WHEN delivered_at < {p}2 THEN 1 ELSE 0 END), MIN(delivered_at) \
     FROM deliveries WHERE destination = {p}1 AND completion = 'received' \
     GROUP BY tenant, source ORDER BY tenant, source";

/// The oldest delivery awaiting its confirmation of one destination, tenant and source.
pub(crate) const COMPLETION_OLDEST: &str = "SELECT id FROM deliveries \
     WHERE destination = {p}1 AND completion = 'received' AND tenant = {p}2 AND source = {p}3 \
     ORDER BY delivered_at LIMIT 1";

/// Records a confirmation unless one was recorded first (`{p}1` completion, `{p}2` at,
/// `{p}3` detail, `{p}4` id).
pub(crate) const COMPLETE_DELIVERY: &str = "UPDATE deliveries SET completion = {p}1, \
     completed_at = {p}2, completion_detail = {p}3, updated_at = {p}2 \
     WHERE id = {p}4 AND (completion IS NULL OR completion = 'received')";

/// The columns of a recovery job, in the order `decode::recovery_job` reads them.
pub(crate) const RECOVERY_COLUMNS: &str = "id, kind, tenant, source, dry_run, state, params, \
     cursor, progress, report, error, cancel_requested, created_by, created_at, started_at, \
     updated_at, finished_at";

/// The states of a recovery job that has ended, as an SQL list: a final job is not changed.
pub(crate) const RECOVERY_FINAL_STATES: &str = "('succeeded', 'failed', 'cancelled')";

/// The columns of a drill, in the order `decode::drill` reads them.
pub(crate) const DRILL_COLUMNS: &str = "id, scenario, target, tenant, trigger_kind, schedule, \
     state, created_by, started_at, expires_at, detected_at, notified_at, healed_at, report";

/// The columns of an outbox item, in the order the backends' `outbox_row` reads them.
pub(crate) const OUTBOX_COLUMNS: &str = "id, notifier, key, notice, state, attempts, due_at, \
     created_at, finished_at, last_error, incident, tenant";

/// The columns of an incident, in the order `decode::incident` reads them.
pub(crate) const INCIDENT_COLUMNS: &str = "id, title, severity, status, tenants, sources, \
     channels, commander, impact_start, declared_at, declared_by, updated_at, resolved_at, \
     next_update_at, tracking, drill, version";

/// The columns of an incident's timeline entry, in the order `decode::incident_entry` reads
/// them.
pub(crate) const INCIDENT_ENTRY_COLUMNS: &str = "id, incident, at, kind, author, text, detail";

/// The columns of a silence, in the order the backends' `silence_row` reads them.
pub(crate) const SILENCE_COLUMNS: &str =
    "id, matchers, starts_at, ends_at, created_by, comment, created_at, expiry_announced";

/// The columns of an API token, in the order `decode::api_token` reads them.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, hash, tenant, name, created_by, created_at, expires_at, revoked_at";

/// The columns of an alert transition, in the order the backends read them.
pub(crate) const ALERT_TRANSITION_COLUMNS: &str =
    "at, rule, tenant, source, channel, destination, severity, state, value, reason";

/// Per notifier, what waits in its outbox (how many, since when, after how many failed
/// attempts, the last error) and when it last sent or gave up.
pub(crate) const NOTIFIER_HEALTH: &str = "SELECT notifier,
        CAST(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS BIGINT),
        MIN(CASE WHEN state = 'pending' THEN created_at END),
        CAST(COALESCE(MAX(CASE WHEN state = 'pending' THEN attempts END), 0) AS BIGINT),
        (SELECT m.last_error FROM notifications m
          WHERE m.notifier = n.notifier AND m.last_error IS NOT NULL
            AND (m.state = 'pending' OR m.state = 'dead')
          ORDER BY m.id DESC LIMIT 1),
        MAX(CASE WHEN state = 'sent' THEN finished_at END),
        MAX(CASE WHEN state = 'dead' THEN finished_at END)
     FROM notifications n GROUP BY notifier ORDER BY notifier";

/// Rows per table, counters summed over any shards (for `intake migrate-store`).
pub(crate) const TABLE_COUNTS: &str = "SELECT
    (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries),
    (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM rejections),
    (SELECT COUNT(*) FROM (SELECT 1 FROM counters
        GROUP BY minute, tenant, source, channel, destination, metric) AS k),
    (SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM counters),
    (SELECT COUNT(*) FROM recoveries), (SELECT COUNT(*) FROM drills),
    (SELECT COUNT(*) FROM incidents),
    (SELECT COUNT(*) FROM incident_entries),
    (SELECT COUNT(*) FROM notifications WHERE incident IS NOT NULL)";

/// The meta (SQLite) or state (PostgreSQL) key under which counter compaction records since
/// when minute counters are complete: it deleted minute rows before this instant.
pub(crate) const MINUTES_KEPT_KEY: &str = "counters_minutes_from";

/// The key under which counter compaction records since when hourly counters are complete.
pub(crate) const HOURS_KEPT_KEY: &str = "counters_hours_from";

/// A delivery's state (`d.state`) ranked for an audit: delivered 2, not final (pending,
/// retrying, in flight) 1, dead 0, so that the best state of an (event, destination) is the
/// `MAX` of its deliveries'. A state this build does not know ranks nowhere (NULL), and the
/// audit's sums then fall short of the events, which its report shows.
pub(crate) const DELIVERY_STATE_RANK: &str = "CASE d.state WHEN 'delivered' THEN 2 \
     WHEN 'pending' THEN 1 WHEN 'retrying' THEN 1 WHEN 'in_flight' THEN 1 WHEN 'dead' THEN 0 END";
