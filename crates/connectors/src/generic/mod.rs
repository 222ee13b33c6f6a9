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
use serde_json::Value;
use sha2::Digest;

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

fn text_at(v: &Value, pointer: &Option<String>) -> Option<String> {
    let p = pointer.as_deref()?;
    match v.pointer(p)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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

    fn parse(&self, req: &Incoming<'_>) -> Result<NormalizedEvent, ParseError> {
        let v: Value =
            serde_json::from_slice(req.body).map_err(|e| ParseError::NotJson(e.to_string()))?;
        let f = &self.fields;
        let sor_event_id = text_at(&v, &f.event_id);
        let raw_channel = text_at(&v, &f.channel);
        let occurred_at = f
            .occurred_at
            .as_deref()
            .and_then(|p| v.pointer(p))
            .and_then(|t| match t {
                Value::String(s) => Timestamp::parse_rfc3339(s).ok(),
                Value::Number(n) => n.as_i64().map(|secs| Timestamp(secs.saturating_mul(1000))),
                _ => None,
            });
        let dedupe_key = match &sor_event_id {
            Some(id) => format!("event:{id}"),
            None => format!("sha256:{}", hex::encode(sha2::Sha256::digest(req.body))),
        };
        Ok(NormalizedEvent {
            sor_event_id,
            dedupe_key,
            event_type: text_at(&v, &f.event_type).unwrap_or_else(|| "unknown".into()),
            channel: raw_channel
                .as_deref()
                .map(Channel::normalize)
                .unwrap_or(Channel::Other),
            raw_channel,
            object_type: None,
            object_id: text_at(&v, &f.object_id),
            conversation_id: text_at(&v, &f.conversation_id),
            occurred_at,
        })
    }

    fn kept_headers(&self) -> &'static [&'static str] {
        &["content-type", "user-agent"]
    }
}
