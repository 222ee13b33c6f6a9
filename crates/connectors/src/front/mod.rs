//! Front: two webhook schemes behind one `X-Front-Signature` header, a setup challenge, and an
//! event log that the API serves too.
//!
//! * **Application webhooks** (a feature of a Front app) carry `X-Front-Request-Timestamp`
//!   (milliseconds) and `X-Front-Signature` = base64(HMAC-SHA256(app secret,
//!   `"{timestamp}:"` + raw body)). The timestamp must be within the source's `tolerance`
//!   (default 5 minutes, Front's own recommendation) of intake's clock, in either direction.
//!   When an app webhook is saved, Front sends a signed `{"type":"sync",…}` request with an
//!   `X-Front-Challenge` header, which [`Connector::handshake`] answers.
//!   <https://dev.frontapp.com/docs/application-webhooks>
//! * **Rule webhooks** (a rule action in Front's settings) carry only `X-Front-Signature` =
//!   base64(HMAC-SHA1(API secret, raw body)), with no timestamp.
//!   <https://dev.frontapp.com/docs/rule-webhooks>
//!
//! ## Which scheme a request is checked against
//!
//! The scheme is chosen by the presence of `X-Front-Request-Timestamp`: present, the request
//! must be a valid application webhook (a malformed timestamp is refused, never retried as a
//! rule webhook); absent, it must be a valid rule webhook. One source can then receive both
//! kinds (its `secrets` may hold the app secret and the API secret), and choosing by a header
//! opens no door: the two schemes sign different messages with different hash functions, so a
//! captured application signature can never pass as a rule signature (stripping the timestamp
//! header leaves a SHA-256 MAC of `"ts:"+body` where a SHA-1 MAC of `body` is required), and
//! neither can be produced without a configured secret. What a rule webhook lacks is replay
//! protection: a captured rule webhook can be sent again at any time. intake's answer is the
//! dedupe key: a replay carries the same event id, so it is stored once and delivered once.
//!
//! ## Envelopes and keys
//!
//! An application webhook is `{"type": "inbound", "authorization": {"id": "cmp_…"},
//! "payload": <event>}`; a rule webhook is the event itself. An event is Front's own resource
//! (`{"id": "evt_…", "type", "emitted_at", "conversation", "source", "target"}`), the same one
//! `GET /events` lists, so the dedupe key is `event:{evt id}` on both the webhook and the
//! backfill path. The channel is the type of the message the event is about (`email`, `sms`,
//! `whatsapp`, `front_chat`, `facebook`, …), or of the conversation's last message for events
//! about something else (comments, assignments). A body without an event id (the setup `sync`,
//! or a shape Front adds later) is still stored, keyed by the SHA-256 of the body.

pub mod backfill;
#[cfg(test)]
mod tests;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use intake_core::config::SourceKind;
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::signature::{constant_time_eq, hmac_sha256};
use intake_core::Timestamp;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::error::Category;
use sha2::Digest;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::lax::{Lax, Obj};
use crate::{Connector, Handshake, Incoming, ParseError, VerifyError};

pub use backfill::FrontBackfill;

/// The signature header of both schemes.
pub const SIGNATURE_HEADER: &str = "x-front-signature";
/// The timestamp header of application webhooks (milliseconds since the epoch).
pub const TIMESTAMP_HEADER: &str = "x-front-request-timestamp";
/// The header of the setup challenge.
pub const CHALLENGE_HEADER: &str = "x-front-challenge";

/// The Front connector.
#[derive(Debug, Clone, Copy)]
pub struct FrontConnector {
    tolerance: Duration,
}

impl Default for FrontConnector {
    fn default() -> Self {
        FrontConnector::new(Duration::from_secs(300))
    }
}

impl FrontConnector {
    /// A connector accepting application-webhook timestamps within `tolerance` of the clock.
    pub fn new(tolerance: Duration) -> Self {
        FrontConnector { tolerance }
    }
}

/// The `X-Front-Signature` of an application webhook sent at `timestamp_ms` (what goes in
/// `X-Front-Request-Timestamp`): base64(HMAC-SHA256(secret, "{timestamp_ms}:" + body)).
pub fn sign(secret: &str, timestamp_ms: i64, body: &[u8]) -> String {
    let ts = timestamp_ms.to_string();
    BASE64.encode(hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), b":", body]))
}

/// The `X-Front-Signature` of a rule webhook: base64(HMAC-SHA1(secret, body)).
pub fn sign_rule(secret: &str, body: &[u8]) -> String {
    BASE64.encode(hmac_sha1(secret.as_bytes(), body))
}

fn hmac_sha1(key: &[u8], body: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    match <Hmac<sha1::Sha1> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 20],
    }
}

impl Connector for FrontConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Front
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        let signature = req
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| VerifyError::MissingHeader("X-Front-Signature".into()))?;
        let given = BASE64
            .decode(signature.trim())
            .map_err(|_| VerifyError::Malformed {
                header: "X-Front-Signature".into(),
                why: "expected a base64 HMAC".into(),
            })?;
        // Presence, not readability, selects the scheme: a timestamp header with bytes that are
        // not text must not send the request down the rule path, which checks no timestamp.
        match req.headers.get(TIMESTAMP_HEADER) {
            Some(raw) => {
                let text = raw.to_str().map(str::trim).unwrap_or_default();
                let ts_ms: i64 = text
                    .parse()
                    .ok()
                    .filter(|_| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| VerifyError::Malformed {
                        header: "X-Front-Request-Timestamp".into(),
                        why: "expected milliseconds since the epoch".into(),
                    })?;
                let mut ok = false;
                // Every secret is checked (no early exit), so timing does not reveal which
                // one matched.
                for secret in secrets {
                    let expected =
                        hmac_sha256(secret.as_bytes(), &[text.as_bytes(), b":", req.body]);
                    ok |= constant_time_eq(&expected, &given);
                }
                if !ok {
                    return Err(VerifyError::Mismatch);
                }
                // Checked after the signature, so "stale" always names an authentic request
                // that is a replay or comes from a clock far off, never a forgery.
                let sent = Timestamp(ts_ms);
                let skew = if sent > req.now {
                    sent.since(req.now)
                } else {
                    req.now.since(sent)
                };
                if skew > self.tolerance {
                    let secs = skew.as_secs() as i64;
                    return Err(VerifyError::StaleTimestamp {
                        skew_secs: if sent > req.now { -secs } else { secs },
                        tolerance_secs: self.tolerance.as_secs(),
                    });
                }
                Ok(())
            }
            None => {
                let mut ok = false;
                for secret in secrets {
                    ok |= constant_time_eq(&hmac_sha1(secret.as_bytes(), req.body), &given);
                }
                if ok {
                    Ok(())
                } else {
                    Err(VerifyError::Mismatch)
                }
            }
        }
    }

    fn handshake(&self, req: &Incoming<'_>) -> Option<Handshake> {
        // Front accepts the challenge echoed as JSON `{"challenge": …}` (also as plain text or
        // form-encoded); JSON is what Front's own sample application answers:
        // https://github.com/dugjason/front-webhook-application (handle_validation_request.ts).
        let challenge = req.headers.get(CHALLENGE_HEADER)?;
        let challenge = String::from_utf8_lossy(challenge.as_bytes());
        let body = serde_json::to_vec(&serde_json::json!({ "challenge": challenge })).ok()?;
        Some(Handshake {
            status: 200,
            content_type: "application/json",
            body,
        })
    }

    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        read_body(req.body)
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent"]
    }

    /// An application webhook, `{"type": "intake_canary", "authorization", "payload":
    /// {"id", "type", "emitted_at"}}`, signed as Front signs those: base64 HMAC-SHA256 of
    /// `"{timestamp ms}:"` and the body, with the timestamp in its header.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let body = canary::marked(
            spec,
            serde_json::json!({
                "type": "intake_canary",
                "authorization": {"id": "intake"},
                "payload": {
                    "_links": {},
                    "id": spec.id,
                    "type": "intake_canary",
                    "emitted_at": spec.at.as_secs(),
                },
            }),
        );
        let bytes = body.to_string();
        let ms = spec.at.as_millis();
        SignedRequest::json(
            &body,
            &[
                (TIMESTAMP_HEADER, ms.to_string()),
                (SIGNATURE_HEADER, sign(secret, ms, bytes.as_bytes())),
            ],
        )
    }
}

fn envelope(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "front",
        why: why.into(),
    }
}

/// Parses a Front webhook body (application envelope or rule webhook).
pub(crate) fn parse_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    crate::input::policed(body, read_body)
}

/// Reads the envelope of a body that passed the input policy.
fn read_body(body: &[u8]) -> Result<NormalizedEvent, ParseError> {
    let (event, outer_type) = unwrap_event(read_envelope(body)?);
    let event_type = outer_type
        .get()
        .or_else(|| event.type_.get())
        .ok_or_else(|| envelope("no event type (`type`)"))?
        .to_string();
    let sor_event_id = event.id.get().map(str::to_string);
    let target = event.target.0.unwrap_or_default();
    let object_type = target
        .meta
        .0
        .and_then(|m| m.type_.get().map(str::to_string));
    let data = target.data.0.unwrap_or_default();
    let object_id = data.id.get().map(str::to_string);
    let conversation = event.conversation.0.unwrap_or_default();
    let conversation_id = conversation.id.get().map(str::to_string);
    let raw_channel = raw_channel(object_type.as_deref(), &data, &conversation);
    let channel = raw_channel
        .as_deref()
        .map(channel_of)
        .unwrap_or(Channel::Other);
    let occurred_at = input::unix_seconds("emitted_at", event.emitted_at.get())?;
    let dedupe_key = match &sor_event_id {
        Some(id) => format!("event:{id}"),
        None => format!("sha256:{}", hex::encode(sha2::Sha256::digest(body))),
    };
    Ok(NormalizedEvent {
        sor_event_id,
        dedupe_key,
        event_type,
        channel,
        raw_channel,
        object_type,
        object_id,
        conversation_id,
        occurred_at,
    })
}

/// The byte a JSON object starts with. Named here rather than written in the function below,
/// where line-based brace counters (function-length checks) would take it for an open block.
const OBJECT_START: u8 = b'{';

/// Reads the body as Front's envelope: a JSON object (anything else is refused), with the
/// fields intake uses.
fn read_envelope(body: &[u8]) -> Result<Envelope<'_>, ParseError> {
    // A derived struct would also accept a JSON array, filling fields by position.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&OBJECT_START) {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => envelope("expected a JSON object"),
            Err(e) => ParseError::NotJson(e.to_string()),
        });
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        Category::Data => envelope(e.to_string()),
        _ => ParseError::NotJson(e.to_string()),
    })
}

/// The event and the envelope's own type: an application webhook wraps the event in
/// `payload` (its `type` is the envelope's, e.g. `inbound`); a rule webhook is the event.
fn unwrap_event(env: Envelope<'_>) -> (Event<'_>, Lax<'_>) {
    match env.payload.0 {
        Some(event) => (event, env.type_),
        None => (
            Event {
                id: env.id,
                type_: env.type_,
                emitted_at: env.emitted_at,
                conversation: env.conversation,
                target: env.target,
            },
            Lax::default(),
        ),
    }
}

/// The type of the message the event is about, or of the conversation's last message for
/// events about something else (comments, assignments).
fn raw_channel(
    object_type: Option<&str>,
    data: &Typed<'_>,
    conversation: &Conversation<'_>,
) -> Option<String> {
    match object_type {
        Some("message") => data.type_.get(),
        _ => None,
    }
    .or_else(|| {
        conversation
            .last_message
            .0
            .as_ref()
            .and_then(|m| m.type_.get())
    })
    .map(str::to_string)
}

/// Maps a Front message type (or channel type) onto the normalized vocabulary.
pub fn channel_of(raw: &str) -> Channel {
    match raw.to_ascii_lowercase().as_str() {
        "email" | "custom_email" => Channel::Email,
        "sms" | "whatsapp" | "yalo_wha" | "twilio" => Channel::Sms,
        "front_chat" | "frontchat" | "intercom" | "smooch" | "chat" => Channel::Chat,
        "call" | "phone-call" | "phone_call" | "truly-call" | "truly" | "talkdesk" => {
            Channel::Voice
        }
        "tweet" | "tweet_dm" | "twitter" | "twitterdm" | "facebook" | "instagram" => {
            Channel::Social
        }
        "custom" | "googleplay" | "form" | "frontform" | "internal" => Channel::Other,
        other => Channel::normalize(other),
    }
}

// The envelope, read with borrowed strings and only the fields intake uses (parsing is on the
// hot path of every webhook). Objects are read with `Obj`, which takes anything that is not an
// object as absent: Front's `target.data` is an object for a message and an array for inboxes.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
    #[serde(borrow, default)]
    payload: Obj<Event<'a>>,
    // A rule webhook is the event itself: its fields are at the top level. (Listed here rather
    // than through `#[serde(flatten)]`, which would buffer the whole body first.)
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    emitted_at: Lax<'a>,
    #[serde(borrow, default)]
    conversation: Obj<Conversation<'a>>,
    #[serde(borrow, default)]
    target: Obj<Target<'a>>,
}

#[derive(Deserialize, Default)]
struct Event<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
    #[serde(borrow, default)]
    emitted_at: Lax<'a>,
    #[serde(borrow, default)]
    conversation: Obj<Conversation<'a>>,
    #[serde(borrow, default)]
    target: Obj<Target<'a>>,
}

#[derive(Deserialize, Default)]
struct Conversation<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    last_message: Obj<Typed<'a>>,
}

#[derive(Deserialize, Default)]
struct Target<'a> {
    #[serde(borrow, default, rename = "_meta")]
    meta: Obj<Typed<'a>>,
    #[serde(borrow, default)]
    data: Obj<Typed<'a>>,
}

#[derive(Deserialize, Default)]
struct Typed<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
}
