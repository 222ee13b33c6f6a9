//! Gorgias: webhooks are "HTTP integrations" (Settings → HTTP integration): on the triggers
//! chosen (`ticket-created`, `ticket-updated`, `ticket-message-created`, …) Gorgias sends a
//! request whose URL, headers and body template the administrator writes. Gorgias does not
//! sign them; the integration sends a shared secret in a custom header (or an
//! `Authorization: Basic …` header), checked as the source's `auth` says (see
//! [`crate::unsigned`]).
//!
//! intake documents one integration per trigger, each with this body (only `event` differs):
//!
//! ```text
//! {"event": "ticket-message-created", "ticket": {{ticket}}, "message": {{message}}}
//! ```
//!
//! `ticket` and `message` are Gorgias' own ticket and message objects, as its API returns
//! them. A body that is Gorgias' `{{context}}` alone (`{"ticket": …, "message": …}`, no `event`)
//! is read too: with a message it is a `ticket-message-created`, without one a
//! `ticket-updated` (a creation cannot be told apart without `event`).
//!
//! There is no event id. The dedupe key is derived from the objects, as a backfill reads them
//! from the API: `ticket:{id}:created`, `ticket:{id}:updated:{updated_datetime}` (UTC, to the
//! millisecond), `message:{id}:created`; other triggers key on the ticket's
//! `updated_datetime` too: `ticket:{id}:{event}:{updated_datetime}`.
//!
//! The channel is the message's `channel` for message events and the ticket's otherwise:
//! `email`, `chat`, `phone`, `sms`, `whatsapp`, `facebook…`, `instagram-…`, `twitter…`,
//! `api`, `contact_form`, `help-center`, … (see [`channel`]).

pub mod backfill;
#[cfg(test)]
mod tests;

use intake_core::config::{SharedSecretAuth, SourceKind};
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::Timestamp;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::error::Category;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::unsigned::{self, body_digest, parse_time, starts_object, Lax};
use crate::{Connector, Incoming, ParseError, VerifyError};

pub use backfill::GorgiasBackfill;

/// The ticket-created trigger.
pub const TICKET_CREATED: &str = "ticket-created";
/// The ticket-updated trigger.
pub const TICKET_UPDATED: &str = "ticket-updated";
/// The ticket-message-created trigger.
pub const TICKET_MESSAGE_CREATED: &str = "ticket-message-created";

/// The Gorgias connector.
#[derive(Debug, Clone, Default)]
pub struct GorgiasConnector {
    auth: SharedSecretAuth,
}

impl GorgiasConnector {
    /// A connector checking requests as `auth` says.
    pub fn new(auth: SharedSecretAuth) -> Self {
        GorgiasConnector { auth }
    }
}

/// The header name and value a Gorgias HTTP integration configured with `auth` and `secret`
/// sends.
pub fn sign(auth: &SharedSecretAuth, secret: &str) -> (String, String) {
    unsigned::sign(auth, secret)
}

/// The normalized channel of a Gorgias channel name.
pub fn channel(raw: &str) -> Channel {
    let raw = raw.to_ascii_lowercase();
    match raw.as_str() {
        "email" => Channel::Email,
        "chat" => Channel::Chat,
        "phone" | "aircall" | "voice" => Channel::Voice,
        "sms" | "whatsapp" => Channel::Sms,
        r if r.starts_with("facebook")
            || r.starts_with("instagram")
            || r.starts_with("twitter")
            || r.starts_with("tiktok") =>
        {
            Channel::Social
        }
        // `api`, `contact_form`, `help-center`, `internal-note`, review apps…
        _ => Channel::Other,
    }
}

/// `2026-11-27T09:15:00.123Z`: the form dedupe keys carry Gorgias times in.
pub(crate) fn canonical_millis(t: Timestamp) -> String {
    t.to_rfc3339()
}

fn envelope(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "gorgias",
        why: why.into(),
    }
}

// Only the fields intake uses, with borrowed strings; the rest of the objects is skipped.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Lax<'a>,
    #[serde(borrow, default)]
    ticket: Option<Ticket<'a>>,
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
}

#[derive(Deserialize, Default)]
struct Ticket<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    channel: Lax<'a>,
    #[serde(borrow, default)]
    created_datetime: Lax<'a>,
    #[serde(borrow, default)]
    updated_datetime: Lax<'a>,
}

#[derive(Deserialize, Default)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    ticket_id: Lax<'a>,
    #[serde(borrow, default)]
    channel: Lax<'a>,
    #[serde(borrow, default)]
    created_datetime: Lax<'a>,
}

/// A time for a key: canonical when it parses, as written otherwise.
fn version(raw: Option<&str>) -> Option<String> {
    raw.map(|r| parse_time(r).map_or_else(|| r.to_string(), canonical_millis))
}

impl Connector for GorgiasConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Gorgias
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        unsigned::verify(&self.auth, req.headers, secrets)
    }

    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        if !starts_object(req.body) {
            return Err(match serde_json::from_slice::<IgnoredAny>(req.body) {
                Ok(_) => envelope("expected a JSON object"),
                Err(e) => ParseError::NotJson(e.to_string()),
            });
        }
        let env: Envelope<'_> =
            serde_json::from_slice(req.body).map_err(|e| match e.classify() {
                Category::Data => envelope(e.to_string()),
                _ => ParseError::NotJson(e.to_string()),
            })?;
        let ticket = env.ticket.unwrap_or_default();
        let message = env.message;
        let event = match (env.event.get(), &message) {
            (Some(e), _) => e.to_string(),
            (None, Some(_)) => TICKET_MESSAGE_CREATED.to_string(),
            (None, None) => TICKET_UPDATED.to_string(),
        };
        let ticket_id = ticket
            .id
            .get()
            .or_else(|| message.as_ref().and_then(|m| m.ticket_id.get()))
            .map(str::to_string)
            .ok_or_else(|| envelope("no `ticket.id` (nor `message.ticket_id`)"))?;
        let message_id = message
            .as_ref()
            .and_then(|m| m.id.get())
            .map(str::to_string);
        let ticket_created = ticket.created_datetime.get();
        let ticket_updated = ticket.updated_datetime.get();
        let message_created = message.as_ref().and_then(|m| m.created_datetime.get());

        let (object_type, object_id, occurred_raw, dedupe_key) = match event.as_str() {
            TICKET_CREATED => (
                "ticket",
                ticket_id.clone(),
                ticket_created
                    .map(|t| ("ticket.created_datetime", t))
                    .or(ticket_updated.map(|t| ("ticket.updated_datetime", t))),
                format!("ticket:{ticket_id}:created"),
            ),
            TICKET_MESSAGE_CREATED => match &message_id {
                Some(mid) => (
                    "message",
                    mid.clone(),
                    message_created
                        .map(|t| ("message.created_datetime", t))
                        .or(ticket_updated.map(|t| ("ticket.updated_datetime", t))),
                    format!("message:{mid}:created"),
                ),
                None => (
                    "ticket",
                    ticket_id.clone(),
                    ticket_updated.map(|t| ("ticket.updated_datetime", t)),
                    format!("ticket:{ticket_id}:{event}:body-{}", body_digest(req.body)),
                ),
            },
            _ => {
                let key = match version(ticket_updated) {
                    Some(v) if event == TICKET_UPDATED => format!("ticket:{ticket_id}:updated:{v}"),
                    Some(v) => format!("ticket:{ticket_id}:{event}:{v}"),
                    None => format!("ticket:{ticket_id}:{event}:body-{}", body_digest(req.body)),
                };
                (
                    "ticket",
                    ticket_id.clone(),
                    ticket_updated.map(|t| ("ticket.updated_datetime", t)),
                    key,
                )
            }
        };

        let (occurred_field, occurred_raw) = occurred_raw.unzip();
        let occurred_at = input::within(
            occurred_field.unwrap_or_default(),
            occurred_raw,
            occurred_raw.and_then(parse_time),
        )?;

        let raw_channel = message
            .as_ref()
            .filter(|_| object_type == "message")
            .and_then(|m| m.channel.get())
            .or_else(|| ticket.channel.get())
            .map(str::to_string);
        let channel = raw_channel
            .as_deref()
            .map(channel)
            .unwrap_or(Channel::Other);

        Ok(NormalizedEvent {
            sor_event_id: None,
            dedupe_key,
            event_type: event,
            channel,
            raw_channel,
            object_type: Some(object_type.into()),
            object_id: Some(object_id),
            conversation_id: Some(ticket_id),
            occurred_at,
        })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        // The shared secret travels in a header: never kept.
        &["content-type", "user-agent"]
    }

    /// `{"event": "intake-canary", "ticket": {"id", "channel": "api", …}}`, authenticated as the
    /// source's `auth` says (Gorgias does not sign).
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let at = spec.at.to_rfc3339();
        let body = canary::marked(
            spec,
            serde_json::json!({
                "event": "intake-canary",
                "ticket": {
                    "id": spec.id,
                    "channel": "api",
                    "created_datetime": at,
                    "updated_datetime": at,
                },
            }),
        );
        let (name, value) = sign(&self.auth, secret);
        SignedRequest::json(&body, &[(name.as_str(), value)])
    }
}
