//! Kustomer: `X-Kustomer-Webhook-Signature` is the lowercase hex HMAC-SHA256 of the raw body,
//! keyed with the webhook's token. There is no timestamp, so no replay window to check.
//!
//! The envelope names the event in `name` (`kustomer.message.create`) and the object in
//! `data` (`type`, `id`, `attributes`). The dedupe key is derived from the object, not from the
//! webhook's own `id`, because a backfill reads objects from the API and never sees webhook
//! ids: `{type}:{id}:create` for creations, `{type}:{id}:update:{updatedAt}` for updates
//! (`updatedAt` rewritten as RFC 3339 UTC with milliseconds, `2026-11-27T10:00:00.000Z`, so a
//! webhook and an API response that write the same instant differently still agree).
//!
//! [`backfill`] reads the same objects back from Kustomer's REST API.

pub mod backfill;

use intake_core::config::SourceKind;
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::signature::{constant_time_eq, hmac_sha256};
use intake_core::Timestamp;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::error::Category;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::lax::Lax;
use crate::{decode_hex, Connector, Incoming, ParseError, VerifyError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-kustomer-webhook-signature";
/// The event-name header.
pub const EVENT_HEADER: &str = "x-kustomer-webhook-event";

/// The Kustomer connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct KustomerConnector;

/// Signs a body as Kustomer does (used by fakes and tests).
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
}

fn envelope(why: impl Into<String>) -> ParseError {
    ParseError::Envelope {
        kind: "kustomer",
        why: why.into(),
    }
}

// The envelope, read with borrowed strings and only the fields intake uses: parsing is on the
// hot path of every webhook, and skipping the rest of a 2 KB body is far cheaper than building
// a `serde_json::Value` of it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    name: Lax<'a>,
    #[serde(borrow, default, rename = "createdAt")]
    created_at: Lax<'a>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize, Default)]
struct Data<'a> {
    #[serde(borrow, default, rename = "type")]
    type_: Lax<'a>,
    #[serde(borrow, default)]
    id: Lax<'a>,
    #[serde(borrow, default)]
    attributes: Option<Attributes<'a>>,
    #[serde(borrow, default)]
    relationships: Option<Relationships<'a>>,
}

#[derive(Deserialize, Default)]
struct Relationships<'a> {
    #[serde(borrow, default)]
    conversation: Option<Related<'a>>,
}

#[derive(Deserialize, Default)]
struct Related<'a> {
    #[serde(borrow, default)]
    data: Option<RelatedData<'a>>,
}

#[derive(Deserialize, Default)]
struct RelatedData<'a> {
    #[serde(borrow, default)]
    id: Lax<'a>,
}

#[derive(Deserialize, Default)]
struct Attributes<'a> {
    #[serde(borrow, default)]
    channel: Lax<'a>,
    #[serde(borrow, default)]
    channels: Option<Vec<Lax<'a>>>,
    #[serde(borrow, default, rename = "firstMessageIn")]
    first_message_in: Option<FirstMessage<'a>>,
    #[serde(borrow, default, rename = "createdAt")]
    created_at: Lax<'a>,
    #[serde(borrow, default, rename = "updatedAt")]
    updated_at: Lax<'a>,
    #[serde(borrow, default)]
    rev: Lax<'a>,
}

#[derive(Deserialize, Default)]
struct FirstMessage<'a> {
    #[serde(borrow, default)]
    channel: Lax<'a>,
}

/// An instant as the dedupe key writes it: RFC 3339 UTC with milliseconds when `raw` parses,
/// `raw` itself otherwise (a key must never fail to exist because a time is odd).
fn canonical_time(raw: &str) -> String {
    match Timestamp::parse_rfc3339(raw) {
        Ok(t) => t.to_rfc3339(),
        Err(_) => raw.to_string(),
    }
}

impl Connector for KustomerConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Kustomer
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        let header = req
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| VerifyError::MissingHeader("X-Kustomer-Webhook-Signature".into()))?;
        let given = decode_hex(header).ok_or_else(|| VerifyError::Malformed {
            header: "X-Kustomer-Webhook-Signature".into(),
            why: "expected the hex HMAC-SHA256 of the body".into(),
        })?;
        let mut ok = false;
        // Every secret is checked (no early exit), so timing does not reveal which one matched.
        for secret in secrets {
            let expected = hmac_sha256(secret.as_bytes(), &[req.body]);
            ok |= constant_time_eq(&expected, &given);
        }
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        // A derived struct would also accept a JSON array, filling fields by position.
        if req.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
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
        let name = env
            .name
            .get()
            .or_else(|| req.header(EVENT_HEADER))
            .ok_or_else(|| envelope("no event name (`name`)"))?
            .to_string();
        let sor_event_id = env.id.get().map(str::to_string);
        let data = env.data.unwrap_or_default();
        let attrs = data.attributes.unwrap_or_default();
        let conversation_id = match data.type_.get() {
            Some("conversation") => data.id.get().map(str::to_string),
            _ => data
                .relationships
                .as_ref()
                .and_then(|r| r.conversation.as_ref())
                .and_then(|c| c.data.as_ref())
                .and_then(|d| d.id.get())
                .map(str::to_string),
        };
        let object_type = data.type_.get().map(str::to_string);
        let object_id = data.id.get().map(str::to_string);

        let raw_channel = attrs
            .channel
            .get()
            .or_else(|| attrs.channels.iter().flatten().find_map(Lax::get))
            .or_else(|| {
                attrs
                    .first_message_in
                    .as_ref()
                    .and_then(|m| m.channel.get())
            })
            .map(str::to_string);
        let channel = raw_channel
            .as_deref()
            .map(Channel::normalize)
            .unwrap_or(Channel::Other);

        let action = name.rsplit('.').next().unwrap_or(&name).to_string();
        let updated_at = attrs.updated_at.get();
        let created_at = attrs.created_at.get();
        let (occurred_field, occurred_raw) = match action.as_str() {
            "create" => created_at
                .map(|t| ("data.attributes.createdAt", t))
                .or(updated_at.map(|t| ("data.attributes.updatedAt", t))),
            _ => updated_at
                .map(|t| ("data.attributes.updatedAt", t))
                .or(created_at.map(|t| ("data.attributes.createdAt", t))),
        }
        .or_else(|| env.created_at.get().map(|t| ("createdAt", t)))
        .unzip();
        let occurred_at = input::rfc3339(occurred_field.unwrap_or_default(), occurred_raw)?;

        let dedupe_key = match (&object_type, &object_id) {
            (Some(t), Some(id)) if action == "create" => format!("{t}:{id}:create"),
            (Some(t), Some(id)) => {
                // Updates of one object are told apart by the object's own version: its
                // `updatedAt` (or `rev`), which the API returns too.
                let version = match updated_at {
                    Some(u) => canonical_time(u),
                    None => attrs
                        .rev
                        .get()
                        .or(sor_event_id.as_deref())
                        .unwrap_or_default()
                        .to_string(),
                };
                format!("{t}:{id}:{action}:{version}")
            }
            _ => match &sor_event_id {
                Some(id) => format!("event:{id}"),
                None => {
                    return Err(envelope(
                        "neither `data.type`/`data.id` nor `id` is present",
                    ))
                }
            },
        };

        Ok(NormalizedEvent {
            sor_event_id,
            dedupe_key,
            event_type: name,
            channel,
            raw_channel,
            object_type,
            object_id,
            conversation_id,
            occurred_at,
        })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent", EVENT_HEADER]
    }

    /// `{"id", "name": "intake.canary", "data": {"type": "canary", "id", "attributes"}, …}`,
    /// signed like every Kustomer webhook: hex HMAC-SHA256 of the body.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let at = spec.at.to_rfc3339();
        let body = canary::marked(
            spec,
            serde_json::json!({
                "id": spec.id,
                "name": canary::event_type(),
                "org": "intake",
                "data": {
                    "type": "canary",
                    "id": spec.id,
                    "attributes": {"createdAt": at, "updatedAt": at},
                },
                "createdAt": at,
            }),
        );
        let bytes = body.to_string();
        SignedRequest::json(
            &body,
            &[
                (EVENT_HEADER, canary::event_type().to_string()),
                (SIGNATURE_HEADER, sign(secret, bytes.as_bytes())),
            ],
        )
    }
}

#[cfg(test)]
mod tests;
