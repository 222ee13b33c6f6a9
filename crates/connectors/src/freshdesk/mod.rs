//! Freshdesk: webhooks come from automation rules (Ticket creation, Ticket updates / Observer)
//! whose "Trigger webhook" action POSTs a JSON body the administrator writes with placeholders.
//! Freshdesk does not sign them; the rule sends a shared secret in a custom header or as Basic
//! authentication, checked as the source's `auth` says (see [`crate::unsigned`]).
//!
//! intake documents one body (the legacy `freshdesk_webhook` envelope, the one Freshdesk's own
//! "simple" content mode used and that integrations such as Zulip's still ask for):
//!
//! ```json
//! {"freshdesk_webhook": {
//!   "triggered_event": "{{triggered_event}}",
//!   "ticket_id": "{{ticket.id}}",
//!   "ticket_subject": "{{ticket.subject}}",
//!   "ticket_status": "{{ticket.status}}",
//!   "ticket_priority": "{{ticket.priority}}",
//!   "ticket_source": "{{ticket.source}}",
//!   "ticket_type": "{{ticket.ticket_type}}",
//!   "ticket_url": "{{ticket.url}}",
//!   "ticket_created_at": "{{ticket.created_on}}",
//!   "ticket_updated_at": "{{ticket.modified_on}}",
//!   "requester_email": "{{ticket.requester.email}}"
//! }}
//! ```
//!
//! A body with the same fields at the top level (no envelope) is read too.
//!
//! There is no event id. `{{triggered_event}}` renders as `{ticket_action:created}`,
//! `{status:{from:2,to:3}}`, `{note_type:public}`, … (not JSON: no quotes); it names the event:
//! `ticket.created`, `ticket.status_changed`, `ticket.note_added`, `ticket.<action>` for other
//! ticket actions, `ticket.updated` when it is absent. The dedupe key is derived from the ticket
//! alone, because that is all a backfill reads from the API: `ticket:{id}:created` for a
//! creation, `ticket:{id}:updated:{updated_at}` (to the second, UTC) for anything else. Two rules
//! fired by the same change of a ticket therefore make one event, whose type is the first's.
//!
//! The channel is the ticket's source, a number (`1` Email, `2` Portal, `3` Phone, `4` Forum,
//! `5` Twitter, `6` Facebook, `7` Chat, `8` MobiHelp, `9` Feedback Widget, `10` Outbound Email,
//! `11` Ecommerce, `12` Bot, `13` WhatsApp — the choices of Freshdesk's `source` ticket field)
//! or its name.

pub mod backfill;
#[cfg(test)]
mod tests;

use intake_core::config::{SharedSecretAuth, SourceKind};
use intake_core::event::{Channel, NormalizedEvent};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::error::Category;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::unsigned::{self, body_digest, canonical_secs, parse_time, starts_object, Lax};
use crate::{Connector, Incoming, ParseError, VerifyError};

pub use backfill::FreshdeskBackfill;

/// The Freshdesk connector.
#[derive(Debug, Clone, Default)]
pub struct FreshdeskConnector {
    auth: SharedSecretAuth,
}

impl FreshdeskConnector {
    /// A connector checking requests as `auth` says.
    pub fn new(auth: SharedSecretAuth) -> Self {
        FreshdeskConnector { auth }
    }
}

/// The header name and value a Freshdesk rule configured with `auth` and `secret` sends.
pub fn sign(auth: &SharedSecretAuth, secret: &str) -> (String, String) {
    unsigned::sign(auth, secret)
}

/// The source codes of Freshdesk's `source` ticket field and the names intake reports them by.
const SOURCES: [(u32, &str); 13] = [
    (1, "email"),
    (2, "portal"),
    (3, "phone"),
    (4, "forum"),
    (5, "twitter"),
    (6, "facebook"),
    (7, "chat"),
    (8, "mobihelp"),
    (9, "feedback_widget"),
    (10, "outbound_email"),
    (11, "ecommerce"),
    (12, "bot"),
    (13, "whatsapp"),
];

/// The raw channel intake reports for a rendered `{{ticket.source}}`: the source's name for a
/// known code, the lower-cased name (spaces as `_`) for a name, the number for unknown codes.
pub fn source_name(raw: &str) -> String {
    let raw = raw.trim();
    if let Ok(code) = raw.parse::<u32>() {
        return SOURCES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or_else(|| code.to_string(), |(_, n)| (*n).to_string());
    }
    raw.to_ascii_lowercase().replace([' ', '-'], "_")
}

/// The normalized channel of a source name (as [`source_name`] writes it).
pub fn source_channel(name: &str) -> Channel {
    match name {
        "email" | "outbound_email" => Channel::Email,
        "phone" => Channel::Voice,
        "chat" | "mobihelp" | "bot" => Channel::Chat,
        "whatsapp" | "sms" => Channel::Sms,
        "twitter" | "facebook" | "forum" | "instagram" => Channel::Social,
        // The portal and the feedback widget are web forms: asynchronous, like e-mail, but not
        // e-mail; they are reported as `other` rather than as chat.
        _ => Channel::Other,
    }
}

/// The braces of a rendered `{{triggered_event}}` (named, so that tools counting braces in the
/// source read `event_type` at its real length).
const OPEN_BRACE: char = '{';
const CLOSE_BRACE: char = '}';

/// The event type and whether it is a creation, from a rendered `{{triggered_event}}`.
pub fn event_type(triggered_event: Option<&str>) -> (String, bool) {
    let Some(raw) = triggered_event else {
        return ("ticket.updated".into(), false);
    };
    let inner = raw
        .trim()
        .trim_start_matches(OPEN_BRACE)
        .trim_end_matches(CLOSE_BRACE);
    let (key, value) = match inner.split_once(':') {
        Some((k, v)) => (k.trim(), v.trim().trim_start_matches(OPEN_BRACE).trim()),
        None => (inner.trim(), ""),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let lower_key = key.to_ascii_lowercase();
    let lower_value = value.to_ascii_lowercase();
    match lower_key.as_str() {
        "ticket_action" if word(&lower_value) => {
            let created = lower_value == "created";
            (format!("ticket.{lower_value}"), created)
        }
        "note_type" => ("ticket.note_added".into(), false),
        k if word(k) && k != "ticket_action" => (format!("ticket.{k}_changed"), false),
        _ => ("ticket.updated".into(), false),
    }
}

fn envelope(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "freshdesk",
        why: why.into(),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    freshdesk_webhook: Option<Fields<'a>>,
}

// Only the fields intake uses, with borrowed strings; the rest of the body is skipped.
#[derive(Deserialize, Default)]
struct Fields<'a> {
    #[serde(borrow, default)]
    triggered_event: Lax<'a>,
    #[serde(borrow, default)]
    ticket_id: Lax<'a>,
    #[serde(borrow, default)]
    ticket_source: Lax<'a>,
    #[serde(borrow, default)]
    ticket_created_at: Lax<'a>,
    #[serde(borrow, default)]
    ticket_updated_at: Lax<'a>,
}

fn json_error(e: serde_json::Error) -> ParseError {
    match e.classify() {
        Category::Data => envelope(e.to_string()),
        _ => ParseError::NotJson(e.to_string()),
    }
}

impl Connector for FreshdeskConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Freshdesk
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
        let env: Envelope<'_> = serde_json::from_slice(req.body).map_err(json_error)?;
        let fields = match env.freshdesk_webhook {
            Some(f) => f,
            // The same fields without the envelope.
            None => serde_json::from_slice::<Fields<'_>>(req.body).map_err(json_error)?,
        };
        let ticket_id = fields
            .ticket_id
            .get()
            .ok_or_else(|| envelope("no `freshdesk_webhook.ticket_id`"))?
            .to_string();
        let (event_type, created) = event_type(fields.triggered_event.get());
        let created_raw = fields.ticket_created_at.get();
        let updated_raw = fields.ticket_updated_at.get();
        let created_at = input::within(
            "ticket_created_at",
            created_raw,
            created_raw.and_then(parse_time),
        )?;
        let updated_at = input::within(
            "ticket_updated_at",
            updated_raw,
            updated_raw.and_then(parse_time),
        )?;

        let dedupe_key = if created {
            format!("ticket:{ticket_id}:created")
        } else {
            match (updated_at, updated_raw) {
                (Some(t), _) => format!("ticket:{ticket_id}:updated:{}", canonical_secs(t)),
                // A time intake cannot read is still a version of the ticket.
                (None, Some(raw)) => format!("ticket:{ticket_id}:updated:{raw}"),
                // Without a version, only an identical body is the same event.
                (None, None) => format!(
                    "ticket:{ticket_id}:{event_type}:body-{}",
                    body_digest(req.body)
                ),
            }
        };
        let occurred_at = if created {
            created_at.or(updated_at)
        } else {
            updated_at.or(created_at)
        };
        let raw_channel = fields.ticket_source.get().map(source_name);
        let channel = raw_channel
            .as_deref()
            .map(source_channel)
            .unwrap_or(Channel::Other);

        Ok(NormalizedEvent {
            sor_event_id: None,
            dedupe_key,
            event_type,
            channel,
            raw_channel,
            object_type: Some("ticket".into()),
            object_id: Some(ticket_id.clone()),
            conversation_id: Some(ticket_id),
            occurred_at,
        })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        // The shared secret travels in a header: never kept.
        &["content-type", "user-agent"]
    }

    /// The documented `freshdesk_webhook` envelope, with `triggered_event`
    /// `{ticket_action:intake_canary}` (event type `ticket.intake_canary`) and the canary's id
    /// as ticket id, authenticated as the source's `auth` says (Freshdesk does not sign).
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let at = spec.at.to_rfc3339();
        let body = canary::marked(
            spec,
            serde_json::json!({
                "freshdesk_webhook": {
                    "triggered_event": "{ticket_action:intake_canary}",
                    "ticket_id": spec.id,
                    "ticket_subject": "intake canary",
                    "ticket_source": "other",
                    "ticket_created_at": at,
                    "ticket_updated_at": at,
                }
            }),
        );
        let (name, value) = sign(&self.auth, secret);
        SignedRequest::json(&body, &[(name.as_str(), value)])
    }
}
