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
