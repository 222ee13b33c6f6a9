//! Any sender that signs with one HMAC header: `header: prefix + encode(HMAC(secret, body))`,
//! configured per source, with the event's fields found by JSON pointers.
//!
//! Without an event id the dedupe key is the SHA-256 of the body, so an exact re-send is a
//! duplicate and anything else is a new event.
//!
//! Backfill speaks a small protocol that any system can implement (documented in
//! `docs/connectors/generic.md` and in [`backfill`]).

pub mod backfill;
#[cfg(test)]
mod tests;

pub use backfill::GenericBackfill;

use hmac::{Hmac, Mac};
use intake_core::config::{
    GenericFields, GenericSignature, HmacAlgorithm, SignatureEncoding, SourceKind,
};
use intake_core::event::{Channel, NormalizedEvent};
use intake_core::signature::constant_time_eq;
use intake_core::Timestamp;
use std::borrow::Cow;
use std::fmt;

use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::Digest;

use crate::canary::{self, CanarySpec, SignedRequest};
use crate::input;
use crate::lax::scalar_text;
use crate::{decode_hex, Connector, Incoming, ParseError, VerifyError};

/// The configurable HMAC connector.
#[derive(Debug, Clone)]
pub struct GenericConnector {
    signature: GenericSignature,
    header: String,
    fields: GenericFields,
}

impl GenericConnector {
    /// A connector for this scheme and field layout.
    pub fn new(signature: GenericSignature, fields: GenericFields) -> Self {
        let header = signature.header.to_ascii_lowercase();
        GenericConnector {
            signature,
            header,
            fields,
        }
    }

    /// Signs a body as a sender using this scheme would (for fakes and tests).
    pub fn sign(&self, secret: &str, body: &[u8]) -> String {
        let mac = digest(self.signature.algorithm, secret.as_bytes(), body);
        let encoded = match self.signature.encoding {
            SignatureEncoding::Hex => hex::encode(mac),
            SignatureEncoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(mac)
            }
        };
        format!(
            "{}{}",
            self.signature.prefix.as_deref().unwrap_or(""),
            encoded
        )
    }
}

fn digest(alg: HmacAlgorithm, key: &[u8], body: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
        match <M as hmac::digest::KeyInit>::new_from_slice(key) {
            Ok(mut m) => {
                m.update(body);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    }
    match alg {
        HmacAlgorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, body),
        HmacAlgorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, body),
        HmacAlgorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, body),
    }
}

/// Sets `value` at a JSON pointer (RFC 6901) of `root`, creating the objects on the way; a
/// pointer through something that is not an object (or the root itself) is left unset.
fn set_at_pointer(root: &mut serde_json::Value, pointer: &str, value: serde_json::Value) {
    let Some(path) = pointer.strip_prefix('/') else {
        return;
    };
    let tokens: Vec<String> = path
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut at = root;
    for token in parents {
        let Some(map) = at.as_object_mut() else {
            return;
        };
        at = map
            .entry(token.clone())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
    }
    if let Some(map) = at.as_object_mut() {
        map.insert(last.clone(), value);
    }
}

/// The text at a JSON pointer: a string, or a number exactly as written.
fn text_at(root: &RawValue, pointer: &Option<String>) -> Option<String> {
    let raw = at_pointer(root, pointer.as_deref()?)?;
    scalar_text(raw)
        .ok()
        .flatten()
        .filter(|s| !s.is_empty())
        .map(|s| s.into_owned())
}

/// The value at a JSON pointer (RFC 6901), as [`serde_json::Value::pointer`] finds it (the
/// last of duplicate keys; array indices without a sign or leading zeros), but read from the
/// raw text level by level, so that numbers are never converted to floats.
fn at_pointer<'a>(root: &'a RawValue, pointer: &str) -> Option<&'a RawValue> {
    if pointer.is_empty() {
        return Some(root);
    }
    let mut at = root;
    for token in pointer.strip_prefix('/')?.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let mut de = serde_json::Deserializer::from_str(at.get());
        at = serde::Deserializer::deserialize_any(&mut de, Member(&token)).ok()??;
    }
    Some(at)
}

/// Finds one member of an object (by key) or of an array (by index).
struct Member<'t>(&'t str);

impl<'de> Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let index = match self.0.as_bytes() {
            [b'0'] => Some(0),
            [b'1'..=b'9', ..] => self.0.parse::<usize>().ok(),
            _ => None,
        };
        let mut found = None;
        let mut i = 0usize;
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if Some(i) == index {
                found = Some(element);
            }
            i += 1;
        }
        Ok(found)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The event's time at the `occurred_at` pointer: an RFC 3339 string or Unix seconds (a JSON
/// number); absent when missing or unreadable, refused when out of range.
fn time_at(root: &RawValue, pointer: Option<&str>) -> Result<Option<Timestamp>, ParseError> {
    let Some(raw) = pointer.and_then(|p| at_pointer(root, p)) else {
        return Ok(None);
    };
    let field = pointer.unwrap_or_default();
    match (
        raw.get().as_bytes().first(),
        scalar_text(raw).ok().flatten(),
    ) {
        (Some(b'"'), Some(text)) => input::rfc3339(field, Some(&text)),
        (Some(_), Some(number)) => input::unix_seconds(field, Some(&number)),
        _ => Ok(None),
    }
}

impl Connector for GenericConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Generic
    }

    fn verify(&self, req: &Incoming<'_>, secrets: &[String]) -> Result<(), VerifyError> {
        let name = &self.signature.header;
        let value = req
            .header(&self.header)
            .ok_or_else(|| VerifyError::MissingHeader(name.clone()))?;
        let prefix = self.signature.prefix.as_deref().unwrap_or("");
        let encoded = value
            .trim()
            .strip_prefix(prefix)
            .ok_or_else(|| VerifyError::Malformed {
                header: name.clone(),
                why: format!("expected the prefix `{prefix}`"),
            })?;
        let given = match self.signature.encoding {
            SignatureEncoding::Hex => decode_hex(encoded),
            SignatureEncoding::Base64 => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            }
        }
        .ok_or_else(|| VerifyError::Malformed {
            header: name.clone(),
            why: "not the configured encoding".into(),
        })?;
        let mut ok = false;
        for secret in secrets {
            ok |= constant_time_eq(
                &digest(self.signature.algorithm, secret.as_bytes(), req.body),
                &given,
            );
        }
        if ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }

    fn read_event(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        // Read as raw text (which also checks the whole body is JSON) and looked into by
        // pointer: building a `Value` would turn numbers beyond `u64` into rounded floats.
        let v: &RawValue =
            serde_json::from_slice(req.body).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let f = &self.fields;
        let sor_event_id = text_at(v, &f.event_id);
        let raw_channel = text_at(v, &f.channel);
        let occurred_at = time_at(v, f.occurred_at.as_deref())?;
        let dedupe_key = match &sor_event_id {
            Some(id) => format!("event:{id}"),
            None => format!("sha256:{}", hex::encode(sha2::Sha256::digest(req.body))),
        };
        Ok(NormalizedEvent {
            sor_event_id,
            dedupe_key,
            event_type: text_at(v, &f.event_type).unwrap_or_else(|| "unknown".into()),
            channel: raw_channel
                .as_deref()
                .map(Channel::normalize)
                .unwrap_or(Channel::Other),
            raw_channel,
            object_type: None,
            object_id: text_at(v, &f.object_id),
            conversation_id: text_at(v, &f.conversation_id),
            occurred_at,
        })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent"]
    }

    /// A JSON object with the canary's values at the source's configured pointers (event id,
    /// type `intake.canary`, channel `other`, time, object id), signed with the source's
    /// scheme.
    fn canary(&self, spec: &CanarySpec<'_>, secret: &str) -> SignedRequest {
        let mut body = canary::marked(spec, serde_json::json!({}));
        let f = &self.fields;
        let values = [
            (&f.event_id, serde_json::json!(spec.id)),
            (&f.event_type, serde_json::json!(canary::event_type())),
            (&f.channel, serde_json::json!("other")),
            (&f.occurred_at, serde_json::json!(spec.at.to_rfc3339())),
            (&f.object_id, serde_json::json!(spec.id)),
        ];
        for (pointer, value) in values {
            if let Some(p) = pointer {
                set_at_pointer(&mut body, p, value);
            }
        }
        let bytes = body.to_string();
        let signature = self.sign(secret, bytes.as_bytes());
        SignedRequest::json(&body, &[(self.header.as_str(), signature)])
    }
}
