//! What makes a canary a canary: the marks intake puts on the synthetic webhooks it sends
//! through its own front door, and the key that makes those marks unforgeable.
//!
//! A canary is signed twice. The system of record's own scheme signs it (the connector does
//! that, with the source's real secret), so it travels the ingest path exactly as a real
//! webhook does. And intake marks it:
//!
//! * **the `intake-canary` request header**, `v1=<hex HMAC-SHA256(key, source "\n" body)>`,
//!   under a [`CanaryKey`] that intake generates once and keeps in its store. The ingest door
//!   gives origin `canary` only to a request whose header verifies, so nobody else — not even
//!   someone who holds a source's secret, such as the system of record's administrators —
//!   can make real traffic pass for canaries and hide it from the flow metrics and detectors.
//!   A request whose header does not verify is an ordinary webhook.
//! * **a marker in the body**, the top-level member [`BODY_MARKER`] (`"intake_canary"`), which
//!   every system of record's envelope leaves room for, and the event type [`EVENT_TYPE`]
//!   where the envelope names one. Handlers see it in the body they receive.
//!
//! On delivery a canary carries `intake-origin: canary` like any event of its origin. A
//! handler recognises a canary by that header (or by the body marker), does nothing with it,
//! and answers 2xx: the 2xx is what completes the canary.
//!
//! Pure: no IO, no clock.

use std::fmt;

use crate::signature::{constant_time_eq, hmac_sha256};

/// The request header carrying intake's mark on a canary it sends.
pub const HEADER: &str = "intake-canary";

/// The top-level member of a canary's body: `{"intake_canary": {"source", "id", "sent_at"}}`.
pub const BODY_MARKER: &str = "intake_canary";

/// The event type a canary names where its system's envelope has one.
pub const EVENT_TYPE: &str = "intake.canary";

/// The state document holding the canary key (hex), written once by the first node to start.
pub const KEY_STATE: &str = "canary-key";

/// The version tag of the header's signature.
const VERSION: &str = "v1=";

/// The secret that marks canaries: 32 random bytes, kept in the store, shared by every node
/// and never shown.
#[derive(Clone)]
pub struct CanaryKey([u8; 32]);

impl fmt::Debug for CanaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CanaryKey(…)")
    }
}

impl CanaryKey {
    /// A new random key.
    pub fn generate() -> Self {
        CanaryKey(rand::random())
    }

    /// The key as stored: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads a stored key; `None` unless it is exactly 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text.trim()).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(CanaryKey)
    }

    fn mac(&self, source: &str, body: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, &[source.as_bytes(), b"\n", body])
    }

    /// The `intake-canary` header value for a canary of `source` with this body.
    pub fn sign(&self, source: &str, body: &[u8]) -> String {
        format!("{VERSION}{}", hex::encode(self.mac(source, body)))
    }

    /// Whether `header` is this key's mark on `body` for `source` (in constant time).
    pub fn verify(&self, source: &str, body: &[u8], header: &str) -> bool {
        let Some(given) = header
            .trim()
            .strip_prefix(VERSION)
            .and_then(|h| hex::decode(h).ok())
        else {
            return false;
        };
        constant_time_eq(&self.mac(source, body), &given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_verifies_only_for_its_key_source_and_body() {
        let key = CanaryKey::generate();
        let body = br#"{"intake_canary":{"id":"c1"}}"#;
        let mark = key.sign("maelys-kustomer", body);
        assert!(mark.starts_with("v1="), "{mark}");
        assert!(key.verify("maelys-kustomer", body, &mark));
        assert!(key.verify("maelys-kustomer", body, &format!(" {mark} ")));
        // Another source, another body, another key, a broken header: not a canary.
        assert!(!key.verify("other-kustomer", body, &mark));
        assert!(!key.verify("maelys-kustomer", b"{}", &mark));
        assert!(!CanaryKey::generate().verify("maelys-kustomer", body, &mark));
        for bad in [
            "",
            "v1=",
            "v1=zz",
            "v2=00",
            &mark[3..],
            &mark[..mark.len() - 2],
        ] {
            assert!(!key.verify("maelys-kustomer", body, bad), "{bad:?}");
        }
    }

    #[test]
    fn a_key_round_trips_through_its_stored_text_and_refuses_anything_else() {
        let key = CanaryKey::generate();
        let back = CanaryKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(back.sign("s", b"b"), key.sign("s", b"b"));
        assert!(CanaryKey::from_hex("abcd").is_none());
        assert!(CanaryKey::from_hex(&"g".repeat(64)).is_none());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
