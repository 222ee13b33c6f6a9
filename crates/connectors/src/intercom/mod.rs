//! Intercom webhooks (Developer Hub topic subscriptions).
//!
//! Intercom signs each notification with `X-Hub-Signature: sha1=<hex HMAC-SHA1(client_secret,
//! raw body)>`; there is no timestamp. The envelope
//! (<https://developers.intercom.com/docs/references/webhooks/webhook-models>) is
//! `{"type":"notification_event","app_id","id":"notif_…","topic":"conversation.user.replied",
//! "data":{"type":"notification_event_data","item":{conversation…}},"created_at":<unix s>,…}`.
//!
//! Dedupe keys are derived from the object where a backfill can find it again:
//! * `conversation.user.created`, `conversation.admin.single.created` →
//!   `conversation:{id}:created`
//! * `conversation.user.replied`, `conversation.admin.replied`, `conversation.admin.noted` →
//!   `conversation_part:{part id}` (the newest part in `item.conversation_parts`)
//! * every other topic (assignments, closes, snoozes, contacts, `ping`…) → `event:{notif id}`.
//!
//! The channel is the conversation's `source.type` (`conversation` is the Messenger, a chat).

pub mod backfill;
#[cfg(test)]
mod tests;

use hmac::{Hmac, Mac};
use intake_core::config::SourceKind;
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::signature::constant_time_eq;
use serde::Deserialize;
use sha1::Sha1;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::lax::{self, Lax, List, Obj};
use crate::{decode_hex, Connector, Incoming, ParseError, VerifyError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

/// The Intercom connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct IntercomConnector;

fn hmac_sha1(key: &[u8], body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail.
    match <Hmac<Sha1> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Signs a body as Intercom does: `sha1=<lowercase hex HMAC-SHA1(client_secret, body)>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha1={}", hex::encode(hmac_sha1(secret.as_bytes(), body)))
}

/// Maps a conversation's `source.type` onto the normalized vocabulary.
pub fn channel(raw: &str) -> Channel {
    match raw.to_ascii_lowercase().as_str() {
        "conversation" | "chat" | "messenger" => Channel::Chat,
        "email" => Channel::Email,
        "sms" | "whatsapp" => Channel::Sms,
        "phone_call" | "phone_switch" | "call" => Channel::Voice,
        "facebook" | "instagram" | "twitter" => Channel::Social,
        "push" => Channel::Other,
        other => Channel::normalize(other),
    }
}

/// The topics whose object is the conversation's creation.
const CREATED_TOPICS: [&str; 2] = [
    "conversation.user.created",
    "conversation.admin.single.created",
];
/// The topics whose object is a new conversation part.
const PART_TOPICS: [&str; 3] = [
    "conversation.user.replied",
    "conversation.admin.replied",
    "conversation.admin.noted",
];

#[derive(Deserialize, Default)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    topic: Lax<'a>,
    #[serde(borrow, default)]
    created_at: Lax<'a>,
    #[serde(borrow, default)]
    data: Obj<Data<'a>>,
}

#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(borrow, default)]
    item: Obj<Item<'a>>,
}

#[derive(Deserialize, Default)]
struct Item<'a> {
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    created_at: Lax<'a>,
    #[serde(borrow, default)]
    updated_at: Lax<'a>,
    #[serde(borrow, default)]
    source: Obj<Source<'a>>,
    #[serde(borrow, default)]
    conversation_parts: Obj<Parts<'a>>,
}

#[derive(Deserialize, Default)]
struct Source<'a> {
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
}

#[derive(Deserialize, Default)]
struct Parts<'a> {
    #[serde(borrow, default)]
    conversation_parts: List<Obj<Part<'a>>>,
}

#[derive(Deserialize, Default)]
struct Part<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    created_at: Lax<'a>,
}

fn envelope_error(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "intercom",
        why: why.into(),
    }
}

/// Parses a body as the Intercom connector does (used by the backfill client to describe the
/// envelopes it builds).
pub fn parse_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    crate::input::policed(body, read_body)
}

/// Reads the envelope of a body that passed the input policy.
fn read_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    let env: Envelope<'_> = lax::object(body, "intercom")?;
    let topic = env
        .topic
        .get()
        .ok_or_else(|| envelope_error("no `topic`"))?;
    let sor_event_id = env.id.get().map(str::to_string);
    let item = env.data.get().and_then(|d| d.item.get());
    let item_type = item.and_then(|i| i.type_.get());
    let item_id = item.and_then(|i| i.id.get());
    let conversation_id = match item_type {
        Some("conversation") => item_id,
        _ => None,
    };
    // The part a reply or note notification is about: the newest one listed.
    let part = item
        .and_then(|i| i.conversation_parts.get())
        .and_then(|p| p.conversation_parts.0.iter().rev().find_map(|p| p.get()))
        .filter(|p| p.id.get().is_some());

    let created = CREATED_TOPICS.contains(&topic);
    let part_topic = PART_TOPICS.contains(&topic);
    let (object_type, object_id, dedupe_key, occurred) = match (conversation_id, part) {
        (Some(c), _) if created => (
            Some("conversation"),
            Some(c),
            format!("conversation:{c}:created"),
            (
                "data.item.created_at",
                item.and_then(|i| i.created_at.get()),
            ),
        ),
        (Some(_), Some(p)) if part_topic => {
            let id = p.id.get().unwrap_or_default();
            (
                Some("conversation_part"),
                Some(id),
                format!("conversation_part:{id}"),
                (
                    "data.item.conversation_parts.conversation_parts[].created_at",
                    p.created_at.get(),
                ),
            )
        }
        _ => match &sor_event_id {
            Some(id) => (
                item_type,
                item_id,
                format!("event:{id}"),
                (
                    "data.item.updated_at",
                    item.and_then(|i| i.updated_at.get()),
                ),
            ),
            None => return Err(envelope_error("no notification `id`")),
        },
    };
    // Intercom's times are Unix seconds; the notification's own `created_at` stands in for an
    // object time that is missing or unreadable.
    let occurred_at = match input::unix_seconds(occurred.0, occurred.1)? {
        Some(t) => Some(t),
        None => input::unix_seconds("created_at", env.created_at.get())?,
    };

    let raw_channel = item
        .and_then(|i| i.source.get())
        .and_then(|s| s.type_.get())
        .map(str::to_string);
    let channel = raw_channel.as_deref().map_or(Channel::Other, channel);

    Ok(NormalizedEvent {
        sor_event_id,
        dedupe_key,
        event_type: topic.to_string(),
        channel,
        raw_channel,
        object_type: object_type.map(str::to_string),
        object_id: object_id.map(str::to_string),
        conversation_id: conversation_id.map(str::to_string),
        occurred_at,
    })
}

impl Connector for IntercomConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Intercom
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        let header = req
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| VerifyError::MissingHeader("X-Hub-Signature".into()))?;
        let malformed = || VerifyError::Malformed {
            header: "X-Hub-Signature".into(),
            why: "expected `sha1=` and the hex HMAC-SHA1 of the body".into(),
        };
        let given = header
            .trim()
            .strip_prefix("sha1=")
            .and_then(decode_hex)
            .ok_or_else(malformed)?;
        let mut ok = false;
        // Every secret is checked (no early exit), so timing does not reveal which one matched.
        for secret in secrets {
            ok |= constant_time_eq(&hmac_sha1(secret.as_bytes(), req.body), &given);
        }
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        read_body(req.body)
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent"]
    }

    /// `{"type": "notification_event", "id", "topic": "intake.canary", "data": {"item"}, …}`,
    /// signed as Intercom signs: `sha1=` and the hex HMAC-SHA1 of the body.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let body = canary::marked(
            spec,
            serde_json::json!({
                "type": "notification_event",
                "app_id": "intake",
                "id": spec.id,
                "topic": canary::event_type(),
                "data": {
                    "type": "notification_event_data",
                    "item": {"type": "intake_canary", "id": spec.id},
                },
                "created_at": spec.at.as_secs(),
            }),
        );
        let bytes = body.to_string();
        SignedRequest::json(&body, &[(SIGNATURE_HEADER, sign(secret, bytes.as_bytes()))])
    }
}
