//! The story's outage as a measurement: what a Kustomer backfill of the lost window must
//! deliver, and how the deliveries a handler recorded measure up against it. Used by the
//! recovery benchmark (`intake-bench-recovery`) and by the tests that check its expectations
//! against the backfill client itself.
//!
//! An event is identified the way the handler can see it: the Kustomer event type
//! (`intake-event-type`), the object the body is about (`data.id`) and when the SOR says it
//! happened (`intake-occurred-at`). That is also how intake's Kustomer connector tells events
//! apart (its dedupe key: a creation per object, an update per object and `updatedAt`), so a
//! second delivery with the same identity is a duplicate even under another `webhook-id`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Instant;

use intake_core::Timestamp;
use intake_fake_sors::kustomer::{conversation_id, message_id, updated_at};
use intake_fake_sors::World;

/// `kustomer.conversation.create`
pub const CONVERSATION_CREATE: &str = "kustomer.conversation.create";
/// `kustomer.message.create`
pub const MESSAGE_CREATE: &str = "kustomer.message.create";
/// `kustomer.conversation.update`
pub const CONVERSATION_UPDATE: &str = "kustomer.conversation.update";

/// One event as a handler identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey {
    /// The Kustomer event name, e.g. `kustomer.message.create`.
    pub event_type: String,
    /// The id of the object it is about (`data.id`).
    pub object_id: String,
    /// When it happened, by the SOR (`intake-occurred-at`).
    pub occurred_at: Timestamp,
}

impl EventKey {
    fn new(event_type: &str, object_id: String, occurred_at: Timestamp) -> Self {
        EventKey {
            event_type: event_type.to_string(),
            object_id,
            occurred_at,
        }
    }
}

/// The events a Kustomer backfill of `[from, to]` (both inclusive) must deliver when every
/// webhook outside that window was received and every one inside it was lost. This is what
/// `intake_connectors::kustomer::backfill` reproduces from the API's current objects:
///
/// * a `kustomer.conversation.create` per conversation created in the window;
/// * a `kustomer.message.create` per message created in the window, whichever conversation it
///   belongs to (one created before the window may be answered inside it);
/// * one `kustomer.conversation.update` per conversation whose *last* update is in the window
///   and later than its creation — the API shows current objects, so the intermediate updates
///   of a conversation are not recoverable, and a last update after the window was received.
pub fn expected_backfill(world: &World, from: Timestamp, to: Timestamp) -> BTreeSet<EventKey> {
    let inside = |t: Timestamp| from <= t && t <= to;
    let mut out = BTreeSet::new();
    for c in &world.conversations {
        let id = conversation_id(c);
        if inside(c.created_at) {
            out.insert(EventKey::new(CONVERSATION_CREATE, id.clone(), c.created_at));
        }
        for m in c.messages.iter().filter(|m| inside(m.created_at)) {
            out.insert(EventKey::new(MESSAGE_CREATE, message_id(m), m.created_at));
        }
        let updated = updated_at(c);
        if updated > c.created_at && inside(updated) {
            out.insert(EventKey::new(CONVERSATION_UPDATE, id, updated));
        }
    }
    out
}

/// One request the handler received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `webhook-id`: intake's event id.
    pub webhook_id: String,
    /// `intake-origin`: `webhook`, `backfill`, …
    pub origin: String,
    /// `intake-event-type`
    pub event_type: String,
    /// `intake-occurred-at`, when it parsed.
    pub occurred_at: Option<Timestamp>,
    /// The body's `data.id`, when it had one.
    pub object_id: Option<String>,
    /// When it arrived.
    pub arrived: Instant,
}

impl Delivery {
    /// Its identity, when the headers and body carried one.
    pub fn key(&self) -> Option<EventKey> {
        Some(EventKey::new(
            &self.event_type,
            self.object_id.clone()?,
            self.occurred_at?,
        ))
    }

    /// What makes a second delivery of it a duplicate: the object and event type for a
    /// creation (an object is created once), plus the instant for anything else (a
    /// conversation is updated many times, each a distinct event).
    fn identity(&self) -> Option<(String, String, Option<Timestamp>)> {
        let object = self.object_id.clone()?;
        let at = if self.event_type.ends_with(".create") {
            None
        } else {
            Some(self.occurred_at?)
        };
        Some((self.event_type.clone(), object, at))
    }
}

/// How the deliveries measure up against the expected backfill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Deliveries with origin `backfill`.
    pub backfilled: usize,
    /// Deliveries (of any origin) of an event delivered before: the same `webhook-id`, or
    /// the same identity (see [`Delivery`]) under another id.
    pub duplicates: usize,
    /// Backfill deliveries that happened, by the SOR, outside the window (or say no time).
    pub outside_window: usize,
    /// Backfill deliveries inside the window that the world does not imply (a wrong object,
    /// type or time), duplicates not included.
    pub unexpected: usize,
    /// Expected events that no backfill delivery carried.
    pub missing: usize,
    /// When the last expected event first arrived (`None` until one has).
    pub last_expected: Option<Instant>,
}

impl Tally {
    /// Whether the recovery was exact: nothing missing, duplicated, outside the window or
    /// unexpected.
    pub fn exact(&self) -> bool {
        self.missing == 0
            && self.duplicates == 0
            && self.outside_window == 0
            && self.unexpected == 0
    }
}

/// Measures `deliveries` (in arrival order) against `expected`, the events of `[from, to]`.
pub fn tally(
    deliveries: &[Delivery],
    expected: &BTreeSet<EventKey>,
    from: Timestamp,
    to: Timestamp,
) -> Tally {
    let mut t = Tally::default();
    let mut ids = HashSet::new();
    let mut identities = HashSet::new();
    let mut found: BTreeMap<&EventKey, Instant> = BTreeMap::new();
    for d in deliveries {
        let new_id = ids.insert(d.webhook_id.clone());
        let new_identity = d.identity().is_none_or(|i| identities.insert(i));
        let duplicate = !(new_id && new_identity);
        if duplicate {
            t.duplicates += 1;
        }
        if d.origin != "backfill" {
            continue;
        }
        t.backfilled += 1;
        if !d.occurred_at.is_some_and(|at| from <= at && at <= to) {
            t.outside_window += 1;
            continue;
        }
        match d.key().and_then(|k| expected.get(&k)) {
            Some(k) => {
                found.entry(k).or_insert(d.arrived);
            }
            None if !duplicate => t.unexpected += 1,
            None => {}
        }
    }
    t.missing = expected.len() - found.len();
    t.last_expected = found.values().max().copied();
    t
}

/// The requests a fake Kustomer's API answered, by kind, read from its request log
/// (`"POST /v1/customers/search?…"`, `"429 GET /v1/conversations/…/messages?…"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SorRequests {
    /// Every request answered, refused ones included.
    pub total: usize,
    /// Searches (`POST /v1/customers/search`).
    pub searches: usize,
    /// Message lists (`GET /v1/conversations/{id}/messages`).
    pub message_lists: usize,
    /// Requests to anything else.
    pub other: usize,
    /// Answered `429 Too Many Requests`.
    pub throttled: usize,
    /// Answered another error (400, 401, 404, …).
    pub failed: usize,
}

/// Counts a fake Kustomer's request log.
pub fn count_requests(log: &[String]) -> SorRequests {
    let mut r = SorRequests::default();
    for line in log {
        r.total += 1;
        let (status, request) = match line.split_once(' ') {
            Some((s, rest)) if s.bytes().all(|b| b.is_ascii_digit()) => (Some(s), rest),
            _ => (None, line.as_str()),
        };
        match status {
            Some("429") => r.throttled += 1,
            Some(_) => r.failed += 1,
            None => {}
        }
        let path = request.split('?').next().unwrap_or(request);
        if path == "POST /v1/customers/search" {
            r.searches += 1;
        } else if path.starts_with("GET /v1/conversations/") && path.ends_with("/messages") {
            r.message_lists += 1;
        } else {
            r.other += 1;
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_fake_sors::world::STORY_WINDOW;
    use std::time::Duration;

    fn window() -> (Timestamp, Timestamp) {
        let from = Timestamp::parse_rfc3339("2026-11-27T02:00:00Z").unwrap();
        (from, from.plus(STORY_WINDOW))
    }

    fn delivery(id: &str, origin: &str, key: &EventKey, after_ms: u64) -> Delivery {
        Delivery {
            webhook_id: id.into(),
            origin: origin.into(),
            event_type: key.event_type.clone(),
            occurred_at: Some(key.occurred_at),
            object_id: Some(key.object_id.clone()),
            arrived: base() + Duration::from_millis(after_ms),
        }
    }

    fn base() -> Instant {
        static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    #[test]
    fn the_story_expects_every_lost_creation_and_the_last_updates() {
        let (from, to) = window();
        let world = World::story(5, from);
        let expected = expected_backfill(&world, from, to);
        let of = |t: &str| expected.iter().filter(|k| k.event_type == t).count();
        assert_eq!(of(CONVERSATION_CREATE), 1049);
        let messages = world
            .messages()
            .iter()
            .filter(|(_, m)| from <= m.created_at && m.created_at <= to)
            .count();
        assert_eq!(of(MESSAGE_CREATE), messages);
        // Every conversation created in the window has its last update there, but those
        // whose last message came in its last 200 ms; some from before the window add theirs.
        let updates = of(CONVERSATION_UPDATE);
        assert!((1040..=1120).contains(&updates), "{updates} updates");
        assert!(expected
            .iter()
            .all(|k| from <= k.occurred_at && k.occurred_at <= to));
    }

    #[test]
    fn a_tally_counts_duplicates_strays_and_what_is_missing() {
        let (from, to) = window();
        let key = |t: &str, id: &str, min: u64| {
            EventKey::new(t, id.into(), from.plus(Duration::from_secs(60 * min)))
        };
        let a = key(CONVERSATION_CREATE, "c1", 1);
        let b = key(MESSAGE_CREATE, "m1", 2);
        let c = key(CONVERSATION_UPDATE, "c1", 3);
        let expected: BTreeSet<_> = [a.clone(), b.clone(), c.clone()].into();
        let before = key(CONVERSATION_UPDATE, "c1", 0);
        let outside = EventKey::new(
            MESSAGE_CREATE,
            "m0".into(),
            from.minus(Duration::from_secs(1)),
        );
        let stray = key(MESSAGE_CREATE, "m9", 5);
        let all = vec![
            delivery("evt_0", "webhook", &before, 0),
            delivery("evt_1", "backfill", &a, 10),
            delivery("evt_2", "backfill", &b, 30),
            delivery("evt_2", "backfill", &b, 40), // the same id again
            delivery("evt_3", "backfill", &a, 50), // the same object created twice
            delivery("evt_4", "backfill", &outside, 60),
            delivery("evt_5", "backfill", &stray, 70),
        ];
        let t = tally(&all, &expected, from, to);
        assert_eq!(
            (
                t.backfilled,
                t.duplicates,
                t.outside_window,
                t.unexpected,
                t.missing
            ),
            (6, 2, 1, 1, 1)
        );
        assert_eq!(t.last_expected, Some(base() + Duration::from_millis(30)));
        assert!(!t.exact());

        let clean = vec![
            delivery("evt_0", "webhook", &before, 0),
            delivery("evt_1", "backfill", &a, 10),
            delivery("evt_2", "backfill", &b, 20),
            delivery("evt_3", "backfill", &c, 30),
        ];
        let t = tally(&clean, &expected, from, to);
        assert!(t.exact(), "{t:?}");
        assert_eq!(t.last_expected, Some(base() + Duration::from_millis(30)));
    }

    #[test]
    fn requests_are_counted_by_kind_and_answer() {
        let log: Vec<String> = [
            "POST /v1/customers/search?page=1&pageSize=100",
            "GET /v1/conversations/abc/messages?page=1&pageSize=100",
            "429 GET /v1/conversations/abc/messages?page=1&pageSize=100",
            "429 POST /v1/customers/search?page=2&pageSize=100",
            "404 GET /v1/conversations/zzz/messages?page=1&pageSize=100",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            count_requests(&log),
            SorRequests {
                total: 5,
                searches: 2,
                message_lists: 3,
                other: 0,
                throttled: 2,
                failed: 1,
            }
        );
    }
}
