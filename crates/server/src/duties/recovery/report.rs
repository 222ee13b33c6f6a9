//! A recovery job's report: what it found and what it did, counted by channel, event type and
//! kind of object ("236 chat, 813 email" is how the story's recovery was reported), with the
//! first items and the system of record's requests. Pure accumulation, saved with the job
//! after every page, so a resumed job continues the same report.

use std::collections::BTreeMap;

use intake_core::event::NormalizedEvent;
use intake_core::Timestamp;
use serde::{Deserialize, Serialize};

/// Counts of events by channel, event type and kind of object, with the distinct
/// conversations they belong to by channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Every event counted.
    pub total: u64,
    /// By normalized channel.
    pub by_channel: BTreeMap<String, u64>,
    /// By event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// By kind of object: `conversation`, `message` or `other`.
    pub by_object: BTreeMap<String, u64>,
    /// Conversations the events belong to, by channel (distinct within a page of the
    /// listing; a system of record that lists a conversation on two pages counts it twice).
    pub conversations_by_channel: BTreeMap<String, u64>,
    /// Conversations created by the events (a conversation's creation event is among them),
    /// by channel: "236 chat, 813 email".
    #[serde(default)]
    pub new_conversations_by_channel: BTreeMap<String, u64>,
}

/// Whether an event is a conversation's creation (`kustomer.conversation.create`,
/// `ticket.created`, `conversation.created`, …).
pub fn creates_conversation(event_type: &str, object: &str) -> bool {
    object == "conversation" && event_type.to_ascii_lowercase().contains("creat")
}

/// The kind of object an event is about, from the connector's object type.
pub fn object_kind(object_type: Option<&str>) -> &'static str {
    let Some(t) = object_type.map(str::to_ascii_lowercase) else {
        return "other";
    };
    if ["message", "comment", "part", "reply", "note"]
        .iter()
        .any(|k| t.contains(k))
    {
        "message"
    } else if ["conversation", "ticket", "chat"]
        .iter()
        .any(|k| t.contains(k))
    {
        "conversation"
    } else {
        "other"
    }
}

impl Counts {
    /// Counts one page's events: each event once, each conversation once per page.
    pub fn add_page<'a>(&mut self, events: impl IntoIterator<Item = &'a NormalizedEvent>) {
        let mut conversations = std::collections::BTreeSet::new();
        for e in events {
            let object = object_kind(e.object_type.as_deref());
            self.add(e.channel.as_str(), &e.event_type, object);
            if creates_conversation(&e.event_type, object) {
                *self
                    .new_conversations_by_channel
                    .entry(e.channel.as_str().to_string())
                    .or_default() += 1;
            }
            if let Some(c) = &e.conversation_id {
                if conversations.insert(c.clone()) {
                    *self
                        .conversations_by_channel
                        .entry(e.channel.as_str().to_string())
                        .or_default() += 1;
                }
            }
        }
    }

    /// Counts one event.
    pub fn add(&mut self, channel: &str, event_type: &str, object: &str) {
        self.total += 1;
        *self.by_channel.entry(channel.to_string()).or_default() += 1;
        *self
            .by_event_type
            .entry(event_type.to_string())
            .or_default() += 1;
        *self.by_object.entry(object.to_string()).or_default() += 1;
    }
}

/// One item a report lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The dedupe key (backfill) or event id (replay, requeue).
    pub key: String,
    /// The event type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event_type: String,
    /// The channel.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The object's id in the system of record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The conversation it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// When the system of record says it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<Timestamp>,
    /// The destination (replay, requeue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// What was (or would be) done: `ingest`, `replay`, `stale_lease`, `created`, …
    pub action: String,
}

impl Item {
    /// The item for a backfilled event.
    pub fn of_event(e: &NormalizedEvent, action: &str) -> Item {
        Item {
            key: e.dedupe_key.clone(),
            event_type: e.event_type.clone(),
            channel: e.channel.as_str().to_string(),
            object_id: e.object_id.clone(),
            conversation_id: e.conversation_id.clone(),
            occurred_at: e.occurred_at,
            destination: None,
            action: action.to_string(),
        }
    }
}

/// What a job asked of the system of record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SorUse {
    /// Requests sent (retries included).
    pub requests: u64,
    /// `429`s received.
    pub throttled: u64,
    /// Requests retried after a transport error or a `5xx`.
    pub retried: u64,
    /// The budget intake allows itself (`api.rate_limit_per_minute`).
    pub rate_limit_per_minute: u32,
    /// How long these requests take at that budget: the duration of the real run when this
    /// is a dry run's report.
    pub estimated_seconds: f64,
}

impl SorUse {
    /// The use after `requests` requests at `per_minute`.
    pub fn at(stats: intake_connectors::backfill::ApiStats, per_minute: u32) -> SorUse {
        SorUse {
            requests: stats.requests,
            throttled: stats.throttled,
            retried: stats.retried,
            rate_limit_per_minute: per_minute,
            estimated_seconds: stats.requests as f64 * 60.0 / f64::from(per_minute.max(1)),
        }
    }
}

/// What a requeue changed (or would change).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeueCounts {
    /// In-flight deliveries whose lease had ended, made pending.
    pub stale_leases: u64,
    /// Retrying deliveries given a fresh start.
    pub retrying_reset: u64,
    /// Deliveries to destinations no longer routed, closed (dead, with the reason).
    pub rerouted: u64,
    /// Deliveries created for routed destinations the event had none to.
    pub created: u64,
}

/// A job's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Pages (of the listing, or of events) done.
    pub pages: u64,
    /// Events looked at: the events the system of record implies inside the window
    /// (backfill), or the events the filter selected (replay, requeue).
    pub seen: u64,
    /// Backfill: events of the listing outside `[from, to]` (the margin, or conversations
    /// that span the window's edge), never injected.
    pub outside_window: u64,
    /// Backfill: events that had been received already.
    pub already_received: u64,
    /// What the job has to do: missing events (backfill), deliveries to replay, deliveries
    /// to requeue.
    pub todo: Counts,
    /// How many of those it did (0 in a dry run).
    pub done: u64,
    /// Replay: deliveries a job with the same parameters already made.
    pub already_done: u64,
    /// Requeue: what changed.
    #[serde(default)]
    pub requeue: RequeueCounts,
    /// The first items.
    pub items: Vec<Item>,
    /// Backfill: the system of record's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sor: Option<SorUse>,
    /// Backfill: conversations whose first event was delivered before their others.
    #[serde(default)]
    pub ordered_conversations: u64,
    /// Backfill: waits for a conversation's first event that ended before it was delivered
    /// (its destination was failing): its other events followed anyway.
    #[serde(default)]
    pub order_waits_timed_out: u64,
    /// Failures that were retried (the system of record or the store unavailable).
    #[serde(default)]
    pub transient_failures: u64,
    /// Times the job started again after its node stopped.
    #[serde(default)]
    pub resumed: u64,
    /// When the job last wrote its report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl Report {
    /// Adds `item` to the listed items while there is room for `sample`.
    pub fn list(&mut self, sample: usize, item: impl FnOnce() -> Item) {
        if self.items.len() < sample {
            self.items.push(item());
        }
    }

    /// Reads a stored report; an empty or unreadable document is a new report.
    pub fn from_json(v: &serde_json::Value) -> Report {
        serde_json::from_value(v.clone()).unwrap_or_default()
    }

    /// The report as stored.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intake_core::event::Channel;

    fn event(
        key: &str,
        channel: Channel,
        ty: &str,
        object: Option<&str>,
        conv: Option<&str>,
    ) -> NormalizedEvent {
        NormalizedEvent {
            sor_event_id: None,
            dedupe_key: key.into(),
            event_type: ty.into(),
            channel,
            raw_channel: None,
            object_type: object.map(str::to_string),
            object_id: None,
            conversation_id: conv.map(str::to_string),
            occurred_at: None,
        }
    }

    #[test]
    fn creations_of_conversations_are_told_apart_from_their_updates_and_messages() {
        for (event_type, object, creates) in [
            ("kustomer.conversation.create", "conversation", true),
            ("ticket.created", "conversation", true),
            ("conversation.user.created", "conversation", true),
            ("kustomer.conversation.update", "conversation", false),
            ("kustomer.message.create", "message", false),
            ("kustomer.customer.create", "other", false),
        ] {
            assert_eq!(
                creates_conversation(event_type, object),
                creates,
                "{event_type}"
            );
        }
    }

    #[test]
    fn objects_are_classified_by_their_connector_type() {
        for (object_type, kind) in [
            (Some("conversation"), "conversation"),
            (Some("ticket"), "conversation"),
            (Some("message"), "message"),
            (Some("comment"), "message"),
            (Some("conversation_part"), "message"),
            (Some("customer"), "other"),
            (None, "other"),
        ] {
            assert_eq!(object_kind(object_type), kind, "{object_type:?}");
        }
    }

    #[test]
    fn a_page_counts_each_event_and_each_conversation_once() {
        let page = [
            event(
                "c1",
                Channel::Chat,
                "kustomer.conversation.create",
                Some("conversation"),
                Some("c1"),
            ),
            event(
                "m1",
                Channel::Chat,
                "kustomer.message.create",
                Some("message"),
                Some("c1"),
            ),
            event(
                "m2",
                Channel::Chat,
                "kustomer.message.create",
                Some("message"),
                Some("c1"),
            ),
            event(
                "c2",
                Channel::Email,
                "kustomer.conversation.create",
                Some("conversation"),
                Some("c2"),
            ),
            event("x", Channel::Email, "kustomer.customer.update", None, None),
        ];
        let mut c = Counts::default();
        c.add_page(&page);
        assert_eq!(c.total, 5);
        assert_eq!(c.by_channel["chat"], 3);
        assert_eq!(c.by_object["message"], 2);
        assert_eq!(c.by_object["other"], 1);
        assert_eq!(c.by_event_type["kustomer.conversation.create"], 2);
        assert_eq!(c.conversations_by_channel["chat"], 1);
        assert_eq!(c.conversations_by_channel["email"], 1);
        assert_eq!(c.new_conversations_by_channel["chat"], 1);
        assert_eq!(c.new_conversations_by_channel["email"], 1);
    }

    #[test]
    fn items_are_listed_up_to_the_sample_and_the_report_round_trips() {
        let mut r = Report::default();
        for i in 0..5 {
            r.list(3, || {
                Item::of_event(
                    &event(&format!("k{i}"), Channel::Sms, "t", None, None),
                    "ingest",
                )
            });
        }
        assert_eq!(r.items.len(), 3);
        r.sor = Some(SorUse::at(
            intake_connectors::backfill::ApiStats {
                requests: 1060,
                throttled: 2,
                retried: 0,
            },
            1000,
        ));
        let back = Report::from_json(&r.to_json());
        assert_eq!(back, r);
        let sor = back.sor.unwrap();
        assert!(
            (sor.estimated_seconds - 63.6).abs() < 1e-9,
            "{}",
            sor.estimated_seconds
        );
        assert_eq!(Report::from_json(&serde_json::json!({})), Report::default());
    }
}
