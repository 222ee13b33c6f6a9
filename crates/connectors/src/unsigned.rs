//! What the connectors of systems that do not sign their webhooks share (Freshdesk, Gorgias):
//! the shared-secret check configured by the source's `auth`, and a lenient field type for
//! bodies that people build from templates.
//!
//! Neither vendor signs: Freshdesk's automation rules and Gorgias' HTTP integrations send a
//! request whose headers and body the account's administrator writes. What proves a request
//! comes from them is a secret the administrator put in those headers, either a custom header
//! (`auth = { scheme = "header", header = "X-Intake-Secret" }`, the default) or HTTP Basic
//! authentication (`auth = { scheme = "basic" }`, each secret written `user:password`). The
//! body is not authenticated by either scheme: whoever knows the secret can send any body,
//! which is why the secret must be long and random and travel over TLS only.

use base64::Engine;
use http::HeaderMap;
use intake_core::config::SharedSecretAuth;
use intake_core::signature::constant_time_eq;
use intake_core::Timestamp;
use sha2::{Digest, Sha256};

pub(crate) use crate::lax::Lax;
use crate::VerifyError;

/// The header Basic credentials travel in.
const AUTHORIZATION: &str = "authorization";

/// The header name and value a sender configured with `auth` and `secret` sends (for fakes,
/// tests and benchmarks). With Basic authentication `secret` is `user:password`.
pub fn sign(auth: &SharedSecretAuth, secret: &str) -> (String, String) {
    match auth {
        SharedSecretAuth::Header { header } => (header.clone(), secret.to_string()),
        SharedSecretAuth::Basic => (
            "Authorization".to_string(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(secret.as_bytes())
            ),
        ),
    }
}

/// Checks the request's credentials against every configured secret, without early exit and
/// in time that does not depend on where a secret and the credentials differ.
pub fn verify(
    auth: &SharedSecretAuth,
    headers: &HeaderMap,
    secrets: &[String],
) -> Result<(), VerifyError> {
    let given: Vec<u8> = match auth {
        SharedSecretAuth::Header { header } => headers
            .get(header.as_str())
            .map(|v| v.as_bytes().to_vec())
            .ok_or_else(|| VerifyError::MissingHeader(header.clone()))?,
        SharedSecretAuth::Basic => basic_credentials(headers)?,
    };
    // Comparing digests rather than the raw values keeps the comparison's length fixed, so
    // its timing does not reveal a secret's length either.
    let given = Sha256::digest(&given);
    let mut ok = false;
    for secret in secrets {
        ok |= constant_time_eq(&Sha256::digest(secret.as_bytes()), &given);
    }
    if ok {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The decoded `user:password` of an `Authorization: Basic …` header.
fn basic_credentials(headers: &HeaderMap) -> Result<Vec<u8>, VerifyError> {
    let malformed = |why: &str| VerifyError::Malformed {
        header: "Authorization".into(),
        why: why.into(),
    };
    let value = headers
        .get(AUTHORIZATION)
        .ok_or_else(|| VerifyError::MissingHeader("Authorization".into()))?
        .as_bytes();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => return Err(malformed("expected `Basic <base64 of user:password>`")),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(malformed("expected the `Basic` scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .map_err(|_| malformed("the credentials are not base64"))?;
    if !decoded.contains(&b':') {
        return Err(malformed("the credentials are not `user:password`"));
    }
    Ok(decoded)
}

/// Parses a vendor time: RFC 3339 with any offset and precision, or `YYYY-MM-DD HH:MM:SS`
/// without an offset, read as UTC (how some template placeholders render times).
pub(crate) fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Some(t);
    }
    let has_offset = s.ends_with('Z')
        || s.ends_with('z')
        || s.get(s.len().saturating_sub(6)..)
            .is_some_and(|tail| tail.starts_with('+') || tail.starts_with('-'));
    if s.len() >= 19 && !has_offset {
        let mut fixed = s.replacen(' ', "T", 1);
        fixed.push('Z');
        return Timestamp::parse_rfc3339(&fixed).ok();
    }
    None
}

/// `2026-11-27T09:15:00Z`: an instant to the second, the form dedupe keys carry.
pub(crate) fn canonical_secs(t: Timestamp) -> String {
    let ms = t.to_rfc3339();
    // `to_rfc3339` writes `…:SS.mmmZ`; the key keeps whole seconds.
    match ms.split_once('.') {
        Some((secs, _)) => format!("{secs}Z"),
        None => ms,
    }
}

/// The first 16 hex digits of the body's SHA-256, for keys of events that carry no version.
pub(crate) fn body_digest(body: &[u8]) -> String {
    let d = Sha256::digest(body);
    hex::encode(&d[..8])
}

/// Whether the body's first non-blank byte opens a JSON object (a derived struct would also
/// accept an array, filling fields by position).
pub(crate) fn starts_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(name: &str, value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.insert(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
        }
        h
    }

    #[test]
    fn header_scheme_checks_every_secret() {
        let auth = SharedSecretAuth::default();
        let (name, value) = sign(&auth, "new-secret");
        assert_eq!(name, "X-Intake-Secret");
        let h = headers(&name, value.as_bytes());
        let both = ["old-secret".to_string(), "new-secret".to_string()];
        assert_eq!(verify(&auth, &h, &both), Ok(()));
        assert_eq!(
            verify(&auth, &h, &["old-secret".to_string()]),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&auth, &HeaderMap::new(), &both),
            Err(VerifyError::MissingHeader("X-Intake-Secret".into()))
        );
    }

    #[test]
    fn basic_scheme_reads_user_and_password() {
        let auth = SharedSecretAuth::Basic;
        let secrets = ["intake:s3cret".to_string()];
        let (name, value) = sign(&auth, "intake:s3cret");
        assert_eq!(value, "Basic aW50YWtlOnMzY3JldA==");
        assert_eq!(
            verify(&auth, &headers(&name, value.as_bytes()), &secrets),
            Ok(())
        );
        // The scheme name is case-insensitive.
        let lower = value.replacen("Basic", "basic", 1);
        assert_eq!(
            verify(&auth, &headers(&name, lower.as_bytes()), &secrets),
            Ok(())
        );
        let (_, wrong) = sign(&auth, "intake:guess");
        assert_eq!(
            verify(&auth, &headers(&name, wrong.as_bytes()), &secrets),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&auth, &HeaderMap::new(), &secrets),
            Err(VerifyError::MissingHeader("Authorization".into()))
        );
        for bad in [
            "Bearer aW50YWtlOnMzY3JldA==",
            "Basic not-base64!",
            "Basic",
            "Basic aW50YWtl", // "intake": no colon
        ] {
            assert!(
                matches!(
                    verify(&auth, &headers(&name, bad.as_bytes()), &secrets),
                    Err(VerifyError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn times_parse_in_both_renderings() {
        let t = Timestamp::parse_rfc3339("2026-03-11T12:44:19Z").unwrap();
        assert_eq!(parse_time("2026-03-11 12:44:19"), Some(t));
        assert_eq!(parse_time("2026-03-11T12:44:19Z"), Some(t));
        assert_eq!(parse_time("2026-03-11T13:44:19+01:00"), Some(t));
        assert_eq!(parse_time("Wed, 11 Mar 2026"), None);
        assert_eq!(
            canonical_secs(t.plus(std::time::Duration::from_millis(999))),
            "2026-03-11T12:44:19Z"
        );
    }

    proptest! {
        #[test]
        fn any_flip_of_the_credentials_fails(secret in "[ -~]{1,40}", bit in any::<usize>(), basic in any::<bool>()) {
            let auth = if basic { SharedSecretAuth::Basic } else { SharedSecretAuth::default() };
            let secret = if basic { format!("user:{secret}") } else { secret };
            let secrets = [secret.clone()];
            let (name, value) = sign(&auth, &secret);
            prop_assert_eq!(verify(&auth, &headers(&name, value.as_bytes()), &secrets), Ok(()));
            let mut flipped = value.into_bytes();
            // The scheme name `Basic` is case-insensitive: flip the credentials after it.
            let skip = if basic { "Basic ".len() } else { 0 };
            let i = bit % ((flipped.len() - skip) * 8);
            flipped[skip + i / 8] ^= 1 << (i % 8);
            // A flip may make the value unsendable (then it is missing), malformed, or wrong:
            // never accepted.
            prop_assert!(verify(&auth, &headers(&name, &flipped), &secrets).is_err());
        }
    }
}
