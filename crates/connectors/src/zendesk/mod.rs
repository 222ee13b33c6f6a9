//! Zendesk event-subscribed webhooks.
//!
//! Zendesk signs each request with `X-Zendesk-Webhook-Signature` =
//! `base64(HMAC-SHA256(secret, timestamp + raw body))`, where `timestamp` is the exact text of
//! `X-Zendesk-Webhook-Signature-Timestamp` (ISO 8601, e.g. `2024-04-17T17:18:10Z`) and there is
//! no separator. The timestamp must be within the source's `tolerance` of intake's clock, in
//! either direction, so a captured request cannot be replayed later.
//! (<https://developer.zendesk.com/documentation/webhooks/verifying/>)
//!
//! The envelope (<https://developer.zendesk.com/api-reference/webhooks/event-types/webhook-event-types/>):
//! `{"type":"zen:event-type:ticket.comment_added","account_id","id","time",
//! "zendesk_event_version","subject":"zen:ticket:5158","detail":{ticket…,"via":{"channel"}},
//! "event":{"comment":{"id",…}}}`.
//!
//! Dedupe keys are derived from the object where a backfill can find the same object in the
//! API, and from Zendesk's event id otherwise:
//! * `ticket.created` → `ticket:{ticket id}:created`
//! * `ticket.comment_added` → `comment:{comment id}:added` (comment ids are account-wide)
//! * every other event → `event:{id}` (a status, tag or field change is not recoverable from
//!   the API's current tickets, and two changes of one update share a timestamp, so only
//!   Zendesk's own id tells them apart).
//!
//! Webhooks connected to a trigger or automation carry the admin's own JSON instead of this
//! envelope; they are accepted as event type `zendesk.trigger` keyed on the body's SHA-256.

pub mod backfill;
#[cfg(test)]
mod tests;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use intake_core::config::SourceKind;
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::signature::{constant_time_eq, hmac_sha256};
use intake_core::Timestamp;
use serde::Deserialize;
use sha2::Digest;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::lax::{self, Lax, Obj};
use crate::{Connector, Incoming, ParseError, VerifyError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-zendesk-webhook-signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-zendesk-webhook-signature-timestamp";
/// The webhook's id header.
pub const WEBHOOK_ID_HEADER: &str = "x-zendesk-webhook-id";
/// The invocation's id header (one per attempt of one event).
pub const INVOCATION_ID_HEADER: &str = "x-zendesk-webhook-invocation-id";
/// The account id header.
pub const ACCOUNT_ID_HEADER: &str = "x-zendesk-account-id";

/// The event type given to trigger and automation webhooks, which have no `type`.
pub const TRIGGER_EVENT_TYPE: &str = "zendesk.trigger";

/// The Zendesk connector.
#[derive(Debug, Clone, Copy)]
pub struct ZendeskConnector {
    tolerance: Duration,
}

impl ZendeskConnector {
    /// A connector accepting signed timestamps at most `tolerance` away from intake's clock.
    pub fn new(tolerance: Duration) -> Self {
        ZendeskConnector { tolerance }
    }
}

impl Default for ZendeskConnector {
    fn default() -> Self {
        ZendeskConnector::new(Duration::from_secs(300))
    }
}

/// Signs a body as Zendesk does: `base64(HMAC-SHA256(secret, timestamp + body))`, where
/// `timestamp` is the text sent in `X-Zendesk-Webhook-Signature-Timestamp`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    BASE64.encode(hmac_sha256(
        secret.as_bytes(),
        &[timestamp.as_bytes(), body],
    ))
}

/// `2024-04-17T17:18:10Z`: an instant as Zendesk writes its signature timestamp (whole
/// seconds, UTC).
fn seconds_text(t: Timestamp) -> String {
    let ms = t.to_rfc3339();
    match ms.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => ms,
    }
}

/// Maps Zendesk's `via.channel` onto the normalized vocabulary. Zendesk's `web` is the web
/// form (not a chat), and `api`, `rule`, `mobile`… are not conversations' media, so they are
/// `other`. (<https://developer.zendesk.com/documentation/ticketing/reference-guides/via-object-reference/>)
pub fn channel(raw: &str) -> Channel {
    match raw.to_ascii_lowercase().as_str() {
        "email" | "mail" => Channel::Email,
        "chat"
        | "chat_transcript"
        | "native_messaging"
        | "messaging"
        | "mobile_sdk"
        | "web_widget"
        | "sunshine_conversations_api" => Channel::Chat,
        "sms" | "text" | "whatsapp" => Channel::Sms,
        "voice" | "phone" | "phone_call" | "voicemail" => Channel::Voice,
        "facebook" | "facebook_post" | "facebook_message" | "twitter" | "twitter_dm"
        | "twitter_favorite" | "instagram_dm" | "instagram" | "line" | "wechat" => Channel::Social,
        "web" | "web_form" | "web_service" | "api" | "mobile" | "rule" | "system"
        | "any_channel" | "closed_ticket" | "ticket_sharing" | "help_center" => Channel::Other,
        other => Channel::normalize(other),
    }
}

// The envelope, read with borrowed strings and only the fields intake uses.
#[derive(Deserialize, Default)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
    #[serde(borrow, default)]
    time: Lax<'a>,
    #[serde(borrow, default)]
    subject: Lax<'a>,
    #[serde(borrow, default)]
    detail: Obj<Detail<'a>>,
    #[serde(borrow, default)]
    event: Obj<Event<'a>>,
}

#[derive(Deserialize, Default)]
struct Detail<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    created_at: Lax<'a>,
    #[serde(borrow, default)]
    updated_at: Lax<'a>,
    #[serde(borrow, default)]
    via: Obj<Via<'a>>,
}

#[derive(Deserialize, Default)]
struct Via<'a> {
    #[serde(borrow, default)]
    channel: Lax<'a>,
}

#[derive(Deserialize, Default)]
struct Event<'a> {
    #[serde(borrow, default)]
    comment: Obj<Comment<'a>>,
}

#[derive(Deserialize, Default)]
struct Comment<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
}

fn envelope_error(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "zendesk",
        why: why.into(),
    }
}

/// Parses a body as the Zendesk connector does (used by the backfill client to describe the
/// envelopes it builds).
pub fn parse_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    crate::input::policed(body, read_body)
}

/// Reads the envelope of a body that passed the input policy.
fn read_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    let env: Envelope<'_> = lax::object(body, "zendesk")?;
    let Some(event_type) = env.type_.get() else {
        // A trigger or automation webhook: the admin's own JSON, with nothing to key on but
        // its bytes (an exact re-send is a duplicate, anything else a new event).
        return Ok(NormalizedEvent {
            sor_event_id: None,
            dedupe_key: format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))),
            event_type: TRIGGER_EVENT_TYPE.to_string(),
            channel: Channel::Other,
            raw_channel: None,
            object_type: None,
            object_id: None,
            conversation_id: None,
            occurred_at: None,
        });
    };
    let sor_event_id = env.id.get().map(str::to_string);
    let action = event_type
        .strip_prefix("zen:event-type:")
        .unwrap_or(event_type);
    let detail = env.detail.get();

    // `subject` is `zen:{object}:{id}`; ticket events name the ticket there and in `detail.id`.
    let (subject_kind, subject_id) = env
        .subject
        .get()
        .and_then(|s| s.strip_prefix("zen:"))
        .and_then(|s| s.split_once(':'))
        .map_or((None, None), |(k, id)| {
            (Some(k), Some(id).filter(|i| !i.is_empty()))
        });
    let is_ticket = subject_kind == Some("ticket") || action.starts_with("ticket.");
    let ticket_id = if is_ticket {
        subject_id
            .filter(|_| subject_kind == Some("ticket"))
            .or_else(|| detail.and_then(|d| d.id.get()))
    } else {
        None
    };
    let comment_id = env
        .event
        .get()
        .and_then(|e| e.comment.get())
        .and_then(|c| c.id.get());

    let (object_type, object_id) = match (action, comment_id) {
        ("ticket.comment_added", Some(c)) => (Some("comment"), Some(c)),
        _ if is_ticket => (Some("ticket"), ticket_id),
        _ => (subject_kind, subject_id),
    };

    let dedupe_key = match (action, ticket_id, comment_id) {
        ("ticket.created", Some(t), _) => format!("ticket:{t}:created"),
        ("ticket.comment_added", _, Some(c)) => format!("comment:{c}:added"),
        _ => match &sor_event_id {
            Some(id) => format!("event:{id}"),
            None => return Err(envelope_error("no event `id`")),
        },
    };

    let raw_channel = detail
        .and_then(|d| d.via.get())
        .and_then(|v| v.channel.get())
        .map(str::to_string);
    let channel = raw_channel.as_deref().map_or(Channel::Other, channel);

    let (occurred_field, occurred_raw) = env
        .time
        .get()
        .map(|t| ("time", t))
        .or_else(|| {
            detail.and_then(|d| match action {
                "ticket.created" => d.created_at.get().map(|t| ("detail.created_at", t)),
                _ => d.updated_at.get().map(|t| ("detail.updated_at", t)),
            })
        })
        .unzip();
    let occurred_at = input::rfc3339(occurred_field.unwrap_or_default(), occurred_raw)?;

    Ok(NormalizedEvent {
        sor_event_id,
        dedupe_key,
        event_type: event_type.to_string(),
        channel,
        raw_channel,
        object_type: object_type.map(str::to_string),
        object_id: object_id.map(str::to_string),
        conversation_id: ticket_id.map(str::to_string),
        occurred_at,
    })
}

impl Connector for ZendeskConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Zendesk
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        let signature = req
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| VerifyError::MissingHeader("X-Zendesk-Webhook-Signature".into()))?;
        let timestamp = req.header(TIMESTAMP_HEADER).ok_or_else(|| {
            VerifyError::MissingHeader("X-Zendesk-Webhook-Signature-Timestamp".into())
        })?;
        let given = BASE64
            .decode(signature.trim())
            .map_err(|_| VerifyError::Malformed {
                header: "X-Zendesk-Webhook-Signature".into(),
                why: "expected the base64 HMAC-SHA256 of timestamp + body".into(),
            })?;
        let signed_at =
            Timestamp::parse_rfc3339(timestamp.trim()).map_err(|_| VerifyError::Malformed {
                header: "X-Zendesk-Webhook-Signature-Timestamp".into(),
                why: "expected an ISO 8601 time such as 2024-04-17T17:18:10Z".into(),
            })?;
        let skew_ms = req.now.as_millis().saturating_sub(signed_at.as_millis());
        let tolerance_ms = i64::try_from(self.tolerance.as_millis()).unwrap_or(i64::MAX);
        if skew_ms.unsigned_abs() > tolerance_ms.unsigned_abs() {
            return Err(VerifyError::StaleTimestamp {
                skew_secs: skew_ms / 1000,
                tolerance_secs: self.tolerance.as_secs(),
            });
        }
        let mut ok = false;
        // Every secret is checked (no early exit), so timing does not reveal which one matched.
        // The timestamp is signed as sent, not as parsed.
        for secret in secrets {
            let expected = hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), req.body]);
            ok |= constant_time_eq(&expected, &given);
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
        &[
            "content-type",
            "user-agent",
            WEBHOOK_ID_HEADER,
            INVOCATION_ID_HEADER,
            ACCOUNT_ID_HEADER,
        ]
    }

    /// `{"type": "zen:event-type:intake.canary", "id", "time", "subject":
    /// "zen:intake_canary:{id}", …}`, signed as Zendesk signs: base64 HMAC-SHA256 of the
    /// timestamp header's text followed by the body.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let body = canary::marked(
            spec,
            serde_json::json!({
                "type": format!("zen:event-type:{}", canary::event_type()),
                "account_id": 0,
                "id": spec.id,
                "time": spec.at.to_rfc3339(),
                "zendesk_event_version": "2022-11-06",
                "subject": format!("zen:intake_canary:{}", spec.id),
                "detail": {"id": spec.id},
                "event": {},
            }),
        );
        // Zendesk's timestamp header is to the second, without fractions.
        let timestamp = seconds_text(spec.at);
        let bytes = body.to_string();
        SignedRequest::json(
            &body,
            &[
                ("user-agent", "Zendesk Webhook".to_string()),
                (SIGNATURE_HEADER, sign(secret, &timestamp, bytes.as_bytes())),
                (TIMESTAMP_HEADER, timestamp),
            ],
        )
    }
}
