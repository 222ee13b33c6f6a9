//! The Standard Webhooks signature intake puts on every delivery, and the HMAC primitives the
//! connectors verify inbound signatures with.
//!
//! A delivery carries `webhook-id`, `webhook-timestamp` and `webhook-signature:
//! v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`. A destination secret written as
//! `whsec_<base64>` uses the decoded bytes as key (the Standard Webhooks convention); any other
//! secret is used as its UTF-8 bytes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A secret that is not usable as a signing key.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    /// `whsec_` was followed by something that is not base64.
    #[error("a `whsec_` secret must be followed by base64 (as Standard Webhooks secrets are)")]
    NotBase64,
    /// The secret is empty.
    #[error("the secret is empty")]
    Empty,
}

/// The key of a destination, used to sign what intake delivers.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Reads a secret as configured (`whsec_…` or plain text).
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let key = match secret.strip_prefix("whsec_") {
            Some(b64) => BASE64.decode(b64).map_err(|_| SecretError::NotBase64)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(SigningKey(key))
    }

    /// The `webhook-signature` header value for this message.
    pub fn sign(&self, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
        let ts = timestamp_secs.to_string();
        let mac = hmac_sha256(
            &self.0,
            &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
        );
        format!("v1,{}", BASE64.encode(mac))
    }

    /// Whether `header` (a space-separated list of `v1,<sig>`, as the spec allows during key
    /// rotation) holds a valid signature of this message.
    pub fn verify(&self, msg_id: &str, timestamp_secs: i64, body: &[u8], header: &str) -> bool {
        let expected = self.sign(msg_id, timestamp_secs, body);
        header
            .split_ascii_whitespace()
            .any(|candidate| constant_time_eq(candidate.as_bytes(), expected.as_bytes()))
    }
}

/// How far a signed message's `webhook-timestamp` may be from now, either way, as the
/// Standard Webhooks libraries allow: a captured message cannot be replayed later than this.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// Why a signed message (a handler's completion receipt) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageRefusal {
    /// A header is missing or is not what the scheme writes.
    #[error("`{0}` is missing or malformed")]
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance.
    #[error("`webhook-timestamp` is more than 5 minutes from the server's clock")]
    Stale,
    /// No signature verifies with the key.
    #[error("no signature in `webhook-signature` verifies with the destination's secret")]
    Forged,
}

/// Checks a Standard Webhooks message as a receiver does: `timestamp` (the header's text) within
/// [`TIMESTAMP_TOLERANCE_SECS`] of `now_secs`, and one of the `signatures` (the header's text)
/// made by one of `keys` (several during a rotation) over `"{msg_id}.{timestamp}.{body}"`.
pub fn verify_message(
    keys: &[SigningKey],
    msg_id: &str,
    timestamp: &str,
    now_secs: i64,
    body: &[u8],
    signatures: &str,
) -> Result<(), MessageRefusal> {
    if msg_id.is_empty() {
        return Err(MessageRefusal::Malformed("webhook-id"));
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| MessageRefusal::Malformed("webhook-timestamp"))?;
    if signatures.trim().is_empty() {
        return Err(MessageRefusal::Malformed("webhook-signature"));
    }
    if (now_secs - ts).abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(MessageRefusal::Stale);
    }
    if keys.iter().any(|k| k.verify(msg_id, ts, body, signatures)) {
        Ok(())
    } else {
        Err(MessageRefusal::Forged)
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // `new_from_slice` accepts keys of any length for HMAC; the error case cannot happen.
    let mut mac = match <Hmac<Sha256>>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The example from the Standard Webhooks specification.
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = key.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn rejects_bad_secrets() {
        assert!(SigningKey::from_secret("whsec_!!!").is_err());
        assert!(SigningKey::from_secret("").is_err());
        assert!(SigningKey::from_secret("plain-text-works").is_ok());
    }

    #[test]
    fn messages_are_checked_for_freshness_then_signature() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let other = SigningKey::from_secret("another-secret").unwrap();
        let now = 1_700_000_000;
        let body = br#"{"outcome":"ok"}"#;
        let good = key.sign("dlv_1", now - 10, body);
        let ts = (now - 10).to_string();
        let both = [other.clone(), key.clone()];
        type Case<'a> = (
            &'a [SigningKey],
            &'a str,
            String,
            &'a str,
            Result<(), MessageRefusal>,
        );
        let cases: Vec<Case> = vec![
            (
                std::slice::from_ref(&key),
                "dlv_1",
                ts.clone(),
                good.as_str(),
                Ok(()),
            ),
            // A rotation: any configured key may have signed.
            (&both, "dlv_1", ts.clone(), good.as_str(), Ok(())),
            (
                std::slice::from_ref(&other),
                "dlv_1",
                ts.clone(),
                good.as_str(),
                Err(MessageRefusal::Forged),
            ),
            // Signed for another delivery.
            (
                std::slice::from_ref(&key),
                "dlv_2",
                ts.clone(),
                good.as_str(),
                Err(MessageRefusal::Forged),
            ),
            (
                std::slice::from_ref(&key),
                "dlv_1",
                (now - 301).to_string(),
                good.as_str(),
                Err(MessageRefusal::Stale),
            ),
            (
                std::slice::from_ref(&key),
                "dlv_1",
                (now + 301).to_string(),
                good.as_str(),
                Err(MessageRefusal::Stale),
            ),
            (
                std::slice::from_ref(&key),
                "dlv_1",
                "yesterday".into(),
                good.as_str(),
                Err(MessageRefusal::Malformed("webhook-timestamp")),
            ),
            (
                std::slice::from_ref(&key),
                "dlv_1",
                ts.clone(),
                " ",
                Err(MessageRefusal::Malformed("webhook-signature")),
            ),
            (
                std::slice::from_ref(&key),
                "",
                ts.clone(),
                good.as_str(),
                Err(MessageRefusal::Malformed("webhook-id")),
            ),
        ];
        for (keys, id, ts, sig, want) in cases {
            assert_eq!(
                verify_message(keys, id, &ts, now, body, sig),
                want,
                "{id} {ts} {sig}"
            );
        }
        // The edge of the tolerance is inside it.
        let edge = key.sign("dlv_1", now - 300, body);
        assert_eq!(
            verify_message(&[key], "dlv_1", &(now - 300).to_string(), now, body, &edge),
            Ok(())
        );
    }

    proptest! {
        #[test]
        fn verify_accepts_own_signature_and_rejects_any_bit_flip(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            flip in any::<usize>(),
            ts in 0i64..4_000_000_000,
        ) {
            let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
            let sig = key.sign("evt_1", ts, &body);
            prop_assert!(key.verify("evt_1", ts, &body, &sig));
            if !body.is_empty() {
                let mut tampered = body.clone();
                let i = flip % (tampered.len() * 8);
                tampered[i / 8] ^= 1 << (i % 8);
                prop_assert!(!key.verify("evt_1", ts, &tampered, &sig));
            }
            prop_assert!(!key.verify("evt_1", ts + 1, &body, &sig));
        }
    }
}
